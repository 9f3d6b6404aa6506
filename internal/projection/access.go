package projection

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"spa/internal/backoff"
	"spa/internal/bolt"
	ijs "spa/internal/jetstream"
)

// Access feeds a worker's access index from the access log, in sequence
// order, never skipping a record, as Projector feeds the read model.
type Access struct {
	log   *ijs.AccessLog
	index *bolt.AccessIndex
	slog  *slog.Logger
	halt  atomic.Pointer[Halt]
	// halted is closed when the projection halts.
	halted chan struct{}
}

// NewAccess returns a projection of the access log into index.
func NewAccess(log *ijs.AccessLog, index *bolt.AccessIndex, slog *slog.Logger) *Access {
	return &Access{log: log, index: index, slog: slog, halted: make(chan struct{})}
}

// Halted returns why the projection stopped, or nil while it runs.
func (p *Access) Halted() *Halt { return p.halt.Load() }

// HaltedCh is closed when the projection halts.
func (p *Access) HaltedCh() <-chan struct{} { return p.halted }

// Run projects until ctx ends. It reads the access log from the index's
// applied sequence + 1 (the index file is the record of progress) and
// indexes what arrives in one transaction per batch, so the index applies
// N+1 only after N and nothing is acknowledged before it is committed.
//
// A record that cannot be decoded halts the projection at its sequence,
// as in Projector.Run: it is logged once, Halted reports it, and Run
// waits for ctx to end; the record is never skipped. Other failures are
// retried with backoff.
func (p *Access) Run(ctx context.Context) error {
	r := backoff.New("access index", p.slog)
	for ctx.Err() == nil {
		err := p.log.Follow(ctx, p.index.Applied()+1, fetchBatch, func(b ijs.Batch) error {
			if err := p.apply(b); err != nil {
				return err
			}
			if len(b.Events) > 0 {
				r.Succeeded()
			}
			return nil
		})
		var halt *haltError
		switch {
		case ctx.Err() != nil:
		case errors.As(err, &halt):
			p.halt.Store(&halt.Halt)
			close(p.halted)
			p.slog.Error("access index halted: an access record cannot be read; ListAccess fails until it is resolved (see docs/operations.md)",
				"sequence", halt.Sequence, "subject", halt.Subject, "reason", halt.Reason, "applied", p.index.Applied())
			<-ctx.Done()
		case err != nil:
			if werr := r.Failed(ctx, err); werr != nil {
				return nil
			}
		}
	}
	return nil
}

// apply decodes and indexes a batch in one transaction; the records
// before one that cannot be decoded are indexed, then it halts.
func (p *Access) apply(b ijs.Batch) error {
	entries := make([]bolt.AccessEntry, 0, len(b.Events))
	var halt error
	for _, e := range b.Events {
		acc, read, err := ijs.DecodeAccess(e)
		if err != nil {
			halt = &haltError{Halt{Sequence: e.Sequence, Subject: e.Subject, Reason: err.Error()}}
			break
		}
		entries = append(entries, bolt.AccessEntry{Sequence: e.Sequence, Access: acc, Read: read})
	}
	if err := p.index.Apply(entries); err != nil {
		return err
	}
	return halt
}
