package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/backoff"
	"spa/internal/bolt"
	ijs "spa/internal/jetstream"
	"spa/internal/spa"
)

// leaseKey is the scheduler's lease: a key in a JetStream key-value bucket
// (ijs.LeaseBucket) whose entries expire, so that a scheduler that dies
// loses it.
const leaseKey = "lease"

// SchedulerConfig configures the clock scheduler.
type SchedulerConfig struct {
	// Disabled: this worker never takes the lease (other workers raise
	// the alerts).
	Disabled bool
	// Hours are the SPA's operating hours (DefaultOperatingHours if zero).
	Hours spa.OperatingHours
	// Interval between passes over the referrals (default 5s); the lease
	// is renewed at least three times per its TTL (set by Provision).
	Interval time.Duration
	// Now is the clock that decides what is due (default time.Now).
	Now func() time.Time
}

// Scheduler raises the clocks' alerts. Every worker runs one, but only the
// holder of the lease works; when it dies another takes over once the lease
// expires. Alerts are appended under the referral's sequence with ids fixed
// by referral, clock and level, and a referral's state records the alerts
// raised, so a takeover raises none twice and misses none.
type Scheduler struct {
	id     string
	store  *ijs.Store
	model  *bolt.Model
	halted func() *Halt
	cfg    SchedulerConfig
	log    *slog.Logger
	lease  *backoff.Gate
	passes *backoff.Gate
}

// NewScheduler returns the scheduler of worker id, which picks the
// referrals to look at from model (whose projection reports halted).
func NewScheduler(id string, store *ijs.Store, model *bolt.Model, halted func() *Halt, cfg SchedulerConfig, log *slog.Logger) *Scheduler {
	if cfg.Hours == (spa.OperatingHours{}) {
		cfg.Hours = spa.DefaultOperatingHours
	}
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Scheduler{id: id, store: store, model: model, halted: halted, cfg: cfg, log: log,
		lease: backoff.NewGate("scheduler lease renewal", log), passes: backoff.NewGate("clock pass", log)}
}

// Run schedules until ctx ends; a lease it holds is then given up. It
// waits for the lease bucket (made by Provision). A worker whose read
// model has halted gives the lease up, so that a healthy one raises the
// alerts.
func (s *Scheduler) Run(ctx context.Context) error {
	kv, err := s.store.LeaseBucket(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("scheduler: %w", err)
	}
	ttl := ijs.DefaultLeaseTTL
	if st, err := kv.Status(ctx); err == nil && st.TTL() > 0 {
		ttl = st.TTL()
	}
	var rev uint64 // our lease's revision; 0 when we do not hold it
	defer func() {
		if rev != 0 {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = kv.Delete(dctx, leaseKey, jetstream.LastRevision(rev))
		}
	}()
	tick := time.NewTicker(min(s.cfg.Interval, ttl/3))
	defer tick.Stop()
	for {
		if h := s.halted(); h != nil {
			rev = s.giveUp(ctx, kv, rev, h)
		} else {
			rev = s.holdLease(ctx, kv, rev)
		}
		if rev != 0 {
			if err := s.pass(ctx); err != nil && ctx.Err() == nil {
				s.passes.Fail(err)
			} else if err == nil {
				s.passes.OK()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// holdLease takes a free lease or renews ours; it returns the lease's
// revision, or 0 when another scheduler holds it. Taking and losing the
// lease are logged; a lease held by another is not news.
func (s *Scheduler) holdLease(ctx context.Context, kv jetstream.KeyValue, rev uint64) uint64 {
	if rev == 0 {
		next, err := kv.Create(ctx, leaseKey, []byte(s.id))
		switch {
		case err == nil:
			s.lease.OK()
			s.log.Info("scheduler lease taken")
			return next
		case errors.Is(err, jetstream.ErrKeyExists):
			s.lease.OK()
		default:
			s.lease.Fail(err)
		}
		return 0
	}
	next, err := kv.Update(ctx, leaseKey, []byte(s.id), rev)
	if err == nil {
		s.lease.OK()
		return next
	}
	if ijs.Retryable(err) {
		// Keep trying to renew while the TTL lasts; the revision stays
		// ours unless another took the lease meanwhile.
		s.lease.Fail(err)
		return rev
	}
	s.log.Warn("scheduler lease lost", "err", err)
	return 0
}

// giveUp releases a lease this scheduler holds while its model is halted.
func (s *Scheduler) giveUp(ctx context.Context, kv jetstream.KeyValue, rev uint64, h *Halt) uint64 {
	if rev != 0 {
		if err := kv.Delete(ctx, leaseKey, jetstream.LastRevision(rev)); err == nil || !ijs.Retryable(err) {
			s.log.Warn("scheduler lease given up: the read model halted", "sequence", h.Sequence)
			return 0
		}
	}
	return rev
}

// pass raises every alert due now.
func (s *Scheduler) pass(ctx context.Context) error {
	now := s.cfg.Now()
	refs, err := s.model.Referrals()
	if err != nil {
		return err
	}
	for _, r := range refs {
		if len(spa.DueAlerts(r, s.cfg.Hours, now)) == 0 {
			continue
		}
		if err := s.raise(ctx, r.ID, now); err != nil {
			return err
		}
	}
	return nil
}

// raise appends a referral's due alerts, earliest first, each under the
// sequence it was decided on.
func (s *Scheduler) raise(ctx context.Context, id string, now time.Time) error {
	return steps(ctx, s.store, id, nil, func(recs []spa.Record, r spa.Referral, last uint64) ([]spa.Append, error) {
		due := spa.DueAlerts(r, s.cfg.Hours, now)
		if len(due) == 0 {
			return nil, nil
		}
		d := due[0]
		id := fmt.Sprintf("clock-%s-%s-%d-%d", id, d.Event.Clock, d.Event.Level, d.Event.DelayDays)
		rec := stepRecord(recs, id, d.At, spa.Actor{Role: "spa-scheduler", User: s.id}, "", d.Event)
		return []spa.Append{{Record: rec, Expected: last, Guard: true}}, nil
	})
}
