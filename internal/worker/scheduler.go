package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/bolt"
	ijs "spa/internal/jetstream"
	"spa/internal/spa"
)

// The scheduler's lease: a key in a JetStream key-value bucket whose
// entries expire, so that a scheduler that dies loses it.
const (
	LeaseBucket = "spa_scheduler"
	leaseKey    = "lease"
)

// SchedulerConfig configures the clock scheduler.
type SchedulerConfig struct {
	// Disabled: this worker never takes the lease (other workers raise
	// the alerts).
	Disabled bool
	// Hours are the SPA's operating hours (DefaultOperatingHours if zero).
	Hours spa.OperatingHours
	// Interval between passes over the referrals (default 5s).
	Interval time.Duration
	// LeaseTTL is how long a lease outlives its holder (default 15s).
	LeaseTTL time.Duration
	// Now is the clock that decides what is due (default time.Now).
	Now func() time.Time
}

// Scheduler raises the clocks' alerts. Every worker runs one, but only the
// holder of the lease works; when it dies another takes over once the lease
// expires. Alerts are appended under the referral's sequence with ids fixed
// by referral, clock and level, and a referral's state records the alerts
// raised, so a takeover raises none twice and misses none.
type Scheduler struct {
	id    string
	store *ijs.Store
	model *bolt.Model
	cfg   SchedulerConfig
	log   *slog.Logger
}

// NewScheduler returns the scheduler of worker id.
func NewScheduler(id string, store *ijs.Store, model *bolt.Model, cfg SchedulerConfig, log *slog.Logger) *Scheduler {
	if cfg.Hours == (spa.OperatingHours{}) {
		cfg.Hours = spa.DefaultOperatingHours
	}
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Scheduler{id: id, store: store, model: model, cfg: cfg, log: log}
}

// Run schedules until ctx ends; a lease it holds is then given up.
func (s *Scheduler) Run(ctx context.Context) error {
	kv, err := s.store.JetStream().CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeaseBucket,
		Description: "the SPA clock scheduler's lease",
		TTL:         s.cfg.LeaseTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    s.store.Replicas(),
	})
	if err != nil {
		return fmt.Errorf("scheduler: lease bucket: %w", err)
	}
	var rev uint64 // our lease's revision; 0 when we do not hold it
	defer func() {
		if rev != 0 {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = kv.Delete(dctx, leaseKey, jetstream.LastRevision(rev))
		}
	}()
	tick := time.NewTicker(min(s.cfg.Interval, s.cfg.LeaseTTL/3))
	defer tick.Stop()
	for {
		rev = s.holdLease(ctx, kv, rev)
		if rev != 0 {
			if err := s.pass(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("clock pass failed; next pass retries", "err", err)
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
// revision, or 0 when another scheduler holds it.
func (s *Scheduler) holdLease(ctx context.Context, kv jetstream.KeyValue, rev uint64) uint64 {
	var err error
	if rev == 0 {
		if rev, err = kv.Create(ctx, leaseKey, []byte(s.id)); err == nil {
			s.log.Info("scheduler lease taken", "worker", s.id)
		}
	} else if rev, err = kv.Update(ctx, leaseKey, []byte(s.id), rev); err != nil {
		s.log.Warn("scheduler lease lost", "worker", s.id, "err", err)
	}
	if err != nil {
		return 0
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
