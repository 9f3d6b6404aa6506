package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	spav1 "spa/internal/gen/spa/v1"
)

// preloaded is what a preload built.
type preloaded struct {
	events            uint64
	referrals, routed int
	elapsed           time.Duration
}

// routedEvents are the events a routed referral adds to the log: its
// submission, the pathway decision, the offer and the provider's
// reservation. The preload plans with it and then counts what it finds.
const routedEvents = 4

// preload builds a log of exactly cfg.Preload events on dataDir, as the
// server itself writes them: the all-in-one server runs in its --no-sync
// mode (and without clocks, which would add alerts at their own pace); the
// bench registers its providers and submits referrals through the API, a
// share of them ready for discharge (the worker routes each to an offer),
// the rest still meeting a criterion to reside (one event each); once the
// server has caught up (routed, projected) it submits the events still
// missing, one referral each, and stops it. run then starts it again,
// durable. Every event is the server's own: signed, hash-chained,
// projected and routed by its worker.
func preload(ctx context.Context, cfg benchConfig, dataDir string, errs *errorLog, say func(string, ...any)) (preloaded, error) {
	began := time.Now()
	srv, err := startChild(ctx, dataDir, "--no-sync", "--scheduler=false")
	if err != nil {
		return preloaded{}, err
	}
	defer srv.stop()
	nc, err := srv.nats()
	if err != nil {
		return preloaded{}, err
	}
	defer nc.Close()
	a, err := dialAPI(srv.addr, "", "", nil, cfg.Timeout)
	if err != nil {
		return preloaded{}, err
	}
	defer a.close()
	if err := a.waitServing(ctx, 5*time.Minute); err != nil {
		return preloaded{}, err
	}
	l := newLoad(a, runID(), errs)
	l.position = natsAccess{conn: nc}.lastSequence
	ph := newPhase("preload", 0, false, false)
	ph.begin(24 * time.Hour)
	if _, err := l.setup(ctx, ph); err != nil {
		return preloaded{}, err
	}
	target := uint64(cfg.Preload)
	out := preloaded{}
	for round := 0; ; round++ {
		if err := settle(ctx, nc, cfg.Settle, say); err != nil {
			return out, err
		}
		pos, err := l.position(ctx)
		if err != nil {
			return out, err
		}
		if pos > target {
			return out, fmt.Errorf("the log holds %d events, more than the %d asked (routing appended more than %d events per referral?)", pos, target, routedEvents)
		}
		if pos == target {
			break
		}
		// Of k referrals, R = ⌊r·k⌋ are routed: k + R·(routedEvents-1)
		// events, at most those left. Only the first round routes.
		left, share := float64(target-pos), cfg.PreloadRouted
		if round > 0 {
			share = 0
		}
		k := int(left / (1 + (routedEvents-1)*share))
		ready := int(share * float64(k))
		if err := l.bulk(ctx, ph, cfg.PreloadCallers, k, ready, say); err != nil {
			return out, err
		}
		out.routed += ready
	}
	out.events, out.referrals = target, int(l.next.Load())
	if err := srv.stop(); err != nil {
		return out, fmt.Errorf("stop the no-sync server: %w", err)
	}
	out.elapsed = time.Since(began)
	return out, nil
}

// bulk submits n referrals with callers at once, ready of them (spread
// evenly) ready for discharge, the others still meeting a criterion to
// reside. Any failure fails it.
func (l *load) bulk(ctx context.Context, ph *phase, callers, n, ready int, say func(string, ...any)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= n {
					return
				}
				isReady := (j+1)*ready/n > j*ready/n
				r := referralOf(int(l.next.Add(1)-1), false)
				req := requestID(l.run, r.i)
				err := l.command(ctx, ph, "SubmitReferral", team(r.site), func(ctx context.Context, cc *grpc.ClientConn) (uint64, error) {
					res, err := spav1.NewReferralServiceClient(cc).SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: req, Referral: r.details(isReady, l.today)})
					return res.GetSequence(), err
				})
				if err != nil {
					cancel(err)
				}
				done.Add(1)
			}
		})
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			return context.Cause(ctx)
		case <-tick.C:
			say("preload: %d of %d referrals submitted", done.Load(), n)
		}
	}
}
