package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/query"
)

// natsCommand parses a command that talks to NATS directly (its
// --nats-url and any flags extra adds) and connects; done closes the
// connection.
func (c *ctl) natsCommand(name string, args []string, extra func(fs *flag.FlagSet)) (nc *natsConn, done func(), err error) {
	// spa-ctl's NATS commands are the operator's: the admin identity.
	return c.natsCommandAs(natsauth.Admin, name, args, extra)
}

// natsCommandAs is natsCommand as NATS identity id.
func (c *ctl) natsCommandAs(id natsauth.Identity, name string, args []string, extra func(fs *flag.FlagSet)) (nc *natsConn, done func(), err error) {
	fs := c.flags(name)
	url := fs.String("nats-url", c.getenv("SPA_NATS_URL"), "NATS URL (env SPA_NATS_URL); in the all-in-one mode start spa-server with --nats-listen")
	auth := natsauth.Client{Identity: id, NkeyFile: c.getenv("SPA_NATS_NKEY"), CredsFile: c.getenv("SPA_NATS_CREDS"),
		CAFile: c.getenv("SPA_NATS_CA"), CertFile: c.getenv("SPA_NATS_CERT"), KeyFile: c.getenv("SPA_NATS_KEY")}
	auth.Register(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, errUsage
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%s: unexpected arguments %v", name, fs.Args())
	}
	if *url == "" {
		return nil, nil, fmt.Errorf("%s: --nats-url is required", name)
	}
	opts, err := auth.Options()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	conn, err := jetstream.DialNow(*url, "spa-ctl", opts...)
	if err != nil {
		return nil, nil, err
	}
	return &natsConn{Conn: conn, client: query.NewClient(conn)}, conn.Close, nil
}

// initStreams creates SPA's JetStream assets on a cluster, or brings them
// to the stated setup: the one place that creates or changes them.
func (c *ctl) initStreams(ctx context.Context, args []string) error {
	var setup jetstream.Setup
	nc, done, err := c.natsCommand("init", args, func(fs *flag.FlagSet) {
		fs.IntVar(&setup.Replicas, "replicas", 1, "replicas of every stream, the lease bucket and the router's consumer (3 on a three-node cluster); never lowered")
		fs.DurationVar(&setup.DuplicateWindow, "duplicate-window", 0, fmt.Sprintf("how long the event stream remembers message ids for transport retries (0 keeps the current value; %s for a new stream)", jetstream.DefaultDuplicateWindow))
		fs.DurationVar(&setup.LeaseTTL, "lease-ttl", 0, fmt.Sprintf("how long the clock scheduler's lease outlives a holder that died (0 keeps the current value; %s for a new bucket)", jetstream.DefaultLeaseTTL))
	})
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	report, err := jetstream.Provision(ctx, nc.Conn, setup)
	for _, line := range report {
		fmt.Fprintln(c.stdout, line)
	}
	return err
}

