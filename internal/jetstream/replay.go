package jetstream

import (
	"context"
	"slices"

	"spa/internal/spa"
)

// Replay calls fn for every stored event matching f, in log order, up to
// the log's end when Replay started (or f.ToSeq). It reads with Follow,
// and waits for the log's end until ctx ends, so a leader election or a
// lost connection, at the start or part-way, delays the replay but neither
// fails it nor ends it early nor skips an event.
func (s *Store) Replay(ctx context.Context, f spa.EventFilter, fn func(spa.StoredEvent) error) error {
	var end uint64
	err := s.await(ctx, s.reads, func(ctx context.Context) (err error) {
		end, err = s.lastSequence(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if f.ToSeq > 0 && f.ToSeq < end {
		end = f.ToSeq
	}
	if end == 0 || f.FromSeq > end {
		return nil
	}
	opts := FollowOptions{From: f.FromSeq, FromTime: f.FromTime, What: "replay"}
	switch {
	case f.ReferralID != "":
		opts.Subjects = []string{SubjectOf(spa.AggregateReferral, f.ReferralID)}
	case f.Provider != "":
		opts.Subjects = []string{SubjectOf(spa.AggregateProvider, f.Provider), SubjectOf(spa.AggregateReferral, "*")}
	}
	return s.Follow(ctx, opts, func(b Batch) error {
		for _, e := range b.Events {
			if e.Sequence > end || !f.ToTime.IsZero() && !e.Time.Before(f.ToTime) {
				return ErrStop
			}
			if f.Provider != "" && e.Provider != f.Provider || len(f.Types) > 0 && !slices.Contains(f.Types, e.Type) ||
				!f.FromTime.IsZero() && e.Time.Before(f.FromTime) {
				continue
			}
			if err := fn(e); err != nil {
				return err
			}
			if e.Sequence == end {
				return ErrStop
			}
		}
		if b.CaughtUp {
			return ErrStop
		}
		return nil
	})
}
