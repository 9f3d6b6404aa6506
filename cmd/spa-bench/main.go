// Command spa-bench measures SPA through its public gRPC API: referrals
// through their whole lifecycle (submission, criteria to reside, routing,
// the offer on the provider's watch stream, accept, start, complete) by
// many concurrent callers, and in the same run the machine's ceilings (raw
// fsync'd JetStream publishes; raw consume with batched bbolt writes), so
// that each figure is printed as a ratio to what the machine allows.
//
//	go run ./cmd/spa-bench --json
//
// Without --addr it runs the all-in-one server itself, in a child process
// (this binary again, with a hidden first argument, running
// internal/server), so that the server's memory and CPU are its own.
// BENCHMARKS.md defines every figure.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	spaserver "spa/internal/server"
	"spa/internal/spa"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == serverCommand {
		os.Exit(serveChild(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "spa-bench:", err)
		os.Exit(1)
	}
}

// serveChild runs the all-in-one server as the bench's child until
// SIGTERM (or an interrupt): its log on stderr, and a line on stdout once
// it serves gRPC. It returns the process's exit code.
func serveChild(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := spaserver.Run(ctx, args, func(string) string { return "" }, log, func(a net.Addr) { fmt.Println(servingLine + a.String()) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "spa-bench server:", err)
		return 1
	}
	return 0
}

// realMain runs the bench as args say, its progress on stderr and its
// report on stdout.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	r, err := run(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	return r.print(stdout, cfg.JSON)
}

// runID names a run in its request ids.
func runID() string { return "b" + strings.ToLower(rand.Text()[:8]) }

