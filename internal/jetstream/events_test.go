package jetstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/spa"
)

// TestEvents: a referral's events come back from the log in order, as
// stored, in more than one batch, up to the version asked for, without
// another referral's events between them; a version the log has not
// reached is UNAVAILABLE once the caller's time is nearly up.
func TestEvents(t *testing.T) {
	t.Parallel()
	store, js := newStore(t)
	ctx := context.Background()
	a, b := spa.ReferralIDFor("request-aaaa"), spa.ReferralIDFor("request-bbbb")
	const n = 300 // more than one batch
	var mine []uint64
	var lastA, lastB uint64
	for i := range n {
		if i%40 == 0 {
			rec := record(b, spa.InfectionTestRecorded{Test: spa.InfectionTest{Type: spa.TestTypePCR, Result: spa.TestResultNegative}})
			rec.EventID = fmt.Sprint("b-", i)
			seq, err := store.Append(ctx, rec, lastB)
			if err != nil {
				t.Fatal(err)
			}
			lastB = seq
		}
		var e spa.Event = spa.InfectionTestRecorded{Test: spa.InfectionTest{Type: spa.TestTypeLateralFlow, Result: spa.TestResultNegative}}
		if i == 0 {
			e = spa.ReferralSubmitted{RequestID: "request-aaaa"}
		}
		rec := record(a, e)
		rec.EventID = fmt.Sprint("a-", i)
		seq, err := store.Append(ctx, rec, lastA)
		if err != nil {
			t.Fatal(err)
		}
		lastA = seq
		mine = append(mine, seq)
	}
	stream, err := js.Stream(ctx, jetstream.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for _, upTo := range []uint64{lastA, mine[200], mine[0]} {
		got, err := store.Events(ctx, spa.AggregateReferral, a, upTo)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, e := range got {
			seqs = append(seqs, e.Sequence)
		}
		want := mine[:slices.Index(mine, upTo)+1]
		if !slices.Equal(seqs, want) {
			t.Fatalf("up to %d: sequences %v, want %v", upTo, seqs, want)
		}
		for _, i := range []int{0, len(got) - 1} {
			msg, err := stream.GetMsg(ctx, got[i].Sequence)
			if err != nil {
				t.Fatal(err)
			}
			e := got[i]
			if !bytes.Equal(e.Data, msg.Data) || e.Subject != spa.SubjectOf(spa.AggregateReferral, a) || e.Type != msg.Header.Get(jetstream.HeaderEventType) ||
				len(e.Hash) != 32 || !e.Time.Equal(msg.Time) {
				t.Fatalf("event %d: %+v, stored %+v", e.Sequence, e, msg)
			}
		}
	}
	if got, err := store.Events(ctx, spa.AggregateReferral, spa.ReferralIDFor("request-none"), 0); err != nil || len(got) != 0 {
		t.Fatalf("no events: %v, %v", got, err)
	}
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := store.Events(tctx, spa.AggregateReferral, a, lastA+100); spa.KindOf(err) != spa.KindUnavailable {
		t.Fatalf("a version beyond the log: %v, want KindUnavailable", err)
	}
}

// TestEventsLeaveOutSteppedOver: an undecodable event an operator decided
// to step over is not in a referral's events, as it is not in the read
// models; a store not told so returns it as stored.
func TestEventsLeaveOutSteppedOver(t *testing.T) {
	t.Parallel()
	nc := jetstreamtest.Connect(t, jetstreamtest.Start(t))
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	ctx := context.Background()
	a := spa.ReferralIDFor("request-aaaa")
	first, err := store.Append(ctx, record(a, spa.ReferralSubmitted{RequestID: "request-aaaa"}), 0)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := nc.Request(spa.SubjectOf(spa.AggregateReferral, a), []byte("not an envelope"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var pub struct{ Seq uint64 }
	if err := json.Unmarshal(ack.Data, &pub); err != nil || pub.Seq != first+1 {
		t.Fatalf("publish the bad message: %s, %v", ack.Data, err)
	}
	last, err := store.Append(ctx, record(a, spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonDied}), pub.Seq)
	if err != nil {
		t.Fatal(err)
	}
	skipping, err := jetstream.Open(ctx, nc, jetstream.Requirements{Skip: map[uint64]bool{pub.Seq: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		store *jetstream.Store
		want  []uint64
	}{
		{"told to step over it", skipping, []uint64{first, last}},
		{"not told", store, []uint64{first, pub.Seq, last}},
	} {
		got, err := tt.store.Events(ctx, spa.AggregateReferral, a, last)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, e := range got {
			seqs = append(seqs, e.Sequence)
		}
		if !slices.Equal(seqs, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, seqs, tt.want)
		}
	}
}

// BenchmarkEvents reads a referral's history from the log: one direct
// get batch for a referral of 10 events, two for one of 300.
func BenchmarkEvents(b *testing.B) {
	nc := jetstreamtest.Connect(b, jetstreamtest.Start(b))
	store := jetstreamtest.Store(b, nc, jetstream.Setup{})
	ctx := context.Background()
	for _, n := range []int{10, 300} {
		id := spa.ReferralIDFor(fmt.Sprint("request-bench-", n))
		var last uint64
		for i := range n {
			rec := record(id, spa.InfectionTestRecorded{Test: spa.InfectionTest{Type: spa.TestTypePCR, Result: spa.TestResultNegative}})
			rec.EventID = fmt.Sprint(id, "-", i)
			seq, err := store.Append(ctx, rec, last)
			if err != nil {
				b.Fatal(err)
			}
			last = seq
		}
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			for b.Loop() {
				got, err := store.Events(ctx, spa.AggregateReferral, id, last)
				if err != nil || len(got) != n {
					b.Fatalf("%d events, %v", len(got), err)
				}
			}
		})
	}
}
