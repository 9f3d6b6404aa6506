package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"spa/internal/app"
	"spa/internal/await"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/scheduler"
	"spa/internal/spa"
	"spa/internal/worker"
)

// fakeClock is the schedulers' shared "now", moved by the test. A
// scheduler reads it once, at the start of each pass, so its reads count
// the passes begun.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	reads int
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.t
}

// Set moves the clock to t and returns the reads so far.
func (c *fakeClock) Set(t time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
	return c.reads
}

// SetAndPass moves the clock to t and waits until a whole pass has run
// at t: one began after the move (the next read) and ended (the read
// after that began the following pass). No sleeping beyond a pass.
func (c *fakeClock) SetAndPass(t *testing.T, at time.Time) {
	t.Helper()
	since := c.Set(at)
	poll(t, "a whole pass at "+at.Format(time.DateTime), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.reads >= since+2
	})
}

func poll(t *testing.T, what string, f func() bool) {
	t.Helper()
	await.True(t, 60*time.Second, what, f)
}

// TestSchedulerFailover runs two workers; the one holding the scheduler's
// lease is killed part-way (its connection cut, no goodbye), the other
// takes over once the lease expires, and every referral ends with each
// alert it is due exactly once, at the instant it fell due.
func TestSchedulerFailover(t *testing.T) {
	t.Parallel()
	srv := jetstreamtest.Start(t)
	ctx := context.Background()
	t0 := time.Date(2024, 1, 10, 9, 0, 0, 0, time.UTC) // GMT = UK time in January
	clock := &fakeClock{t: t0}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	type running struct {
		nc     *nats.Conn
		cancel context.CancelFunc
		done   chan error
	}
	workers := map[string]*running{}
	for _, id := range []string{"worker-a", "worker-b"} {
		nc := jetstreamtest.Connect(t, srv)
		store := jetstreamtest.Store(t, nc, jetstream.Setup{LeaseTTL: time.Second})
		wctx, cancel := context.WithCancel(ctx)
		w := &running{nc: nc, cancel: cancel, done: make(chan error, 1)}
		cfg := worker.Config{DataDir: t.TempDir(), ID: id, Log: log,
			Scheduler: scheduler.Config{Interval: 20 * time.Millisecond, Now: clock.Now}}
		go func() { w.done <- worker.Run(wctx, nc, store, cfg, nil) }()
		workers[id] = w
		t.Cleanup(func() { cancel(); <-w.done })
	}

	nc := jetstreamtest.Connect(t, srv)
	store := jetstreamtest.Store(t, nc, jetstream.Setup{LeaseTTL: time.Second})
	a := app.New(store, nil)
	const n = 20
	var ids []string
	for i := range n {
		c := spa.SubmitReferral{RequestID: fmt.Sprintf("failover-%04d", i), Details: spa.Details{
			Patient:      spa.Patient{NHSNumber: "9434765919", GivenName: "Ann", FamilyName: fmt.Sprint("Patient ", i), BirthDate: "1940-01-01", Postcode: "BR1 3JH", Borough: "Bromley"},
			Episode:      spa.Episode{SiteODS: "RJZ30", Ward: "Darwin Ward", AdmissionDate: "2024-01-08"},
			AdmittedFrom: spa.AdmittedFromHome, Needs: spa.Needs{Mobility: spa.MobilityWalkingAid, CareCallsPerDay: 2},
			HospitalLead: spa.Contact{Name: "Ada Obi", Phone: "020 8000 1234"}, DischargeReadyDate: "2024-01-10",
		}}
		res, err := a.SubmitReferral(ctx, app.Meta{OccurredAt: t0}, c)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ReferralID)
	}
	alerts := func() (map[string][]spa.Record, int) {
		out, total := map[string][]spa.Record{}, 0
		for _, id := range ids {
			recs, _, err := store.Load(ctx, spa.AggregateReferral, id)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if _, ok := r.Event.(spa.ClockAlerted); ok {
					out[id] = append(out[id], r)
					total++
				}
			}
		}
		return out, total
	}

	// Three days on: the same-day clock's warning, breach and escalation,
	// reablement's warning and breach, and the warning, breach and
	// escalation of the wait in the no-capacity queue (no provider has
	// room) are due (8 each).
	clock.Set(t0.Add(72 * time.Hour))
	poll(t, "first alerts", func() bool { _, got := alerts(); return got == 8*n })

	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, jetstream.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := kv.Get(ctx, "lease")
	if err != nil {
		t.Fatal(err)
	}
	leader, other := string(lease.Value()), "worker-a"
	if leader == "worker-a" {
		other = "worker-b"
	}
	workers[leader].nc.Close() // killed: no chance to give the lease back
	workers[leader].cancel()

	// 25 days on: reablement's escalation and the 7, 14 and 21 day flags.
	clock.Set(t0.Add(25 * 24 * time.Hour))
	poll(t, "the other worker takes over", func() bool {
		e, err := kv.Get(ctx, "lease")
		return err == nil && string(e.Value()) == other
	})
	poll(t, "all alerts", func() bool { _, got := alerts(); return got >= 12*n })
	byReferral, total := alerts()
	if total != 12*n {
		t.Fatalf("%d alerts, want %d", total, 12*n)
	}
	uk := func(d, h int) time.Time { return time.Date(2024, 1, d, h, 0, 0, 0, time.UTC) }
	want := map[string]time.Time{
		"same-day-discharge/1/0": uk(10, 18), "same-day-discharge/2/0": uk(11, 0), "same-day-discharge/3/0": uk(12, 0),
		"same-day-discharge/4/7": uk(17, 0), "same-day-discharge/4/14": uk(24, 0), "same-day-discharge/4/21": uk(31, 0),
		"reablement/1/0": uk(11, 21), "reablement/2/0": uk(12, 9), "reablement/3/0": uk(14, 9),
		"awaiting-capacity/1/0": uk(10, 12), "awaiting-capacity/2/0": uk(10, 13), "awaiting-capacity/3/0": uk(10, 17),
	}
	raisedBy := map[string]int{}
	for id, recs := range byReferral {
		seen := map[string]bool{}
		for _, r := range recs {
			e := r.Event.(spa.ClockAlerted)
			key := fmt.Sprintf("%s/%d/%d", e.Clock, e.Level, e.DelayDays)
			if seen[key] {
				t.Fatalf("%s: %s raised twice", id, key)
			}
			seen[key] = true
			if at, ok := want[key]; !ok || !r.OccurredAt.Equal(at) {
				t.Fatalf("%s: %s at %s, want %s", id, key, r.OccurredAt, at)
			}
			raisedBy[r.Actor.User]++
		}
	}
	if raisedBy[leader] == 0 || raisedBy[other] == 0 {
		t.Fatalf("alerts raised by %v; both workers should have", raisedBy)
	}
	t.Logf("leader %s killed; alerts raised by worker: %v", leader, raisedBy)
}

