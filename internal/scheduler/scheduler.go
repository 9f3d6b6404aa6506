// Package scheduler runs the clocks: one worker at a time, holding a lease,
// has the application raise the alerts that fall due and take the routing
// steps a policy coming into force prompts.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/app"
	"spa/internal/backoff"
	"spa/internal/bolt"
	ijs "spa/internal/jetstream"
	"spa/internal/projection"
	"spa/internal/spa"
)

// leaseKey is the scheduler's lease: a key in a JetStream key-value bucket
// (ijs.LeaseBucket) whose entries expire, so that a scheduler that dies
// loses it.
const leaseKey = "lease"

// Config configures the clock scheduler.
type Config struct {
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
// by their identity, and a referral's state records the alerts raised, so
// a takeover raises none twice and misses none (app.App.RaiseAlerts).
type Scheduler struct {
	id     string
	app    *app.App
	store  *ijs.Store
	model  *bolt.Model
	halted func() *projection.Halt
	// defaults are the built-in policies the switches in the log apply to.
	defaults spa.Policies
	cfg      Config
	log      *slog.Logger
	lease    *backoff.Gate
	passes   *backoff.Gate

	// What earlier passes found nothing to do for, while the referral
	// stays as it was (its mark, bolt.Clocked): unmoved, the referrals no policy
	// in force (inForce) moves; notYet, those whose next alert is later
	// in the operating hours than the index's bound.
	inForce string
	unmoved map[string]uint64
	notYet  map[string]notYet
}

// New returns the scheduler of worker id, which picks the referrals to look
// at from model (whose projection reports halted) and has a (the worker's
// App) take the steps; defaults are the built-in policies.
func New(id string, a *app.App, store *ijs.Store, model *bolt.Model, halted func() *projection.Halt, defaults spa.Policies, cfg Config, log *slog.Logger) *Scheduler {
	if cfg.Hours == (spa.OperatingHours{}) {
		cfg.Hours = spa.DefaultOperatingHours
	}
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Scheduler{id: id, app: a, store: store, model: model, halted: halted, defaults: defaults, cfg: cfg, log: log,
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
	l := &lease{kv: kv, ttl: ijs.DefaultLeaseTTL}
	if st, err := kv.Status(ctx); err == nil && st.TTL() > 0 {
		l.ttl = st.TTL()
	}
	defer func() {
		if l.rev != 0 {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = kv.Delete(dctx, leaseKey, jetstream.LastRevision(l.rev))
		}
	}()
	tick := time.NewTicker(min(s.cfg.Interval, l.ttl/3))
	defer tick.Stop()
	for {
		if s.hold(ctx, l) {
			if err := s.pass(ctx, l); err != nil && ctx.Err() == nil {
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

// lease is a scheduler's hold on the lease key.
type lease struct {
	kv  jetstream.KeyValue
	ttl time.Duration
	// rev is our lease's revision, 0 when we do not hold it; renewed is
	// when the lease server last confirmed it.
	rev     uint64
	renewed time.Time
}

// due reports whether the lease should be renewed now: a third of its TTL
// has passed since the last renewal.
func (l *lease) due() bool { return time.Since(l.renewed) >= l.ttl/3 }

// hold takes a free lease or renews ours, and reports whether this
// scheduler holds it. While renewals fail (an election) it goes on
// holding it only for two thirds of the TTL after the last renewal, so
// that it has stopped before another can take it. A worker whose model
// has halted gives the lease up. Taking and losing the lease are logged;
// a lease held by another is not news.
func (s *Scheduler) hold(ctx context.Context, l *lease) bool {
	if h := s.halted(); h != nil {
		if l.rev != 0 {
			err := l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.rev))
			if err != nil && ijs.Retryable(err) && time.Since(l.renewed) < l.ttl*2/3 {
				return false
			}
			s.log.Warn("scheduler lease given up: the read model halted", "sequence", h.Sequence)
			l.rev = 0
		}
		return false
	}
	if l.rev == 0 {
		next, err := l.kv.Create(ctx, leaseKey, []byte(s.id))
		switch {
		case err == nil:
			s.lease.OK()
			s.log.Info("scheduler lease taken")
			l.rev, l.renewed = next, time.Now()
			return true
		case errors.Is(err, jetstream.ErrKeyExists):
			s.lease.OK()
		default:
			s.lease.Fail(err)
		}
		return false
	}
	next, err := l.kv.Update(ctx, leaseKey, []byte(s.id), l.rev)
	switch {
	case err == nil:
		s.lease.OK()
		l.rev, l.renewed = next, time.Now()
		return true
	case ijs.Retryable(err) && time.Since(l.renewed) < l.ttl*2/3:
		s.lease.Fail(err)
		return true
	}
	s.log.Warn("scheduler lease lost", "err", err)
	l.rev = 0
	return false
}

// pass raises every alert due now, and routes every referral whose next
// step a policy that came into force since its last fact changes (an
// awaiting-test hold once the overlay ends) at the instant that policy
// came into force; it renews the lease as it goes and stops if it is lost.
// It reads only the referrals the model's clock index names (bolt.DueBy,
// bolt.PolicyBoundBefore), and of those only the ones it has not already
// found to have nothing to do, so that a pass costs what falls due, not
// what the log holds (docs/adr/0031). It calls cfg.Now once.
func (s *Scheduler) pass(ctx context.Context, l *lease) error {
	now := s.cfg.Now()
	policies, err := s.model.Policies(s.defaults)
	if err != nil {
		return err
	}
	// Policy turns: only the referrals the policies in force could move,
	// whose last fact came before the latest of them.
	turn, inForce := turns(policies, now)
	if inForce != s.inForce {
		s.inForce, s.unmoved = inForce, nil
	}
	unmoved := map[string]uint64{}
	bound, err := s.model.PolicyBoundBefore(turn, func(id string, mark uint64) bool {
		if m, ok := s.unmoved[id]; ok && m == mark {
			unmoved[id] = mark
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	for _, c := range bound {
		turned, ok := spa.PolicyStep(c.Referral, policies, now)
		if !ok {
			unmoved[c.Referral.ID] = c.Mark
			continue
		}
		if l.due() && !s.hold(ctx, l) {
			return nil
		}
		// One referral that cannot be routed now must not hold up the
		// others: the next pass tries it again.
		if err := s.app.RouteReferral(ctx, c.Referral.ID, turned); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Warn("routing a referral a policy changed failed; trying again next pass", "referral", c.Referral.ID, "err", err)
		}
	}
	s.unmoved = unmoved

	// Alerts: the referrals whose next alert may be due, but those this
	// scheduler knows are not due yet in its operating hours.
	later := map[string]notYet{}
	due, err := s.model.DueBy(now, func(id string, mark uint64) bool {
		if n, ok := s.notYet[id]; ok && n.mark == mark && (n.at.IsZero() || now.Before(n.at)) {
			later[id] = n
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	for _, c := range due {
		if len(spa.DueAlerts(c.Referral, s.cfg.Hours, now)) == 0 {
			at, _ := spa.NextAlert(c.Referral, s.cfg.Hours)
			later[c.Referral.ID] = notYet{mark: c.Mark, at: at}
			continue
		}
		if l.due() && !s.hold(ctx, l) {
			return nil
		}
		if err := s.app.RaiseAlerts(ctx, c.Referral.ID, s.cfg.Hours, now); err != nil {
			return err
		}
	}
	s.notYet = later
	return nil
}

// notYet is a referral whose next alert the index had due, but that is
// due later in the scheduler's operating hours: at at (zero: never) as
// long as the referral keeps its mark (bolt.Clocked).
type notYet struct {
	mark uint64
	at   time.Time
}

// turns returns the instant the latest policy in force at now came into
// force, and a description of the policies in force at now: PolicyStep's
// answer for a referral depends on nothing else.
func turns(ps spa.Policies, now time.Time) (time.Time, string) {
	var turn time.Time
	var inForce []spa.Policy
	for _, p := range ps {
		if !p.From.After(now) {
			inForce = append(inForce, p)
			turn = p.From
		}
	}
	return turn, fmt.Sprint(inForce)
}
