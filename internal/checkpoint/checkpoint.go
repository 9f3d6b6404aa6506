// Package checkpoint signs checkpoints of the event log (ADR 26): at an
// interval while the log grows, at shutdown, and when an operator asks
// (spa-ctl checkpoint, over NATS). Each checkpoint extends the last one
// stored, so its cost is the events appended since; several signers may
// run at once and each sequence is checkpointed once.
package checkpoint

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"spa/internal/signing"
	"spa/internal/spa"
)

// Events is the event log as the signer reads it (jetstream.Store).
type Events interface {
	// LastSequence returns the log's last sequence (0 when empty).
	LastSequence(ctx context.Context) (uint64, error)
	// Replay calls fn with the stored events f selects, in log order.
	Replay(ctx context.Context, f spa.EventFilter, fn func(spa.StoredEvent) error) error
}

// Store keeps the signed checkpoints (jetstream.Checkpoints).
type Store interface {
	// Last returns the last checkpoint stored and its position in the
	// store (nil, 0 when there is none).
	Last(ctx context.Context) (note []byte, at uint64, err error)
	// Append stores a checkpoint of the log up to sequence if the store's
	// last position is still expectedLast, or fails with
	// spa.ErrConcurrentChange.
	Append(ctx context.Context, note []byte, sequence, expectedLast uint64) error
}

// Signer makes checkpoints. Safe for concurrent use.
type Signer struct {
	events Events
	store  Store
	key    *signing.Key
	log    *slog.Logger
	now    func() time.Time
	// mu makes one checkpoint at a time in this process; other processes
	// race through the store's expected position.
	mu sync.Mutex
}

// New returns a signer that checkpoints events into store with key;
// log is told of failures and of events whose signatures key does not
// verify.
func New(events Events, store Store, key *signing.Key, log *slog.Logger) *Signer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Signer{events: events, store: store, key: key, log: log, now: time.Now}
}

// Result is the checkpoint Make leaves as the last one stored.
type Result struct {
	Checkpoint signing.Checkpoint
	// Note is the signed checkpoint, as stored.
	Note []byte
	// Made is true when this call signed it; false when the last one
	// stored already covered the log (signed earlier, or by another
	// signer that won the race).
	Made bool
}

// maxAttempts bounds how many races one Make may lose: a few signers
// lose one or two; more means something else publishes checkpoints.
const maxAttempts = 8

// Make signs a checkpoint of the log as it stands, unless the last
// checkpoint stored already covers it, and returns the last checkpoint
// (its Checkpoint zero when the log is empty); one stored by another
// signer meanwhile that covers the log as it stood when Make was called
// is returned as it is. It extends the last one
// stored when that one verifies with its key; otherwise (none yet,
// another key, or a forgery) it hashes the log from sequence 1 and says
// why in the log. A checkpoint stored by another signer meanwhile is read
// and extended in turn, so each sequence is checkpointed at most once.
// Events whose signatures its key does not verify are folded in all the
// same (a checkpoint commits to what the log holds) and logged as a
// warning: spa-ctl verify reports them.
func (s *Signer) Make(ctx context.Context) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var target uint64 // the log's end when Make started
	for attempt := 1; ; attempt++ {
		note, at, err := s.store.Last(ctx)
		if err != nil {
			return Result{}, err
		}
		var from signing.LogHash
		var last *Result
		if note != nil {
			c, err := signing.OpenCheckpoint(note, s.key.Verifiers())
			if err != nil {
				s.log.Warn("the last checkpoint stored does not verify with this signer's key: hashing the log from sequence 1", "err", err)
			} else {
				from, last = c.LogHash, &Result{Checkpoint: c, Note: note}
			}
		}
		end, err := s.events.LastSequence(ctx)
		if err != nil {
			return Result{}, err
		}
		if attempt == 1 {
			target = end
		}
		switch {
		case last != nil && attempt > 1 && from.Sequence >= target:
			return *last, nil // the signer that won covers the log as it was asked
		case last != nil && end < from.Sequence:
			return *last, fmt.Errorf("checkpoint: the log ends at sequence %d, before the last checkpoint (sequence %d): events were removed", end, from.Sequence)
		case last != nil && end == from.Sequence:
			return *last, nil
		case end == 0:
			return Result{}, nil
		}
		h, err := s.extend(ctx, from, end)
		if err != nil {
			return Result{}, err
		}
		c := signing.Checkpoint{LogHash: h, Signed: s.now().UTC().Truncate(time.Second)}
		signed, err := s.key.SignCheckpoint(c)
		if err != nil {
			return Result{}, err
		}
		err = s.store.Append(ctx, signed, end, at)
		if errors.Is(err, spa.ErrConcurrentChange) && attempt < maxAttempts {
			continue // another signer stored one first: extend that
		}
		if errors.Is(err, spa.ErrConcurrentChange) {
			return Result{}, fmt.Errorf("checkpoint: lost the race to store one %d times in a row: does something else publish checkpoints? %w", attempt, err)
		}
		if err != nil {
			return Result{}, err
		}
		return Result{Checkpoint: c, Note: signed, Made: true}, nil
	}
}

// extend folds the events after from up to end into from.
func (s *Signer) extend(ctx context.Context, from signing.LogHash, end uint64) (signing.LogHash, error) {
	verifiers := s.key.Verifiers()
	var unsigned int
	var first uint64
	h := from
	err := s.events.Replay(ctx, spa.EventFilter{FromSeq: from.Sequence + 1, ToSeq: end}, func(e spa.StoredEvent) error {
		if e.Sequence != h.Sequence+1 {
			return fmt.Errorf("checkpoint: the log has no event at sequence %d (the next is %d)", h.Sequence+1, e.Sequence)
		}
		own := sha256.Sum256(e.Data)
		h.Add(e.Sequence, e.Subject, own[:])
		if verifiers.VerifyEvent(e.Subject, own[:], e.Signature) != nil {
			if unsigned == 0 {
				first = e.Sequence
			}
			unsigned++
		}
		return nil
	})
	if err != nil {
		return h, err
	}
	if h.Sequence != end {
		return h, fmt.Errorf("checkpoint: read the log to sequence %d, want %d", h.Sequence, end)
	}
	if unsigned > 0 {
		s.log.Warn("events without a valid signature by this signer's key: forged, or signed by an earlier key; spa-ctl verify with every public key tells which",
			"events", unsigned, "first_sequence", first, "up_to", end)
	}
	return h, nil
}

// Run makes a checkpoint every interval (when the log has grown) until
// ctx ends; a failure is logged and tried again at the next interval.
// The owner makes a last one at shutdown, once appends have stopped.
func (s *Signer) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := s.Make(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			s.log.Warn("checkpoint failed; trying again every interval", "err", err, "every", every)
			failing = true
		case err == nil:
			if failing {
				s.log.Info("checkpoints signed again")
			}
			failing = false
			if res.Made {
				s.log.Debug("checkpoint signed", "sequence", res.Checkpoint.Sequence)
			}
		}
	}
}