// clockWorld is an embedded JetStream, the schedulers' fake clock and the
// application to submit referrals with.
type clockWorld struct {
	t     *testing.T
	srv   *server.Server
	store *jetstream.Store
	app   *app.App
	clock *fakeClock
	setup jetstream.Setup
}

func newClockWorld(t *testing.T, start time.Time) *clockWorld {
	t.Helper()
	srv := jetstreamtest.Start(t)
	setup := jetstream.Setup{LeaseTTL: time.Second}
	store := jetstreamtest.Store(t, jetstreamtest.Connect(t, srv), setup)
	return &clockWorld{t: t, srv: srv, store: store, app: app.New(store, nil), clock: &fakeClock{t: start}, setup: setup}
}

// worker starts a worker whose scheduler passes every 20ms on the fake
// clock; it returns its connection and a stop.
func (w *clockWorld) worker(id string) (*nats.Conn, func()) {
	w.t.Helper()
	nc := jetstreamtest.Connect(w.t, w.srv)
	store := jetstreamtest.Store(w.t, nc, w.setup)
	return nc, runWorker(w.t, nc, store, worker.Config{DataDir: w.t.TempDir(), ID: id,
		Scheduler: scheduler.Config{Interval: 20 * time.Millisecond, Now: w.clock.Now}})
}

