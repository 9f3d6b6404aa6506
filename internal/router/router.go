// Package router runs a worker's routing: it takes every event of the log
// from the routers' shared consumer, at least once, and has the
// application take the routing steps it prompts (app.App.Route).
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/app"
	"spa/internal/backoff"
	"spa/internal/bolt"
	"spa/internal/codec"
	ijs "spa/internal/jetstream"
	"spa/internal/projection"
	"spa/internal/spa"
)

// routerBatch bounds the prompts a router fetches at once: those of a
// router that dies wait for the consumer's ack wait before another takes
// them.
const routerBatch = 20

// parallel is how many prompts a router works on at once, one per
// subject (lanes). It is 1: with more, routers offering referrals of one
// borough race for the same provider's last units, and each lost race
// waits for the read model and decides again; 200 offers to 200
// providers took 35 s with 8 lanes against 8 s with 1 (ADR 34). Lanes
// keyed by what a step reserves are the way to overlap them.
const parallel = 1

// Router hands every event of the log to the application's routing steps.
// The steps are appended under the sequences they were decided on, so a
// redelivered event or a second router deciding the same thing appends
// nothing twice.
type Router struct {
	app     *app.App
	store   *ijs.Store
	model   *bolt.Model
	halted  func() *projection.Halt
	skip    projection.Skips
	log     *slog.Logger
	routing *backoff.Gate
}

// New returns a router that has a (a worker's App, whose steps read
// model) take the steps; model is the worker's read model, whose
// projection reports halted.
func New(a *app.App, store *ijs.Store, model *bolt.Model, halted func() *projection.Halt, skip projection.Skips, log *slog.Logger) *Router {
	return &Router{app: a, store: store, model: model, halted: halted, skip: skip, log: log, routing: backoff.NewGate("routing", log)}
}

// Run routes until ctx ends. It reads the routers' shared consumer
// (ijs.RouterConsumer, made by Provision; Run waits for it), with explicit
// acknowledgements: a prompt is acknowledged once its steps are taken, and
// one that fails is redelivered after a delay that grows with each try,
// so no referral event goes unrouted. Failures are logged when they start
// and when they end, not at every try; an event this version cannot
// decode is logged once, as an error, and offered again (a newer worker
// may route it).
func (rt *Router) Run(ctx context.Context) error {
	cons, err := rt.store.RouterConsumer(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("router: %w", err)
	}
	fetching := backoff.New("router fetch", rt.log)
	lanes := newLanes(parallel, func(msg jetstream.Msg) { rt.take(ctx, msg) })
	defer lanes.wait()
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		batch, err := cons.Fetch(routerBatch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				_ = fetching.Failed(ctx, err)
			}
			continue
		}
		for msg := range batch.Messages() {
			fetching.Succeeded()
			lanes.add(msg)
		}
		cancel()
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			_ = fetching.Failed(ctx, err)
		}
	}
	return nil
}

// take routes one prompt and acknowledges it, or has it redelivered later.
func (rt *Router) take(ctx context.Context, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		_ = msg.Nak()
		return
	}
	err = keepInProgress(msg, func() error { return rt.handle(ctx, md.Sequence.Stream, msg) })
	switch {
	case err == nil:
		rt.routing.OK()
		_ = msg.Ack()
	case ctx.Err() != nil:
		_ = msg.NakWithDelay(time.Second)
	case errors.Is(err, errUndecodable) && rt.skip[md.Sequence.Stream]:
		_ = msg.Ack() // an operator decided to step over it
	case errors.Is(err, errUndecodable):
		if md.NumDelivered == 1 {
			rt.log.Error("router cannot decode an event; it stays unrouted here and is offered again", "sequence", md.Sequence.Stream, "subject", msg.Subject(), "err", err)
		}
		_ = msg.NakWithDelay(redeliveryDelay(md.NumDelivered, 5*time.Minute))
	default:
		rt.routing.Fail(err)
		rt.log.Debug("routing failed; redelivering", "sequence", md.Sequence.Stream, "subject", msg.Subject(), "err", err)
		_ = msg.NakWithDelay(redeliveryDelay(md.NumDelivered, 30*time.Second))
	}
}

// keepInProgress runs handle, telling the server every 3 s that msg is
// still being worked on, so that a slow step (a read model catching up)
// does not outlast the consumer's ack wait and the prompt go to a second
// router meanwhile.
func keepInProgress(msg jetstream.Msg, handle func() error) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	}()
	err := handle()
	close(done)
	wg.Wait()
	return err
}

// redeliveryDelay is the wait before the next delivery of a prompt
// delivered n times: 1s doubling to at most limit.
func redeliveryDelay(n uint64, limit time.Duration) time.Duration {
	d := time.Second
	for i := uint64(1); i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// errUndecodable marks a prompt the router cannot decode.
var errUndecodable = errors.New("undecodable event")

// handle takes the steps the event at seq prompts.
func (rt *Router) handle(ctx context.Context, seq uint64, msg jetstream.Msg) error {
	rec, err := codec.DecodeStored(spa.StoredEvent{Sequence: seq, Subject: msg.Subject(), Data: msg.Data()})
	if err != nil {
		return fmt.Errorf("%w: %w", errUndecodable, err)
	}
	// The steps read this worker's read model: wait until it has seen
	// this event, so that it is at least as new as the prompt. A halted
	// model never will: leave the prompt to another worker.
	if h := rt.halted(); h != nil && h.Sequence <= seq {
		return fmt.Errorf("read model halted at sequence %d", h.Sequence)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rt.model.WaitFor(wctx, rec.Sequence); err != nil {
		return fmt.Errorf("read model behind sequence %d: %w", rec.Sequence, err)
	}
	return rt.app.Route(ctx, rec)
}
