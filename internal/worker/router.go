package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/backoff"
	"spa/internal/bolt"
	"spa/internal/codec"
	ijs "spa/internal/jetstream"
	"spa/internal/spa"
)

// routerBatch bounds the prompts a router holds unacknowledged: those of a
// router that dies wait for the consumer's ack wait before another takes
// them.
const routerBatch = 20

// Router takes the routing steps of the domain's rules: for every referral
// event, the referral's next step; for every change of a provider's
// capacity, the next step of each referral waiting for capacity that the
// provider could take. Steps are appended under the sequences they were
// decided on (the referral's, and the provider's for a reservation), so a
// redelivered event or a second router deciding the same thing appends
// nothing twice, and a unit of capacity is never promised twice.
type Router struct {
	id       string
	store    *ijs.Store
	model    *bolt.Model
	halted   func() *Halt
	skip     Skips
	policies spa.Policies
	log      *slog.Logger
	routing  *backoff.Gate
}

// NewRouter returns a router that reads providers from model (its own
// worker's read model, whose projection reports halted) and appends to
// store; id (the worker's) is recorded as the actor of its steps.
func NewRouter(id string, store *ijs.Store, model *bolt.Model, halted func() *Halt, skip Skips, policies spa.Policies, log *slog.Logger) *Router {
	return &Router{id: id, store: store, model: model, halted: halted, skip: skip, policies: policies, log: log, routing: backoff.NewGate("routing", log)}
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
			rt.take(ctx, msg)
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
	// Providers come from this worker's read model: wait until it has seen
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
	switch e := rec.Event.(type) {
	case spa.CapacityUpdated, spa.CapacityReleased, spa.ProviderRegistered:
		return rt.routeWaiting(ctx, rec)
	case spa.PolicySwitched:
		return rt.routeHeld(ctx, rec)
	case spa.CapacityReserved, spa.ClockAlerted:
		return nil // nothing to route
	default:
		if spa.AggregateOf(e) == spa.AggregateReferral {
			return rt.Route(ctx, rec.AggregateID, rec.OccurredAt)
		}
	}
	return nil
}

// routeHeld routes, after a policy switch, every referral waiting for a
// test: a switch in force now may release it (one from a later date is
// the scheduler's, on that date).
func (rt *Router) routeHeld(ctx context.Context, prompt spa.Record) error {
	refs, err := rt.model.Referrals()
	if err != nil {
		return err
	}
	for _, r := range refs {
		if r.Hold != spa.HoldReasonAwaitingTest {
			continue
		}
		if err := rt.Route(ctx, r.ID, prompt.OccurredAt); err != nil {
			return err
		}
	}
	return nil
}

// routeWaiting offers capacity that appeared to the referrals waiting for
// it, oldest first.
func (rt *Router) routeWaiting(ctx context.Context, prompt spa.Record) error {
	waiting, err := rt.model.AwaitingCapacity()
	if err != nil {
		return err
	}
	var p spa.Provider
	providers, err := rt.model.Providers(bolt.ProviderFilter{})
	if err != nil {
		return err
	}
	for _, q := range providers {
		if q.Details.ODS == prompt.AggregateID {
			p = q
		}
	}
	for _, r := range waiting {
		if !p.Details.Offers(r.Service) || !p.Details.Serves(r.Details.Patient.Borough) {
			continue
		}
		if err := rt.Route(ctx, r.ID, prompt.OccurredAt); err != nil {
			return err
		}
	}
	return nil
}

// Route takes a referral's routing steps until there is none to take,
// prompted by an event at event time at. A step that loses a race (the
// referral or the provider moved on) is decided again once the read model
// has caught up.
func (rt *Router) Route(ctx context.Context, id string, at time.Time) error {
	return steps(ctx, rt.store, id, rt.catchUp, func(recs []spa.Record, r spa.Referral, last uint64) ([]spa.Append, error) {
		stepAt := r.FactsAt
		if at.After(stepAt) {
			stepAt = at
		}
		// The policies in force are the log's, read from the model, which
		// has applied the prompt (and so every switch before it).
		policies, err := rt.model.Policies(rt.policies)
		if err != nil {
			return nil, err
		}
		var providers []spa.Provider
		if spa.NeedsProviders(r, policies, stepAt) {
			var err error
			if providers, err = rt.model.Providers(bolt.ProviderFilter{Borough: r.Details.Patient.Borough}); err != nil {
				return nil, err
			}
		}
		step := spa.NextStep(r, providers, policies, stepAt)
		if step.Event == nil {
			return nil, nil
		}
		actor := spa.Actor{Role: spa.ActorRouter, User: rt.id}
		rec := stepRecord(recs, fmt.Sprintf("route-%s-%d", id, last), stepAt, actor, step.Policy.Version, step.Event)
		batch := []spa.Append{{Record: rec, Expected: last, Guard: true}}
		if step.Provider != nil {
			pr := stepRecord(recs, rec.EventID+"-"+step.ProviderODS, stepAt, actor, step.Policy.Version, step.Provider)
			pr.AggregateID = step.ProviderODS
			batch = append(batch, spa.Append{Record: pr, Expected: providerVersion(providers, step.ProviderODS), Guard: step.GuardProvider})
		}
		rt.log.Debug("routing", "referral", id, "step", spa.EventName(step.Event), "rule", step.Rule, "policy", step.Policy.Version, "provider", step.ProviderODS)
		return batch, nil
	})
}

// catchUp waits until the read model has applied the whole log as it
// stands now, so that the next decision sees what beat the last one.
func (rt *Router) catchUp(ctx context.Context) error {
	last, err := rt.store.LastSequence(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return rt.model.WaitFor(wctx, last)
}

func providerVersion(ps []spa.Provider, ods string) uint64 {
	for _, p := range ps {
		if p.Details.ODS == ods {
			return p.Version
		}
	}
	return 0
}