// workers lists every worker: its read model's position, whether it
// serves queries, a halted projection and the last rebuild.
func (c *ctl) workers(ctx context.Context, args []string) error {
	nc, done, err := c.natsCommand("workers", args, nil)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	sts, err := nc.client.Workers(ctx, 300*time.Millisecond)
	if err != nil {
		return describe(err)
	}
	sort.Slice(sts, func(i, j int) bool { return sts[i].Worker < sts[j].Worker })
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tAPPLIED\tSERVING\tHALTED\tLAST REBUILD")
	halted := false
	for _, st := range sts {
		h := "-"
		if st.Halt != nil {
			halted = true
			h = fmt.Sprintf("at %d (%s): %s", st.Halt.Sequence, st.Halt.Subject, st.Halt.Reason)
		}
		fmt.Fprintf(tw, "%s\t%d\t%t\t%s\t%s\n", st.Worker, st.Applied, st.Serving, h, rebuildSummary(st.Rebuild))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if halted {
		return errors.New("workers: a projection has halted (see docs/operations.md)")
	}
	return nil
}

func rebuildSummary(r *query.RebuildStatus) string {
	switch {
	case r == nil:
		return "-"
	case r.State == query.RebuildRunning:
		return fmt.Sprintf("running: %s %d/%d", r.Phase, r.Applied, r.Target)
	case r.Error != "":
		return r.State + ": " + r.Error
	}
	return fmt.Sprintf("%s at sequence %d (swap %.1f ms)", r.State, r.ComparedAt, r.SwapMillis)
}

func (c *ctl) digest(ctx context.Context, args []string) error {
	nc, done, err := c.natsCommand("digest", args, nil)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	st, err := nc.client.Digest(ctx)
	if err != nil {
		return describe(err)
	}
	fmt.Fprintf(c.stdout, "applied %d\ndigest  %s\n", st.Applied, st.Digest)
	return nil
}

// rebuild has every worker (or one) rebuild its read model while serving,
// reports progress, and prints each one's result; it fails if any did.
// Interrupted, it cancels the rebuilds it started.
func (c *ctl) rebuild(ctx context.Context, args []string) error {
	var only string
	nc, done, err := c.natsCommand("rebuild", args, func(fs *flag.FlagSet) {
		fs.StringVar(&only, "worker", "", "rebuild only this worker's read model (default: every worker's)")
	})
	if err != nil {
		return err
	}
	defer done()
	call := func(f func(ctx context.Context) error) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		return f(cctx)
	}
	var ids []string
	if only != "" {
		ids = []string{only}
	} else if err := call(func(cctx context.Context) error {
		sts, err := nc.client.Workers(cctx, 300*time.Millisecond)
		for _, st := range sts {
			ids = append(ids, st.Worker)
		}
		return err
	}); err != nil {
		return describe(err)
	}
	sort.Strings(ids)
	results := map[string]string{}
	var started []string
	for _, id := range ids {
		err := call(func(cctx context.Context) error {
			_, err := nc.client.Rebuild(cctx, id, false)
			return err
		})
		if err != nil {
			results[id] = "not started: " + describe(err).Error()
			continue
		}
		started = append(started, id)
	}
	fmt.Fprintf(c.stderr, "rebuilding %d of %d workers' read models: %s\n", len(started), len(ids), strings.Join(started, ", "))

	running := map[string]*query.RebuildStatus{}
	lastSeen := map[string]time.Time{}
	for _, id := range started {
		running[id], lastSeen[id] = nil, time.Now()
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastReport := time.Time{}
	for len(running) > 0 {
		select {
		case <-ctx.Done():
			// Cancel what runs, then report how each ended: one may have
			// swapped before the cancel arrived.
			for id := range running {
				_ = call(func(cctx context.Context) error { _, err := nc.client.Rebuild(cctx, id, true); return err })
			}
			for id := range running {
				results[id] = "cancelled (interrupted); the worker did not say how it ended"
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) {
					var st query.WorkerStatus
					err := call(func(cctx context.Context) (err error) { st, err = nc.client.WorkerStatus(cctx, id); return err })
					if err == nil && st.Rebuild != nil && st.Rebuild.State != query.RebuildRunning {
						results[id] = rebuildSummary(st.Rebuild)
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			c.printRebuilds(ids, results)
			return errors.New("rebuild: interrupted; the rebuilds still running were cancelled")
		case <-tick.C:
		}
		for id := range running {
			var st query.WorkerStatus
			err := call(func(cctx context.Context) (err error) { st, err = nc.client.WorkerStatus(cctx, id); return err })
			switch {
			case err != nil && time.Since(lastSeen[id]) > 30*time.Second:
				results[id] = "failed: the worker stopped answering: " + describe(err).Error()
				delete(running, id)
			case err != nil:
			case st.Rebuild == nil:
				results[id] = "failed: the worker has no rebuild (it restarted?)"
				delete(running, id)
			case st.Rebuild.State == query.RebuildRunning:
				lastSeen[id], running[id] = time.Now(), st.Rebuild
			default:
				results[id] = rebuildSummary(st.Rebuild)
				if st.Rebuild.State == query.RebuildSwapped {
					results[id] += fmt.Sprintf("\n  live    %s\n  rebuilt %s", st.Rebuild.Live, st.Rebuild.Rebuilt)
				}
				delete(running, id)
			}
		}
		if time.Since(lastReport) >= 2*time.Second && len(running) > 0 {
			lastReport = time.Now()
			var parts []string
			for _, id := range started {
				if r := running[id]; r != nil {
					parts = append(parts, fmt.Sprintf("%s %s %d/%d", id, r.Phase, r.Applied, r.Target))
				}
			}
			if len(parts) > 0 {
				fmt.Fprintln(c.stderr, "progress:", strings.Join(parts, "; "))
			}
		}
	}
	return c.printRebuilds(ids, results)
}

func (c *ctl) printRebuilds(ids []string, results map[string]string) error {
	failed := 0
	for _, id := range ids {
		r := results[id]
		if !strings.HasPrefix(r, query.RebuildSwapped) {
			failed++
		}
		fmt.Fprintf(c.stdout, "%s: %s\n", id, r)
	}
	if failed > 0 {
		return fmt.Errorf("rebuild: %d of %d workers kept their live model", failed, len(ids))
	}
	return nil
}

// natsConn is a NATS connection and a worker client on it.
type natsConn struct {
	*nats.Conn
	client *query.Client
}
