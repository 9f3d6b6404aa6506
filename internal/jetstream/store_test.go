package jetstream_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"spa/internal/audit"
	"spa/internal/await"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/spa"
)

func newStore(t *testing.T) (*jetstream.Store, natsjs.JetStream) {
	t.Helper()
	nc := jetstreamtest.Connect(t, jetstreamtest.Start(t))
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return store, js
}

func record(id string, e spa.Event) spa.Record {
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	return spa.Record{EventID: "evt-" + id + "-" + spa.EventName(e), AggregateID: id, OccurredAt: at, RecordedAt: at,
		Actor: spa.Actor{ODS: "RH802", Role: "discharge-coordinator", User: "u1"}, CausationID: "c1", CorrelationID: "k1", Event: e}
}

func TestAppendLoad(t *testing.T) {
	t.Parallel()
	store, js := newStore(t)
	ctx := context.Background()
	a, b := spa.ReferralIDFor("request-aaaa"), spa.ReferralIDFor("request-bbbb")

	recs, last, err := store.Load(ctx, spa.AggregateReferral, a)
	if err != nil || len(recs) != 0 || last != 0 {
		t.Fatalf("empty load = %v, %d, %v", recs, last, err)
	}
	want := []spa.Record{
		record(a, spa.ReferralSubmitted{RequestID: "request-aaaa", DischargeReadyDate: "2026-11-21"}),
		record(a, spa.CriteriaToResideRecorded{CriteriaMet: []spa.Criterion{spa.CriterionOxygen}, AssessedOn: "2026-11-22"}),
	}
	var expected uint64
	for i := range want {
		// Interleave another referral's events to leave gaps in a's sequences.
		if _, err := store.Append(ctx, record(b, spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonDied, Note: string(rune('a' + i))}), uint64(0)); i == 0 && err != nil {
			t.Fatal(err)
		}
		seq, err := store.Append(ctx, want[i], expected)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		want[i].Sequence, expected = seq, seq
	}
	got, last, err := store.Load(ctx, spa.AggregateReferral, a)
	if err != nil {
		t.Fatal(err)
	}
	if last != expected {
		t.Errorf("last = %d, want %d", last, expected)
	}
	// The second event links to the first's stored bytes.
	stream, err := js.Stream(ctx, jetstream.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.GetMsg(ctx, want[0].Sequence)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(first.Data)
	want[1].PrevHash = h[:]
	if hex.EncodeToString(h[:]) != first.Header.Get(jetstream.HeaderHash) {
		t.Errorf("Spa-Hash header %q, want %x", first.Header.Get(jetstream.HeaderHash), h)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("load (-want +got):\n%s", diff)
	}
}

func TestAppendConflict(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := context.Background()
	id := spa.ReferralIDFor("request-conflict")
	first, err := store.Append(ctx, record(id, spa.ReferralSubmitted{RequestID: "request-conflict"}), 0)
	if err != nil {
		t.Fatal(err)
	}
	// A second "first" event loses: the subject is no longer empty.
	rec := record(id, spa.ReferralSubmitted{RequestID: "request-conflict"})
	rec.EventID = "another-event"
	if _, err := store.Append(ctx, rec, 0); !errors.Is(err, spa.ErrConcurrentChange) {
		t.Fatalf("append on stale state: err = %v, want ErrConcurrentChange", err)
	}
	// Of many writers racing from the same state exactly one wins.
	var wg sync.WaitGroup
	results := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := record(id, spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonDied})
			r.EventID = "racer-" + string(rune('a'+i))
			_, err := store.Append(ctx, r, first)
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, spa.ErrConcurrentChange):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers won, want 1", won)
	}
}