// submit submits a referral from Bromley at business time at.
func (w *clockWorld) submit(request string, at time.Time, adjust func(*spa.Details)) string {
	w.t.Helper()
	d := spa.Details{
		Patient:      spa.Patient{NHSNumber: "9434765919", GivenName: "Ann", FamilyName: "Patient", BirthDate: "1940-01-01", Postcode: "BR1 3JH", Borough: "Bromley"},
		Episode:      spa.Episode{SiteODS: "RJZ30", Ward: "Darwin Ward", AdmissionDate: "2020-01-08"},
		AdmittedFrom: spa.AdmittedFromHome, Needs: spa.Needs{Mobility: spa.MobilityWalkingAid, CareCallsPerDay: 2},
		HospitalLead: spa.Contact{Name: "Ada Obi", Phone: "020 8000 1234"}, DischargeReadyDate: spa.LocalDate(at),
	}
	if adjust != nil {
		adjust(&d)
	}
	res, err := w.app.SubmitReferral(context.Background(), app.Meta{OccurredAt: at}, spa.SubmitReferral{RequestID: request, Details: d})
	if err != nil {
		w.t.Fatal(err)
	}
	return res.ReferralID
}

// events returns the referral's events of type T from the log.
func events[T spa.Event](w *clockWorld, id string) []spa.Record {
	w.t.Helper()
	recs, _, err := w.store.Load(context.Background(), spa.AggregateReferral, id)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []spa.Record
	for _, r := range recs {
		if _, ok := r.Event.(T); ok {
			out = append(out, r)
		}
	}
	return out
}

// alertsOf describes the referral's alerts as clock/level@UK time.
func alertsOf(w *clockWorld, id string) []string {
	w.t.Helper()
	var out []string
	for _, r := range events[spa.ClockAlerted](w, id) {
		e := r.Event.(spa.ClockAlerted)
		out = append(out, fmt.Sprintf("%s/%d/%d@%s", e.Clock, e.Level, e.DelayDays, r.OccurredAt.In(time.UTC).Format("02 15:04")))
	}
	return out
}

// TestAlertFallsDueNotBefore: an alert due in the future is raised once
// the scheduler's clock reaches it and not a pass before; raising it
// re-arms the referral at its next clock level; a withdrawn referral's
// clocks raise nothing more.
func TestAlertFallsDueNotBefore(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2024, 1, 10, 9, 0, 0, 0, time.UTC) // GMT = UK time in January
	w := newClockWorld(t, t0)
	w.worker("clocks")
	// Home First with no provider: in the no-capacity queue from 09:00,
	// a warning at 12:00, a breach at 13:00 (the same-day warning is at
	// 18:00).
	id := w.submit("due-0001", t0, nil)
	poll(t, "queued", func() bool { return len(events[spa.AwaitingCapacity](w, id)) == 1 })

	w.clock.SetAndPass(t, t0.Add(3*time.Hour-time.Second))
	if got := alertsOf(w, id); len(got) != 0 {
		t.Fatalf("a pass at 11:59:59 raised %v", got)
	}
	w.clock.Set(t0.Add(3 * time.Hour))
	poll(t, "the warning at 12:00", func() bool { return len(alertsOf(w, id)) == 1 })
	// Re-armed at the breach, not before it.
	w.clock.SetAndPass(t, t0.Add(4*time.Hour-time.Second))
	if got, want := alertsOf(w, id), []string{"awaiting-capacity/1/0@10 12:00"}; !slices.Equal(got, want) {
		t.Fatalf("after a pass at 12:59:59: %v, want %v", got, want)
	}
	w.clock.Set(t0.Add(4 * time.Hour))
	poll(t, "the breach at 13:00", func() bool { return len(alertsOf(w, id)) == 2 })
	w.clock.SetAndPass(t, t0.Add(4*time.Hour))
	if got, want := alertsOf(w, id), []string{"awaiting-capacity/1/0@10 12:00", "awaiting-capacity/2/0@10 13:00"}; !slices.Equal(got, want) {
		t.Fatalf("after another pass at 13:00: %v, want %v", got, want)
	}

	// Withdrawn at 13:01: its clocks stop, nothing more is raised however
	// late (whether or not the read model has the withdrawal by the next
	// pass: the alerts are decided on the log, in event time).
	if _, err := w.app.WithdrawReferral(context.Background(), app.Meta{OccurredAt: t0.Add(4*time.Hour + time.Minute)}, spa.WithdrawReferral{ReferralID: id, Reason: spa.WithdrawalReasonNoLongerNeeded}); err != nil {
		t.Fatal(err)
	}
	w.clock.SetAndPass(t, t0.AddDate(0, 1, 0))
	if got := alertsOf(w, id); len(got) != 2 {
		t.Fatalf("withdrawn, a month on: %v", got)
	}
}

