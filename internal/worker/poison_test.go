package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"spa/internal/app"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/projection"
	"spa/internal/query"
	"spa/internal/scheduler"
	"spa/internal/spa"
	"spa/internal/worker"
)

// TestUndecodableEventHaltsTheProjection: a message on an event subject
// that is not an envelope halts the worker's projection at its sequence:
// the worker says so and stops answering queries, but neither it nor the
// log stops; restarted, it halts at the same sequence again (no skip, no
// crash); told by the operator to step over it, it applies what follows,
// serves again and rebuilds to the same digest.
func TestUndecodableEventHaltsTheProjection(t *testing.T) {
	t.Parallel()
	srv := jetstreamtest.Start(t)
	nc := jetstreamtest.Connect(t, srv)
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	ctx := context.Background()
	for i := range 3 {
		appendNotReady(t, store, fmt.Sprintf("poison-%02d", i))
	}
	ack, err := nc.Request("spa.referral.ref-aaaaaaaaaaaaaaaa", []byte("not an envelope"), 10*time.Second)
	if err != nil || !strings.Contains(string(ack.Data), `"seq":4`) {
		t.Fatalf("publish the bad message: %v %s", err, ack.Data)
	}
	appendNotReady(t, store, "poison-03")

	reads := query.NewClient(jetstreamtest.Connect(t, srv))
	dir := t.TempDir()
	run := func(skip projection.Skips) func() {
		return runWorker(t, nc, store, worker.Config{DataDir: dir, ID: "poisoned", Skip: skip, Scheduler: scheduler.Config{Disabled: true}})
	}
	halted := func() query.WorkerStatus {
		t.Helper()
		var st query.WorkerStatus
		poll(t, "the projection halts at sequence 4", func() bool {
			var err error
			st, err = reads.WorkerStatus(ctx, "poisoned")
			return err == nil && st.Halt != nil
		})
		if st.Halt.Sequence != 4 || st.Applied != 3 || st.Serving || st.Halt.Subject != "spa.referral.ref-aaaaaaaaaaaaaaaa" || st.Halt.Reason == "" {
			t.Fatalf("status %+v, halt %+v", st, st.Halt)
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := reads.ListReferrals(qctx, &spav1.ListReferralsRequest{}); spa.KindOf(err) != spa.KindUnavailable {
			t.Fatalf("a halted model answered a query: %v", err)
		}
		return st
	}

	stop := run(nil)
	st := halted()
	t.Logf("halted: %+v", *st.Halt)
	stop()
	// Restarted as it was, it halts there again: it neither skips nor
	// stops the process.
	stop = run(nil)
	halted()
	stop()

	stop = run(projection.Skips{4: true})
	defer stop()
	poll(t, "serving past the skipped event", func() bool {
		st, err := reads.WorkerStatus(ctx, "poisoned")
		return err == nil && st.Serving && st.Applied == 5 && st.Halt == nil
	})
	page, err := reads.ListReferrals(ctx, &spav1.ListReferralsRequest{MinSequence: 5})
	if err != nil || len(page.GetReferrals()) != 4 {
		t.Fatalf("board after the skip: %v, %v", page, err)
	}
	if _, err := reads.Rebuild(ctx, "poisoned", false); err != nil {
		t.Fatal(err)
	}
	poll(t, "rebuilt", func() bool {
		st, err := reads.WorkerStatus(ctx, "poisoned")
		return err == nil && st.Rebuild != nil && st.Rebuild.State != query.RebuildRunning
	})
	st, _ = reads.WorkerStatus(ctx, "poisoned")
	if st.Rebuild.State != query.RebuildSwapped || st.Rebuild.Live != st.Rebuild.Rebuilt {
		t.Fatalf("rebuild past the skipped event: %+v", st.Rebuild)
	}
}

// TestUndecodableProviderEventSteppedOver: the operator's remedy works for
// a provider's subject too. Told to step over an undecodable event on
// it, the worker moves the provider's version on to it, commands on the
// provider leave it out, and the router still offers the provider work.
func TestUndecodableProviderEventSteppedOver(t *testing.T) {
	t.Parallel()
	srv := jetstreamtest.Start(t)
	nc := jetstreamtest.Connect(t, srv)
	jetstreamtest.Store(t, nc, jetstream.Setup{})
	ctx := context.Background()
	now := time.Now().UTC()
	a := app.New(jetstreamtest.Store(t, nc, jetstream.Setup{}), nil)
	if _, _, err := a.RegisterProvider(ctx, app.Meta{}, spa.RegisterProvider{Details: spa.ProviderDetails{ODS: "NQR10", Name: "Reablement",
		Boroughs: []string{"Bromley"}, Services: []spa.Service{spa.ServiceHomeCareReablement}}}); err != nil {
		t.Fatal(err)
	}
	capacity := func(a *app.App, units int32) error {
		_, _, err := a.UpdateCapacity(ctx, app.Meta{}, spa.UpdateCapacity{ProviderODS: "NQR10",
			Capacity: []spa.Capacity{{Service: spa.ServiceHomeCareReablement, Available: units, Open: true, AsOf: time.Now().UTC().Add(-time.Minute)}}})
		return err
	}
	if err := capacity(a, 3); err != nil {
		t.Fatal(err)
	}
	// The bad message is the provider's last: a reservation is guarded by it.
	ack, err := nc.Request("spa.provider.NQR10", []byte("not an envelope"), 10*time.Second)
	if err != nil || !strings.Contains(string(ack.Data), `"seq":3`) {
		t.Fatalf("publish the bad message: %v %s", err, ack.Data)
	}
	skip := projection.Skips{3: true}
	store, err := jetstream.Open(ctx, nc, jetstream.Requirements{Skip: skip})
	if err != nil {
		t.Fatal(err)
	}
	a = app.New(store, nil)
	runWorker(t, nc, store, worker.Config{DataDir: t.TempDir(), ID: "provider-poison", Skip: skip, Scheduler: scheduler.Config{Disabled: true}})
	res, err := a.SubmitReferral(ctx, app.Meta{}, spa.SubmitReferral{RequestID: "provider-poison-1", Details: spa.Details{
		Patient:      spa.Patient{NHSNumber: "9434765919", GivenName: "Ann", FamilyName: "Patient", BirthDate: "1940-01-01", Postcode: "BR1 3JH", Borough: "Bromley"},
		Episode:      spa.Episode{SiteODS: "RJZ30", Ward: "Darwin Ward", AdmissionDate: spa.LocalDate(now.AddDate(0, 0, -3))},
		AdmittedFrom: spa.AdmittedFromHome, Needs: spa.Needs{Mobility: spa.MobilityWalkingAid, CareCallsPerDay: 2},
		HospitalLead: spa.Contact{Name: "Ada Obi", Phone: "020 8000 1234"}, DischargeReadyDate: spa.LocalDate(now),
	}})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "the referral offered to the provider", func() bool {
		recs, _, err := store.Load(ctx, spa.AggregateReferral, res.ReferralID)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if o, ok := r.Event.(spa.OfferMade); ok && o.ProviderODS == "NQR10" {
				return true
			}
		}
		return false
	})
	if err := capacity(a, 4); err != nil {
		t.Fatalf("a command on the provider after the stepped-over event: %v", err)
	}
}

