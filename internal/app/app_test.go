package app_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"spa/internal/app"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/spa"
)

// memStore is an in-memory event log whose appends can be made to lose a
// number of races first.
type memStore struct {
	mu       sync.Mutex
	recs     map[string][]spa.Record
	seq      uint64
	conflict int // appends still to refuse
	appends  int
}

func (m *memStore) Load(_ context.Context, agg spa.Aggregate, id string) ([]spa.Record, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs := append([]spa.Record(nil), m.recs[string(agg)+"."+id]...)
	if len(recs) == 0 {
		return nil, 0, nil
	}
	return recs, recs[len(recs)-1].Sequence, nil
}

func (m *memStore) AppendBatch(_ context.Context, batch []spa.Append) ([]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.appends++
	if m.conflict > 0 {
		m.conflict--
		return nil, spa.ErrConcurrentChange
	}
	key := func(rec spa.Record) string { return string(spa.AggregateOf(rec.Event)) + "." + rec.AggregateID }
	seen := map[string]bool{}
	for _, b := range batch {
		recs := m.recs[key(b.Record)]
		var last uint64
		if len(recs) > 0 {
			last = recs[len(recs)-1].Sequence
		}
		follows := seen[key(b.Record)]
		seen[key(b.Record)] = true
		if b.Guard && !follows && last != b.Expected {
			return nil, spa.ErrConcurrentChange
		}
	}
	var seqs []uint64
	for _, b := range batch {
		m.seq++
		b.Record.Sequence = m.seq
		m.recs[key(b.Record)] = append(m.recs[key(b.Record)], b.Record)
		seqs = append(seqs, m.seq)
	}
	return seqs, nil
}

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func submit() spa.SubmitReferral {
	return spa.SubmitReferral{RequestID: "app-test-request-1", Details: spa.Details{
		Patient:      spa.Patient{NHSNumber: "4010232137", GivenName: "Arthur", FamilyName: "Jenkins", BirthDate: "1947-01-02", Postcode: "BR6 8ND", Borough: "Bromley"},
		Episode:      spa.Episode{SiteODS: "RJZ30", Ward: "Orthopaedic Ward 2", AdmissionDate: "2026-11-13"},
		AdmittedFrom: spa.AdmittedFromHome,
		Needs:        spa.Needs{Mobility: spa.MobilityAssisted},
		HospitalLead: spa.Contact{Name: "Ada Obi", Phone: "020 8000 1234"},
	}}
}

func TestLostRacesAreRetriedThenAborted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		conflicts int
		wantKind  spa.Kind
	}{
		{"no race", 0, 0},
		{"lost twice, then applied on the new state", 2, 0},
		{"lost every attempt", 5, spa.KindAborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store := &memStore{recs: map[string][]spa.Record{}}
			a := app.New(store, nil, app.WithClock(func() time.Time { return now }), app.WithMaxAttempts(5))
			ctx := context.Background()
			sub, err := a.SubmitReferral(ctx, app.Meta{}, submit())
			if err != nil {
				t.Fatal(err)
			}
			store.conflict, store.appends = tt.conflicts, 0
			_, err = a.WithdrawReferral(ctx, app.Meta{Actor: spa.Actor{ODS: "RJZ30"}}, spa.WithdrawReferral{ReferralID: sub.ReferralID, Reason: spa.WithdrawalReasonDied})
			if spa.KindOf(err) != tt.wantKind || (tt.wantKind == 0) != (err == nil) {
				t.Fatalf("err = %v, want kind %d", err, tt.wantKind)
			}
			if want := min(tt.conflicts+1, 5); store.appends != want {
				t.Errorf("%d append attempts, want %d", store.appends, want)
			}
			recs, _, _ := store.Load(ctx, spa.AggregateReferral, sub.ReferralID)
			wantEvents := 2
			if tt.wantKind == spa.KindAborted {
				wantEvents = 1
			}
			if len(recs) != wantEvents {
				t.Fatalf("%d events stored, want %d", len(recs), wantEvents)
			}
		})
	}
}

// stores lists every event store the application runs on; the contract
// tests run against each.
func stores(t *testing.T) map[string]app.Store {
	t.Helper()
	nc := jetstreamtest.Connect(t, jetstreamtest.Start(t))
	// A short dedupe window: business idempotency must not depend on it.
	js := jetstreamtest.Store(t, nc, jetstream.Setup{DuplicateWindow: 100 * time.Millisecond})
	return map[string]app.Store{"memory": &memStore{recs: map[string][]spa.Record{}}, "jetstream": js}
}

func TestSubmitRetryAppendsNothing(t *testing.T) {
	t.Parallel()
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := app.New(store, nil, app.WithClock(func() time.Time { return now }))
			ctx := context.Background()
			first, err := a.SubmitReferral(ctx, app.Meta{CorrelationID: "c1"}, submit())
			if err != nil {
				t.Fatal(err)
			}
			// Retry once JetStream's dedupe window has passed.
			time.Sleep(200 * time.Millisecond)
			c := submit()
			c.Details.Patient.NHSNumber = "401 023 2137" // the same number, written for people
			again, err := a.SubmitReferral(ctx, app.Meta{}, c)
			if err != nil {
				t.Fatal(err)
			}
			if again != (app.Submitted{ReferralID: first.ReferralID, Sequence: first.Sequence, Replayed: true}) {
				t.Fatalf("retry = %+v, first %+v", again, first)
			}
			c.Details.Episode.Ward = "Darwin Ward"
			if _, err := a.SubmitReferral(ctx, app.Meta{}, c); spa.KindOf(err) != spa.KindAlreadyExists {
				t.Fatalf("other details: %v", err)
			}
			recs, last, err := store.Load(ctx, spa.AggregateReferral, first.ReferralID)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || last != first.Sequence || recs[0].CausationID != "app-test-request-1" || recs[0].CorrelationID != "c1" || !recs[0].OccurredAt.Equal(now) {
				t.Fatalf("stored %+v", recs)
			}
		})
	}
}

// last returns the sequence of the last event appended.
func (m *memStore) last() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq
}
