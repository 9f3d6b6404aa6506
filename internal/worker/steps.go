package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	ijs "spa/internal/jetstream"
	"spa/internal/spa"
)

// maxSteps bounds the steps and retries one prompt may take on a referral.
const maxSteps = 20

// nextFunc decides a referral's next change from its events, its state and
// its last sequence; no events means nothing is left to do.
type nextFunc func(recs []spa.Record, r spa.Referral, last uint64) ([]spa.Append, error)

// steps takes a referral's changes one at a time until next has none: it
// loads the referral from the log, asks next, and appends what next
// decided (guarded as next says). A change that loses a race is decided
// again, after settle (if any) has let the decider's view catch up.
func steps(ctx context.Context, store *ijs.Store, id string, settle func(context.Context) error, next nextFunc) error {
	for range maxSteps {
		recs, last, err := store.Load(ctx, spa.AggregateReferral, id)
		if err != nil {
			return err
		}
		r := spa.Replay(recs)
		if !r.Exists() {
			return nil
		}
		batch, err := next(recs, r, last)
		if err != nil || len(batch) == 0 {
			return err
		}
		_, err = store.AppendBatch(ctx, batch)
		switch {
		case errors.Is(err, spa.ErrConcurrentChange):
			if settle != nil {
				if err := settle(ctx); err != nil {
					return err
				}
			}
		case err != nil:
			return err
		}
	}
	return fmt.Errorf("referral %s still has steps after %d attempts", id, maxSteps)
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
