// Package projection feeds a worker's read model from the event log, in
// sequence order, never skipping an event.
package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"spa/internal/backoff"
	"spa/internal/bolt"
	"spa/internal/codec"
	ijs "spa/internal/jetstream"
	"spa/internal/spa"
)

// fetchBatch bounds the events one read-model transaction applies.
const fetchBatch = 1000

// Halt says why a projection stopped for good: the event at Sequence
// cannot be applied by this version of the worker.
type Halt struct {
	Sequence uint64 `json:"sequence"`
	Subject  string `json:"subject"`
	Reason   string `json:"reason"`
}

// Projector feeds a read model from the event log, in sequence order,
// never skipping an event.
type Projector struct {
	store *ijs.Store
	model *bolt.Model
	skip  Skips
	log   *slog.Logger
	halt  atomic.Pointer[Halt]
	// halted is closed when the projection halts.
	halted chan struct{}
}

// New returns a projector of the event log into model that steps over the
// undecodable events in skip.
func New(store *ijs.Store, model *bolt.Model, skip Skips, log *slog.Logger) *Projector {
	return &Projector{store: store, model: model, skip: skip, log: log, halted: make(chan struct{})}
}

// Halted returns why the projection stopped, or nil while it runs.
func (p *Projector) Halted() *Halt { return p.halt.Load() }

// HaltedCh is closed when the projection halts.
func (p *Projector) HaltedCh() <-chan struct{} { return p.halted }

// Run projects until ctx ends. It reads the log from the model's applied
// sequence + 1 (the model file, not the server, is the record of
// progress) with an ordered consumer (ijs.Store.Follow), and applies what
// arrives in one transaction per batch; the model refuses a batch that
// does not follow on from its applied sequence, and Run then reads again
// from there. So the model applies N+1 only after N.
//
// An event that cannot be decoded (a corrupt message, or a type this
// version does not know) halts the projection at its sequence: Run logs
// one error, Halted reports it, and Run waits for ctx to end, leaving the
// process and every other reader up. The event is never skipped; the
// operator resolves it (docs/operations.md) and restarts the worker.
// Other failures (a leader election, a full disk) are retried with
// backoff.
func (p *Projector) Run(ctx context.Context) error {
	r := backoff.New("projection", p.log)
	for ctx.Err() == nil {
		from := p.model.Applied() + 1
		err := p.store.Follow(ctx, ijs.FollowOptions{From: from, Batch: fetchBatch, What: "projection read"}, func(b ijs.Batch) error {
			if err := p.apply(b.Events); err != nil {
				return err
			}
			if len(b.Events) > 0 {
				r.Succeeded()
			}
			return nil
		})
		var halt *haltError
		var gap *bolt.GapError
		switch {
		case ctx.Err() != nil:
		case errors.As(err, &gap) && p.stepOver(ctx, gap):
			r.Succeeded()
		case errors.As(err, &halt):
			p.halt.Store(&halt.Halt)
			close(p.halted)
			p.log.Error("projection halted: an event cannot be applied; queries beyond it fail until it is resolved (see docs/operations.md)",
				"sequence", halt.Sequence, "subject", halt.Subject, "reason", halt.Reason, "applied", p.model.Applied())
			<-ctx.Done()
		case err != nil:
			// A gap or a failed commit: read again from the applied
			// sequence + 1.
			if werr := r.Failed(ctx, err); werr != nil {
				return nil
			}
		}
	}
	return nil
}

// stepOver applies the sequences of a gap as empty entries if they hold
// no event and never will (deleted); it reports whether it did.
func (p *Projector) stepOver(ctx context.Context, gap *bolt.GapError) bool {
	entries, err := holes(ctx, p.store, gap.Applied+1, gap.Got-1)
	if err != nil {
		return false
	}
	if err := p.model.Apply(entries); err != nil {
		return false
	}
	p.log.Warn("projection stepped over deleted sequences", "from", gap.Applied+1, "to", gap.Got-1)
	return true
}

// holes returns empty entries for the sequences from to to if the
// stream's leader says none holds an event or ever will (deleted), and an
// error otherwise: a gap that must be read again.
func holes(ctx context.Context, store *ijs.Store, from, to uint64) ([]bolt.Entry, error) {
	ok, err := store.Holes(ctx, from, to)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("projection: events %d-%d missing from what was read", from, to)
	}
	entries := make([]bolt.Entry, 0, to-from+1)
	for seq := from; seq <= to; seq++ {
		entries = append(entries, bolt.Entry{Record: spa.Record{Sequence: seq}})
	}
	return entries, nil
}

// haltError stops the projection at an event it cannot apply.
type haltError struct{ Halt }

func (e *haltError) Error() string {
	return fmt.Sprintf("sequence %d on %s: %s", e.Sequence, e.Subject, e.Reason)
}

// apply decodes and applies events in one transaction; the events before
// one that cannot be decoded are applied, then it halts.
func (p *Projector) apply(events []spa.StoredEvent) error {
	entries := make([]bolt.Entry, 0, len(events))
	var halt error
	for _, e := range events {
		entry, err := p.skip.entry(e)
		if err != nil {
			halt = &haltError{Halt{Sequence: e.Sequence, Subject: e.Subject, Reason: err.Error()}}
			break
		}
		entries = append(entries, entry)
	}
	if err := p.model.Apply(entries); err != nil {
		return err
	}
	return halt
}

// Skips are the sequences of undecodable events an operator has decided to
// step over (--skip-undecodable): each is applied as an empty entry, by
// every worker alike. A decodable event is never skipped.
type Skips map[uint64]bool

// entry decodes a stored event for the read model, or returns an empty
// entry for an undecodable one in s.
func (s Skips) entry(e spa.StoredEvent) (bolt.Entry, error) {
	rec, err := codec.DecodeStored(e)
	switch {
	case err == nil:
		return bolt.Entry{Record: rec, Raw: e.Data}, nil
	case s[e.Sequence]:
		// Raw is kept so the model records the stored event's hash: a
		// restart finds its last entry where the log has it.
		// An empty message has a hash too, unlike a deleted sequence.
		entry := bolt.Entry{Record: spa.Record{Sequence: e.Sequence}, Raw: e.Data}
		if entry.Raw == nil {
			entry.Raw = []byte{}
		}
		if agg, id, ok := spa.AggregateOfSubject(e.Subject); ok {
			entry.Skipped = &bolt.Skipped{Aggregate: agg, ID: id, Provider: e.Provider}
		}
		return entry, nil
	}
	return bolt.Entry{}, err
}

// Feed feeds a read model from the event log, a thousand events per
// transaction, as the projector would: deleted sequences and the skipped
// undecodable events are stepped over, and any other event that cannot be
// decoded fails the feed.
func Feed(store *ijs.Store, skip Skips) bolt.Feed {
	return func(ctx context.Context, m *bolt.Model, from, to uint64) error {
		var batch []bolt.Entry
		flush := func() error {
			err := m.Apply(batch)
			batch = batch[:0]
			return err
		}
		next := from
		err := store.Replay(ctx, spa.EventFilter{FromSeq: from, ToSeq: to}, func(e spa.StoredEvent) error {
			if e.Sequence > next {
				gap, err := holes(ctx, store, next, e.Sequence-1)
				if err != nil {
					return err
				}
				batch = append(batch, gap...)
			}
			entry, err := skip.entry(e)
			if err != nil {
				return fmt.Errorf("projection: sequence %d on %s: %w", e.Sequence, e.Subject, err)
			}
			batch = append(batch, entry)
			next = e.Sequence + 1
			if len(batch) >= fetchBatch {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
		return flush()
	}
}
