package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"spa/internal/natsauth"
)

// benchConfig is spa-bench's validated configuration.
type benchConfig struct {
	// Addr is the server to measure; empty runs the all-in-one server in
	// a child process on DataDir (a new temporary directory by default).
	Addr    string
	DataDir string
	Keep    bool

	Clients  int
	Duration time.Duration
	Count    int
	Rate     float64
	Drain    time.Duration
	Timeout  time.Duration
	Samples  int
	Idle     time.Duration
	Ceiling  time.Duration
	Rebuild  time.Duration
	Settle   time.Duration

	Preload        int
	PreloadRouted  float64
	PreloadCallers int

	JSON bool

	// TLS: the CA the server's certificate is checked against and the
	// directory of the bench's client certificates (spa-ctl certs).
	TLSCA, TLSCerts string
	// NATSURL and NATS reach an external deployment's NATS as its admin
	// identity, for the log's size and the rebuild (--addr only).
	NATSURL string
	NATS    natsauth.Client
}

const usageText = `usage: spa-bench [flags]

Drives the SPA's public gRPC API with referrals through their lifecycle and
prints what it measured, each figure beside the machine's ceiling measured
in the same run. Without --addr it runs the all-in-one server itself, in a
child process (fsync on every write), on a new temporary data directory.
See BENCHMARKS.md for the figures' definitions.

flags:
`

// parseConfig reads spa-bench's flags (no environment variables: those of
// spa-server and spa-ctl must not steer a benchmark) and validates them,
// every problem at once.
func parseConfig(args []string, usage io.Writer) (benchConfig, error) {
	var c benchConfig
	fs := flag.NewFlagSet("spa-bench", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.Usage = func() {
		fmt.Fprint(usage, usageText)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Addr, "addr", "", "the spa-server to measure (host:port); empty runs the all-in-one server in a child process")
	fs.StringVar(&c.DataDir, "data-dir", "", "the child server's data directory, kept afterwards (it may hold a log already, e.g. one --preload built); default a new temporary one, removed")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temporary directory (data, server log, ceilings' files)")
	fs.IntVar(&c.Clients, "clients", 16, "concurrent hospital callers in the closed-loop phase, providers answering offers, and publishers of the publish ceiling")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "length of each load phase (closed loop, open loop)")
	fs.IntVar(&c.Count, "count", 100000, "the most referrals each load phase submits")
	fs.Float64Var(&c.Rate, "rate", 100, "referrals a second the open-loop phase starts, whatever the server's pace")
	fs.DurationVar(&c.Drain, "drain", 30*time.Second, "how long after a load phase its offers and answers are still awaited")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "deadline of each call")
	fs.IntVar(&c.Samples, "samples", 200, "calls of each measured query and of UpdateCapacity after the load phases")
	fs.DurationVar(&c.Idle, "idle", 5*time.Second, "how long the idle server's CPU is measured (child only)")
	fs.DurationVar(&c.Ceiling, "ceiling-duration", 5*time.Second, "length of the publish ceiling's run")
	fs.DurationVar(&c.Rebuild, "rebuild-within", 3*time.Minute, "the longest the rebuild may take before it is cancelled")
	fs.DurationVar(&c.Settle, "settle-within", 10*time.Minute, "the longest the child server may take to catch up with its log (route, project) after a start, before the bench fails")
	fs.IntVar(&c.Preload, "preload", 0, "first build a log of exactly this many events (child only): referrals submitted through the API by many callers to the server in its --no-sync mode, then restarted durable")
	fs.Float64Var(&c.PreloadRouted, "preload-routed", 0.1, "share of the preloaded referrals that are ready for discharge and so routed to an offer (the rest still meet a criterion to reside)")
	fs.IntVar(&c.PreloadCallers, "preload-callers", 64, "concurrent callers that preload")
	fs.BoolVar(&c.JSON, "json", false, "end the output with one JSON object holding every figure")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "with --addr: the CA certificate (PEM) the server's certificate is checked against; with --tls-certs: TLS 1.3 with client certificates")
	fs.StringVar(&c.TLSCerts, "tls-certs", "", "with --tls-ca: the directory of the bench's client certificates, ODS-ROLE.crt/.key as `spa-ctl certs --out DIR --client ODS/ROLE` makes them (it names the ones missing); without TLS the bench states its identities in metadata (development mode)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "with --addr: the deployment's NATS, reached as its admin identity, for the log's size and the rebuild; without it those are not measured")
	c.NATS.Identity = natsauth.Admin
	c.NATS.Register(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var errs []error
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"--clients", c.Clients > 0}, {"--duration", c.Duration > 0}, {"--count", c.Count > 0}, {"--rate", c.Rate > 0},
		{"--drain", c.Drain > 0}, {"--timeout", c.Timeout > 0}, {"--samples", c.Samples > 0}, {"--idle", c.Idle > 0},
		{"--ceiling-duration", c.Ceiling > 0}, {"--rebuild-within", c.Rebuild > 0}, {"--settle-within", c.Settle > 0}, {"--preload-callers", c.PreloadCallers > 0},
	} {
		if !f.ok {
			errs = append(errs, fmt.Errorf("%s must be positive", f.name))
		}
	}
	if c.Preload < 0 {
		errs = append(errs, errors.New("--preload must not be negative"))
	}
	if c.PreloadRouted < 0 || c.PreloadRouted > 1 {
		errs = append(errs, errors.New("--preload-routed must be 0-1"))
	}
	if c.Addr != "" && (c.Preload > 0 || c.DataDir != "") {
		errs = append(errs, errors.New("--preload and --data-dir are for the child server; with --addr, preload the server you measure yourself"))
	}
	if (c.TLSCA == "") != (c.TLSCerts == "") {
		errs = append(errs, errors.New("--tls-ca and --tls-certs go together"))
	}
	if c.TLSCA != "" && c.Addr == "" {
		errs = append(errs, errors.New("TLS is for --addr: the child server runs in the development mode, on loopback"))
	}
	if c.Addr == "" && (c.NATSURL != "" || c.NATS.Given()) {
		errs = append(errs, errors.New("--nats-url and the NATS credentials are for --addr: the bench reaches its child's NATS itself"))
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}
