package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

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

// fakeClock is the schedulers' shared "now", moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

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