// TestSteppedOverLastEventKeepsTheModel: a worker whose last applied event
// was stepped over, restarted, finds its model bound to the same log (the
// hash it kept is the stored event's) and does not build it again.
func TestSteppedOverLastEventKeepsTheModel(t *testing.T) {
	t.Parallel()
	srv := jetstreamtest.Start(t)
	nc := jetstreamtest.Connect(t, srv)
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	ctx := context.Background()
	for i := range 2 {
		appendNotReady(t, store, fmt.Sprintf("last-%02d", i))
	}
	ack, err := nc.Request("spa.referral.ref-aaaaaaaaaaaaaaaa", []byte("not an envelope"), 10*time.Second)
	if err != nil || !strings.Contains(string(ack.Data), `"seq":3`) {
		t.Fatalf("publish the bad message: %v %s", err, ack.Data)
	}
	reads := query.NewClient(jetstreamtest.Connect(t, srv))
	dir := t.TempDir()
	skip := projection.Skips{3: true}
	for run := range 2 {
		var logged lockedBuffer
		stop := runWorker(t, nc, store, worker.Config{DataDir: dir, ID: "stepped", Skip: skip, Scheduler: scheduler.Config{Disabled: true},
			Log: slog.New(slog.NewTextHandler(&logged, nil))})
		poll(t, "serving past the skipped event", func() bool {
			st, err := reads.WorkerStatus(ctx, "stepped")
			return err == nil && st.Serving && st.Applied == 3
		})
		stop()
		if run == 1 && strings.Contains(logged.String(), "building it again") {
			t.Fatalf("restarted, the worker built its model again:\n%s", logged.String())
		}
		if !strings.Contains(logged.String(), "read model opened") {
			t.Fatalf("run %d logged no opening:\n%s", run, logged.String())
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// appendNotReady appends a submission of a referral that is not ready to
// leave (a criterion to reside met), so that no router acts on it.
func appendNotReady(t *testing.T, store *jetstream.Store, requestID string) {
	t.Helper()
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	id := spa.ReferralIDFor(requestID)
	if _, err := store.Append(context.Background(), spa.Record{EventID: id + "-0", AggregateID: id, OccurredAt: at, RecordedAt: at,
		Event: spa.ReferralSubmitted{RequestID: requestID, Details: spa.Details{CriteriaMet: []spa.Criterion{spa.CriterionOxygen},
			Episode: spa.Episode{SiteODS: "RJZ30"}, Patient: spa.Patient{Borough: "Bromley"}}}}, 0); err != nil {
		t.Fatal(err)
	}
}