// run measures everything, phase by phase, each bounded in time.
func run(ctx context.Context, cfg benchConfig, progress io.Writer) (*report, error) {
	began := time.Now()
	say := func(format string, a ...any) { fmt.Fprintf(progress, "spa-bench: "+format+"\n", a...) }
	r := &report{Machine: thisMachine(), RPC: map[string]map[string]summary{}}
	r.Config.Addr, r.Config.Clients, r.Config.Duration, r.Config.Rate, r.Config.Preload = cfg.Addr, cfg.Clients, cfg.Duration.String(), cfg.Rate, cfg.Preload
	errs := newErrorLog(progress)

	tmp, err := os.MkdirTemp("", "spa-bench-")
	if err != nil {
		return nil, err
	}
	if cfg.Keep {
		say("keeping %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	// The server: a child process, or the one at --addr.
	addr := cfg.Addr
	var srv *child
	var nats natsAccess
	if addr == "" {
		dataDir := cfg.DataDir
		if dataDir == "" {
			dataDir = filepath.Join(tmp, "data")
		}
		if cfg.Preload > 0 {
			say("preloading %d events into %s", cfg.Preload, dataDir)
			p, err := preload(ctx, cfg, dataDir, errs, say)
			if err != nil {
				return nil, fmt.Errorf("preload: %w", err)
			}
			r.PreloadEvents, r.PreloadReferrals, r.PreloadRouted = p.events, p.referrals, p.routed
			r.PreloadSeconds, r.PreloadEventsPerS = round(p.elapsed.Seconds(), 2), perSecond(int(p.events), p.elapsed)
			say("preloaded %d events (%d referrals, %d routed) in %.1f s", p.events, p.referrals, p.routed, p.elapsed.Seconds())
		}
		started := time.Now()
		if srv, err = startChild(ctx, dataDir); err != nil {
			return nil, err
		}
		defer func() {
			if err := srv.stop(); err != nil {
				say("stopping the server: %v (its log: %s)", err, srv.logFile)
			}
		}()
		addr = srv.addr
		if nats.conn, err = srv.nats(); err != nil {
			return nil, fmt.Errorf("the server's NATS: %w", err)
		}
		defer nats.conn.Close()
		a, err := dialAPI(addr, "", "", nil, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		err = a.waitServing(ctx, 5*time.Minute)
		a.close()
		if err != nil {
			return nil, fmt.Errorf("%w (its log: %s)", err, srv.logFile)
		}
		r.StartSeconds = round(time.Since(started).Seconds(), 2)
		say("server pid %d serving on %s after %.1f s (log: %s)", srv.cmd.Process.Pid, addr, r.StartSeconds, srv.logFile)
		if err := settle(ctx, nats.conn, cfg.Settle, say); err != nil {
			return nil, err
		}
		r.SettleSeconds = round(time.Since(started).Seconds(), 2)
	} else if cfg.NATSURL != "" {
		if nats.conn, err = cfg.natsConn(); err != nil {
			return nil, err
		}
		defer nats.conn.Close()
	}

	a, err := dialAPI(addr, cfg.TLSCA, cfg.TLSCerts, identities(), cfg.Timeout)
	if err != nil {
		return nil, err
	}
	defer a.close()
	if err := a.waitServing(ctx, 5*time.Minute); err != nil {
		return nil, err
	}
	l := newLoad(a, runID(), errs)
	if nats.conn != nil {
		l.position = nats.lastSequence
	}

	// Providers, their watches and a warm-up: a few referrals through
	// the whole lifecycle, one of which is replayed for the sizes.
	setupPhase := newPhase("setup", 0, true, false)
	setupPhase.begin(time.Hour)
	after, err := l.setup(ctx, setupPhase)
	if err != nil {
		return nil, err
	}
	stopWatches := l.startWatches(ctx, after, cfg.Clients)
	defer stopWatches()
	// A server that has just started with a long log may take a while
	// to route its first referrals.
	warm := newPhase("warm-up", 2*min(cfg.Clients, 4), true, false)
	first := int(l.next.Load())
	l.closedLoop(ctx, warm, min(cfg.Clients, 4), warmUpWithin)
	if warm.delivered.Load() == 0 {
		return nil, fmt.Errorf("warm-up: no offer reached a provider's watch stream within %s; is the worker routing? (the server's log tells)", warmUpWithin)
	}
	l.waitAnswered(ctx, cfg.Drain)
	submission, avg, perReferral, err := l.shapes(ctx, referralIDOf(l.run, first))
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	r.SubmissionBytes, r.EventBytes, r.EventsPerReferral = submission.data, avg, float64(perReferral)
	if srv != nil {
		_, r.RSSIdle = serverMemory(srv, nil)
	}

	say("ceiling (a): raw fsync'd publishes of %d-byte messages, %d publishers, %s", submission.data, cfg.Clients, cfg.Ceiling)
	if r.CeilingPublishPerS, err = publishCeiling(ctx, filepath.Join(tmp, "ceiling-publish"), submission, cfg.Clients, cfg.Ceiling); err != nil {
		return nil, err
	}

	say("closed loop: %d callers, %s", cfg.Clients, cfg.Duration)
	ingest := newPhase("closed-loop", cfg.Count, true, false)
	l.closedLoop(ctx, ingest, cfg.Clients, cfg.Duration)
	l.waitAnswered(ctx, cfg.Drain)
	window := ingest.window()
	r.IngestReferralsPerS = perSecond(int(ingest.offered.Load()), window)
	r.IngestCommandsPerS = perSecond(int(ingest.commands.Load()), window)
	r.IngestEventsPerS = perSecond(int(ingest.last-ingest.first), window)
	r.IngestRatio = ratio(r.IngestReferralsPerS, r.CeilingPublishPerS)
	r.IngestEventsRatio = ratio(r.IngestEventsPerS, r.CeilingPublishPerS)

	say("open loop: %g referrals/s for %s", cfg.Rate, cfg.Duration)
	open := newPhase("open-loop", cfg.Count, true, true)
	l.openLoop(ctx, open, cfg.Rate, cfg.Duration, cfg.Drain)
	l.waitAnswered(ctx, cfg.Drain)
	window = open.window()
	e2e := open.e2e.summary()
	r.OpenLoopRate, r.OpenLoopStartedPerS = cfg.Rate, perSecond(int(open.submitted.Load()), window)
	r.E2EP50, r.E2EP95, r.E2EP99 = e2e.P50, e2e.P95, e2e.P99
	r.E2EDelivered, r.E2EUndelivered = open.delivered.Load(), open.undelivered.Load()
	r.CommandsPerS = perSecond(int(open.commands.Load()), window)
	r.EventsPerS = perSecond(int(open.last-open.first), window)
	lag := open.lag.summary()
	r.LagP50, r.LagP99, r.LagMax, r.LagMaxEvents = lag.P50, lag.P99, lag.Max, open.lagEvents.Load()

	// The queries and counts below, and the idle CPU, are measured once
	// the server has routed and projected what it was given (or the
	// drain is over): their own costs, not the backlog's.
	if nats.conn != nil {
		if err := settle(ctx, nats.conn, cfg.Drain, say); err != nil {
			r.Skipped = append(r.Skipped, "a quiet server: it was still catching up when the board, the counts and the idle CPU were measured ("+err.Error()+")")
		}
	}
	say("board pages and capacity counts: %d calls each", cfg.Samples)
	after2 := newPhase("after", 0, false, false)
	after2.begin(time.Hour)
	l.boardPages(ctx, after2, cfg.Samples, cfg.Duration)
	r.UpdateCapacityOffers = l.capacityUpdates(ctx, after2, cfg.Samples, cfg.Duration)
	sums := after2.calls.summaries()
	r.BoardPageP50, r.BoardPageP99, r.FirstPageP99 = sums[boardFiltered].P50, sums[boardFiltered].P99, sums[boardFirst].P99
	r.UpdateCapacityP50, r.UpdateCapacityP99, r.UpdateCapacityIdle = sums[capacityBusy].P50, sums[capacityBusy].P99, sums[capacityIdle].P99
	r.UpdateCapacityRatio = ratio(r.UpdateCapacityP99, r.UpdateCapacityIdle)
	stopWatches()

	if srv != nil {
		r.RSS, r.RSSPeak = serverMemory(srv, &r.Skipped)
		say("idle server CPU over %s", cfg.Idle)
		r.IdleCPU = idleCPU(ctx, srv, cfg.Idle, &r.Skipped)
	} else {
		r.Skipped = append(r.Skipped, "server RSS and idle CPU: the server is not the bench's child (--addr)")
	}

	if nats.conn != nil {
		if r.LogEvents, r.LogBytes, err = streamInfo(ctx, nats.conn); err != nil {
			return nil, err
		}
		say("rebuild of the read model from sequence 1 (%d events)", r.LogEvents)
		rb, err := rebuild(ctx, nats.conn, cfg.Rebuild)
		if err != nil {
			return nil, err
		}
		r.RebuildEvents, r.RebuildSeconds, r.RebuildSwapMS = rb.Events, round(rb.Elapsed.Seconds(), 3), rb.Swap
		r.RebuildEventsPerS = perSecond(int(rb.Events), rb.Elapsed)
		size := shape{data: avg, headers: submission.headers}
		n := min(max(int(rb.Events), 1000), 2000000)
		say("ceiling (b): raw consume of %d %d-byte messages, written to bbolt in batches", n, avg)
		if r.CeilingConsumePerS, err = consumeCeiling(ctx, filepath.Join(tmp, "ceiling-consume"), size, n); err != nil {
			return nil, err
		}
		r.RebuildRatio = ratio(r.RebuildEventsPerS, r.CeilingConsumePerS)
	} else {
		r.LogEvents = l.acks.highest()
		r.Skipped = append(r.Skipped, "rebuild and ceiling (b): give --nats-url (and the admin identity's credentials) to measure them")
	}

	for _, ph := range []*phase{setupPhase, warm, ingest, open, after2} {
		r.RPC[ph.name] = ph.calls.summaries()
	}
	r.Errors = errs.total()
	r.TotalSeconds = round(time.Since(began).Seconds(), 1)
	return r, nil
}

// warmUpWithin bounds the warm-up: a few referrals through their whole
// lifecycle before anything is measured.
const warmUpWithin = time.Minute

// referralIDOf is the id of referral i of run, as lifecycle names it.
func referralIDOf(run string, i int) string { return spa.ReferralIDFor(requestID(run, i)) }