func TestAppendDeduplicatesTransportRetry(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := context.Background()
	id := spa.ReferralIDFor("request-dedupe")
	rec := record(id, spa.ReferralSubmitted{RequestID: "request-dedupe"})
	first, err := store.Append(ctx, rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	again, err := store.Append(ctx, rec, 0)
	if err != nil || again != first {
		t.Fatalf("retry with the same event id = %d, %v; want %d, nil", again, err, first)
	}
	if n, _ := store.LastSequence(ctx); n != first {
		t.Fatalf("stream holds %d events, want %d", n, first)
	}
}

func TestStreamDeniesDeleteAndPurge(t *testing.T) {
	t.Parallel()
	store, js := newStore(t)
	ctx := context.Background()
	id := spa.ReferralIDFor("request-durable")
	seq, err := store.Append(ctx, record(id, spa.ReferralSubmitted{RequestID: "request-durable"}), 0)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, jetstream.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.Storage != natsjs.FileStorage || cfg.MaxAge != 0 || cfg.MaxMsgs != -1 {
		t.Fatalf("stream config %+v", cfg)
	}
	if err := stream.DeleteMsg(ctx, seq); err == nil {
		t.Error("deleting an event succeeded")
	}
	if err := stream.Purge(ctx); err == nil {
		t.Error("purging the stream succeeded")
	}
	if n, _ := store.LastSequence(ctx); n != seq {
		t.Fatalf("last sequence %d, want %d", n, seq)
	}
	if recs, _, err := store.Load(ctx, spa.AggregateReferral, id); err != nil || len(recs) != 1 {
		t.Fatalf("after delete and purge attempts: %d events, %v", len(recs), err)
	}
}

func TestAppendBatchIsAtomic(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := context.Background()
	ref := spa.ReferralIDFor("request-batch")
	provider := "VLAXL"
	reg := record(provider, spa.ProviderRegistered{Details: spa.ProviderDetails{ODS: provider, Name: "Elmwood", Boroughs: []string{"Bromley"}, Services: []spa.Service{spa.ServiceCareHomeBed}}})
	pseq, err := store.Append(ctx, reg, 0)
	if err != nil {
		t.Fatal(err)
	}
	rseq, err := store.Append(ctx, record(ref, spa.ReferralSubmitted{RequestID: "request-batch"}), 0)
	if err != nil {
		t.Fatal(err)
	}
	offer := func(n int) []spa.Append {
		id := spa.AssignmentIDFor(ref, n)
		o := record(ref, spa.OfferMade{AssignmentID: id, ProviderODS: provider, Service: spa.ServiceCareHomeBed})
		r := record(provider, spa.CapacityReserved{Service: spa.ServiceCareHomeBed, ReferralID: ref, AssignmentID: id})
		o.EventID, r.EventID = id+"-offer", id+"-reserve"
		return []spa.Append{{Record: o, Expected: rseq, Guard: true}, {Record: r, Expected: pseq, Guard: true}}
	}
	seqs, err := store.AppendBatch(ctx, offer(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 2 || seqs[1] != seqs[0]+1 || seqs[0] <= rseq {
		t.Fatalf("sequences %v", seqs)
	}
	// The same decision on the old state: refused as a whole.
	if _, err := store.AppendBatch(ctx, offer(2)); !errors.Is(err, spa.ErrConcurrentChange) {
		t.Fatalf("stale batch: %v", err)
	}
	last, _ := store.LastSequence(ctx)
	if last != seqs[1] {
		t.Fatalf("stream last %d after a refused batch, want %d", last, seqs[1])
	}
	recs, _, err := store.Load(ctx, spa.AggregateProvider, provider)
	if err != nil || len(recs) != 2 {
		t.Fatalf("provider events %v, %v", recs, err)
	}
	// An unguarded event joins a guarded one.
	rel := record(provider, spa.CapacityReleased{Service: spa.ServiceCareHomeBed, ReferralID: ref, AssignmentID: spa.AssignmentIDFor(ref, 1), Reason: "declined"})
	dec := record(ref, spa.AssignmentStatusChanged{AssignmentID: spa.AssignmentIDFor(ref, 1), Status: spa.TaskRejected, Reason: "no carers"})
	if _, err := store.AppendBatch(ctx, []spa.Append{{Record: dec, Expected: seqs[0], Guard: true}, {Record: rel}}); err != nil {
		t.Fatal(err)
	}
}

// TestBatchOfStepsOnOneSubject appends several events of one referral
// and its provider's reservation in one batch: the referral's later
// events follow the first in its chain, the batch's guard covers them, and
// the same batch decided on the old state again is refused whole.
func TestBatchOfStepsOnOneSubject(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := context.Background()
	ref := spa.ReferralIDFor("request-steps")
	provider := "VLAXM"
	pseq, err := store.Append(ctx, record(provider, spa.ProviderRegistered{Details: spa.ProviderDetails{ODS: provider, Name: "Elmwood", Boroughs: []string{"Bromley"}, Services: []spa.Service{spa.ServiceCareHomeBed}}}), 0)
	if err != nil {
		t.Fatal(err)
	}
	rseq, err := store.Append(ctx, record(ref, spa.ReferralSubmitted{RequestID: "request-steps"}), 0)
	if err != nil {
		t.Fatal(err)
	}
	steps := func(tag string) []spa.Append {
		id := spa.AssignmentIDFor(ref, 1)
		d := record(ref, spa.PathwayDecided{Pathway: spa.PathwayP3CareHome, Rule: "test"})
		o := record(ref, spa.OfferMade{AssignmentID: id, ProviderODS: provider, Service: spa.ServiceCareHomeBed})
		r := record(provider, spa.CapacityReserved{Service: spa.ServiceCareHomeBed, ReferralID: ref, AssignmentID: id})
		d.EventID, o.EventID, r.EventID = tag+"-decide", tag+"-offer", tag+"-reserve"
		// The offer's own guard is stale on purpose: the decision's covers it.
		return []spa.Append{{Record: d, Expected: rseq, Guard: true}, {Record: o, Expected: rseq, Guard: true}, {Record: r, Expected: pseq, Guard: true}}
	}
	seqs, err := store.AppendBatch(ctx, steps("a"))
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 3 || seqs[2] != seqs[0]+2 {
		t.Fatalf("sequences %v", seqs)
	}
	recs, last, err := store.Load(ctx, spa.AggregateReferral, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || last != seqs[1] {
		t.Fatalf("referral: %d events, last %d; want 3, last %d", len(recs), last, seqs[1])
	}
	if _, ok := recs[2].Event.(spa.OfferMade); !ok {
		t.Fatalf("third event %T, want the offer", recs[2].Event)
	}
	var chains audit.Chains
	err = store.Replay(ctx, spa.EventFilter{}, func(e spa.StoredEvent) error {
		if b := chains.Check(e); b != nil {
			return b
		}
		return nil
	})
	if err != nil {
		t.Fatalf("chains: %v", err)
	}
	if _, err := store.AppendBatch(ctx, steps("b")); !errors.Is(err, spa.ErrConcurrentChange) {
		t.Fatalf("the same steps on the old state: %v, want a lost race", err)
	}
	if l, _ := store.LastSequence(ctx); l != seqs[2] {
		t.Fatalf("stream last %d after a refused batch, want %d", l, seqs[2])
	}
}

// TestMirrorKeepsTheChain mirrors the event stream, as an off-site copy
// does, and checks that the copy's hash chains verify.
func TestMirrorKeepsTheChain(t *testing.T) {
	t.Parallel()
	store, js := newStore(t)
	ctx := context.Background()
	var last uint64
	id := spa.ReferralIDFor("request-mirror")
	for i := range 5 {
		rec := record(id, spa.InfectionTestRecorded{Test: spa.InfectionTest{Type: spa.TestTypePCR, TakenAt: time.Unix(int64(1700000000+i), 0).UTC(), Result: spa.TestResultNegative}})
		rec.EventID = fmt.Sprint("mirror-", i)
		seq, err := store.Append(ctx, rec, last)
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	mirror, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "SPA_EVENTS_ARCHIVE", Storage: natsjs.FileStorage, DenyDelete: true, DenyPurge: true,
		Mirror: &natsjs.StreamSource{Name: jetstream.StreamName}})
	if err != nil {
		t.Fatal(err)
	}
	await.True(t, 30*time.Second, "mirror caught up", func() bool {
		info, err := mirror.Info(ctx)
		return err == nil && info.State.LastSeq == last
	})
	var chains audit.Chains
	for seq := uint64(1); seq <= last; seq++ {
		m, err := mirror.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		hash, _ := hex.DecodeString(m.Header.Get(jetstream.HeaderHash))
		if b := chains.Check(spa.StoredEvent{Sequence: m.Sequence, Subject: m.Subject, Data: m.Data, Hash: hash}); b != nil {
			t.Fatalf("mirror: %v", b)
		}
	}
	if n, _ := chains.Counts(); n != int(last) {
		t.Fatalf("checked %d events, want %d", n, last)
	}
}

// BenchmarkReplay measures reading the log back: 10,000 events replayed
// through an ordered consumer, with their hashes.
func BenchmarkReplay(b *testing.B) {
	nc := jetstreamtest.Connect(b, jetstreamtest.Start(b))
	ctx := context.Background()
	store := jetstreamtest.Store(b, nc, jetstream.Setup{})
	const n = 10000
	last := map[string]uint64{}
	for i := range n {
		id := spa.ReferralIDFor(fmt.Sprint("bench-replay-", i%500))
		rec := record(id, spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonDied, Note: fmt.Sprint(i)})
		rec.EventID = fmt.Sprint("bench-", i)
		seq, err := store.Append(ctx, rec, last[id])
		if err != nil {
			b.Fatal(err)
		}
		last[id] = seq
	}
	b.ResetTimer()
	for range b.N {
		var chains audit.Chains
		err := store.Replay(ctx, spa.EventFilter{}, func(e spa.StoredEvent) error {
			if br := chains.Check(e); br != nil {
				return br
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if got, _ := chains.Counts(); got != n {
			b.Fatalf("replayed %d events, want %d", got, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
