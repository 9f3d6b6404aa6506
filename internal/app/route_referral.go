package app

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"spa/internal/spa"
)

// Routing is what a worker's routing steps read besides the log: its own
// read model, which has applied at least the event that prompted them.
type Routing interface {
	// Providers returns the providers serving borough ("" for all).
	Providers(borough string) ([]spa.Provider, error)
	// AwaitingCapacity returns the referrals waiting for capacity of a
	// service in a borough (compared as spa.ProviderDetails.Serves
	// compares it), oldest first; AwaitingTest those held for an
	// infection test, oldest first.
	AwaitingCapacity(borough string, service spa.Service) ([]spa.Referral, error)
	AwaitingTest() ([]spa.Referral, error)
	// Policies returns the policies in force as the log has them.
	Policies() (spa.Policies, error)
	// CatchUp waits until the model has applied the whole log as it stands
	// now, so that a step decided again sees what beat the last one.
	CatchUp(ctx context.Context) error
}

// WithWorker makes the App a worker's, named id (the actor of the steps it
// takes), that routes by routing.
func WithWorker(id string, routing Routing) Option {
	return func(a *App) { a.worker, a.routing = id, routing }
}

// maxSteps bounds the routing steps one prompt takes on a referral.
const maxSteps = 20

// Route takes the routing steps an event prompts: for a referral's event,
// that referral's next steps; for a change of a provider's capacity, those
// of each referral waiting for capacity that the provider could take,
// oldest first; for a policy switch, those of each referral held for a
// test (a switch in force now may release it; one from a later date is the
// scheduler's, on that date).
func (a *App) Route(ctx context.Context, prompt spa.Record) error {
	var refs []spa.Referral
	var err error
	switch e := prompt.Event.(type) {
	case spa.CapacityUpdated, spa.CapacityReleased, spa.ProviderRegistered:
		refs, err = a.waitingFor(prompt.AggregateID)
	case spa.PolicySwitched:
		refs, err = a.routing.AwaitingTest()
	case spa.CapacityReserved, spa.ClockAlerted:
		return nil // nothing to route
	default:
		if spa.AggregateOf(e) == spa.AggregateReferral {
			return a.RouteReferral(ctx, prompt.AggregateID, prompt.OccurredAt)
		}
	}
	if err != nil {
		return err
	}
	for _, r := range refs {
		if err := a.RouteReferral(ctx, r.ID, prompt.OccurredAt); err != nil {
			return err
		}
	}
	return nil
}

// waitingFor returns the referrals waiting for capacity that provider ods
// could take (a service it offers, in a borough it serves), oldest first.
func (a *App) waitingFor(ods string) ([]spa.Referral, error) {
	providers, err := a.routing.Providers("")
	if err != nil {
		return nil, err
	}
	var p spa.Provider
	for _, q := range providers {
		if q.Details.ODS == ods {
			p = q
		}
	}
	var out []spa.Referral
	seen := map[string]bool{}
	for _, b := range p.Details.Boroughs {
		for _, s := range p.Details.Services {
			waiting, err := a.routing.AwaitingCapacity(b, s)
			if err != nil {
				return nil, err
			}
			for _, r := range waiting {
				if !seen[r.ID] {
					seen[r.ID] = true
					out = append(out, r)
				}
			}
		}
	}
	slices.SortFunc(out, func(x, y spa.Referral) int { return cmp.Compare(x.SubmittedSequence, y.SubmittedSequence) })
	return out, nil
}