// TestFailoverOutOfHours: an urgent response asked at 21:00 is not due
// until 09:30 the next day in the SPA's hours (the read model's index has
// it from 22:30); the scheduler holding the lease looks and finds nothing
// due, dies, and the worker taking over raises the warning at 09:30 and
// the breach at 10:00, each once, and nothing before.
func TestFailoverOutOfHours(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2024, 1, 10, 21, 0, 0, 0, time.UTC)
	w := newClockWorld(t, t0)
	conns, stops := map[string]*nats.Conn{}, map[string]func(){}
	for _, id := range []string{"worker-a", "worker-b"} {
		conns[id], stops[id] = w.worker(id)
	}
	// Still meets a criterion to reside: no Discharge Ready Date, no
	// decision, the urgent clock alone.
	id := w.submit("urgent-0001", t0, func(d *spa.Details) {
		d.Needs.UrgentCommunityResponse = true
		d.CriteriaMet, d.DischargeReadyDate = []spa.Criterion{spa.CriterionOxygen}, ""
	})
	w.clock.SetAndPass(t, time.Date(2024, 1, 10, 23, 0, 0, 0, time.UTC))
	if got := alertsOf(w, id); len(got) != 0 {
		t.Fatalf("at 23:00: %v", got)
	}

	js, err := natsjs.New(jetstreamtest.Connect(t, w.srv))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), jetstream.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := kv.Get(context.Background(), "lease")
	if err != nil {
		t.Fatal(err)
	}
	leader, other := string(lease.Value()), "worker-a"
	if leader == "worker-a" {
		other = "worker-b"
	}
	conns[leader].Close() // killed: no chance to give the lease back
	stops[leader]()
	poll(t, "the other worker takes over", func() bool {
		e, err := kv.Get(context.Background(), "lease")
		return err == nil && string(e.Value()) == other
	})
	w.clock.SetAndPass(t, time.Date(2024, 1, 11, 9, 29, 0, 0, time.UTC))
	if got := alertsOf(w, id); len(got) != 0 {
		t.Fatalf("at 09:29 after the takeover: %v", got)
	}
	w.clock.Set(time.Date(2024, 1, 11, 10, 0, 0, 0, time.UTC))
	poll(t, "the warning and the breach", func() bool { return len(alertsOf(w, id)) >= 2 })
	w.clock.SetAndPass(t, time.Date(2024, 1, 11, 10, 0, 0, 0, time.UTC))
	if got, want := alertsOf(w, id), []string{"urgent-response/1/0@11 09:30", "urgent-response/2/0@11 10:00"}; !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v", got, want)
	}
	for _, r := range events[spa.ClockAlerted](w, id) {
		if r.Actor.User != other {
			t.Fatalf("raised by %s, want %s", r.Actor.User, other)
		}
	}
}

// TestPolicyTurnOnceInForce: a referral held for a test under the
// infection overlay stays held through a policy that keeps the overlay
// (2022.1), and is released when the policy that ends it comes into
// force on the scheduler's clock (dated that instant), not a pass before,
// and once.
func TestPolicyTurnOnceInForce(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2021, 6, 1, 9, 0, 0, 0, time.UTC)
	w := newClockWorld(t, t0)
	w.worker("policies")
	id := w.submit("overlay-0001", t0, func(d *spa.Details) {
		d.AdmittedFrom, d.Needs = spa.AdmittedFromCareHome, spa.Needs{Mobility: spa.MobilityHoist, CarersPerTransfer: 2}
	})
	poll(t, "held for a test", func() bool { return len(events[spa.ReferralHeld](w, id)) == 1 })
	for _, at := range []time.Time{time.Date(2022, 6, 1, 9, 0, 0, 0, time.UTC), time.Date(2022, 12, 31, 23, 59, 59, 0, time.UTC)} {
		w.clock.SetAndPass(t, at)
		if got := events[spa.HoldReleased](w, id); len(got) != 0 {
			t.Fatalf("released at %s, while the overlay is in force: %v", at, got)
		}
	}
	turn := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	w.clock.Set(turn.Add(time.Hour))
	poll(t, "released", func() bool { return len(events[spa.HoldReleased](w, id)) == 1 })
	w.clock.SetAndPass(t, turn.AddDate(0, 0, 2))
	got := events[spa.HoldReleased](w, id)
	if len(got) != 1 || !got[0].OccurredAt.Equal(turn) || got[0].PolicyVersion != "2023.1" {
		t.Fatalf("releases %+v, want one at %s under 2023.1", got, turn)
	}
}