// RouteReferral takes a referral's routing steps until there is none to
// take, prompted by an event at event time at (a step is dated at the
// later of that and the referral's last fact, never the wall clock, so
// that replays agree). The steps that follow each other without waiting
// for anyone (a pathway decided, then an offer with its reservation or a
// place in the queue) are decided together and appended as one atomic
// batch: one commit, not one per step (ADR 34). The batch is appended
// under the sequences it was decided on (the referral's, and the
// provider's for a reservation) with ids fixed by them, so a redelivered
// prompt or a second worker deciding the same thing appends nothing
// twice, and a unit of capacity is never promised twice. A batch that
// loses a race is decided again once the read model has caught up.
func (a *App) RouteReferral(ctx context.Context, id string, at time.Time) error {
	actor := spa.Actor{Role: spa.ActorRouter, User: a.worker}
	return a.steps(ctx, id, a.routing.CatchUp, func(recs []spa.Record, r spa.Referral, last uint64) ([]spa.Append, error) {
		// The policies in force are the log's, read from the model, which
		// has applied the prompt (and so every switch before it).
		policies, err := a.routing.Policies()
		if err != nil {
			return nil, err
		}
		var batch []spa.Append
		for n := 1; n <= maxBatchSteps; n++ {
			stepAt := r.FactsAt
			if at.After(stepAt) {
				stepAt = at
			}
			var providers []spa.Provider
			if spa.NeedsProviders(r, policies, stepAt) {
				if providers, err = a.routing.Providers(r.Details.Patient.Borough); err != nil {
					return nil, err
				}
			}
			step := spa.NextStep(r, providers, policies, stepAt)
			if step.Event == nil {
				break
			}
			eventID := fmt.Sprintf("route-%s-%d", id, last)
			if n > 1 {
				eventID = fmt.Sprintf("%s-%d", eventID, n)
			}
			rec := stepRecord(recs, eventID, stepAt, actor, step.Policy.Version, step.Event)
			batch = append(batch, spa.Append{Record: rec, Expected: last, Guard: true})
			if step.Provider != nil {
				pr := stepRecord(recs, rec.EventID+"-"+step.ProviderODS, stepAt, actor, step.Policy.Version, step.Provider)
				pr.AggregateID = step.ProviderODS
				batch = append(batch, spa.Append{Record: pr, Expected: providerVersion(providers, step.ProviderODS), Guard: step.GuardProvider})
				// The provider's state has changed: a further step
				// reads it again, in a batch of its own.
				break
			}
			if _, ends := step.Event.(spa.AssignmentStatusChanged); ends {
				break // a step read after a transition needs its sequence
			}
			recs = append(recs, rec)
			r.Apply(rec)
		}
		return batch, nil
	})
}

// maxBatchSteps bounds the routing steps decided into one batch.
const maxBatchSteps = 4

// steps takes a referral's steps one at a time through change until next
// decides none: next gets the referral's events, its state and its last
// sequence. A referral that does not exist has none.
func (a *App) steps(ctx context.Context, id string, settle func(context.Context) error, next func(recs []spa.Record, r spa.Referral, last uint64) ([]spa.Append, error)) error {
	for range maxSteps {
		seqs, err := a.change(ctx, target{agg: spa.AggregateReferral, id: id}, settle, func(h spa.History) ([]spa.Append, error) {
			r := spa.Replay(h.Records)
			if !r.Exists() {
				return nil, nil
			}
			return next(h.Records, r, h.Last)
		})
		if err != nil || len(seqs) == 0 {
			return err
		}
	}
	return fmt.Errorf("referral %s still has steps after %d", id, maxSteps)
}

// stepRecord wraps an event a worker decided on a referral: caused by the
// referral's last event, with an id fixed by what it is (so that two
// workers deciding the same thing collide), at event time at.
func stepRecord(recs []spa.Record, eventID string, at time.Time, actor spa.Actor, policy string, e spa.Event) spa.Record {
	prompt := recs[len(recs)-1]
	return spa.Record{
		EventID:       eventID,
		AggregateID:   prompt.AggregateID,
		OccurredAt:    at,
		RecordedAt:    time.Now(),
		Actor:         actor,
		CausationID:   prompt.EventID,
		CorrelationID: prompt.CorrelationID,
		PolicyVersion: policy,
		Event:         e,
	}
}

// providerVersion is the version of provider ods among ps (0 if absent).
func providerVersion(ps []spa.Provider, ods string) uint64 {
	for _, p := range ps {
		if p.Details.ODS == ods {
			return p.Version
		}
	}
	return 0
}
