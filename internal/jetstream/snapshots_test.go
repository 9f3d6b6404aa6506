package jetstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"spa/internal/jetstream"
	"spa/internal/spa"
)

// providerEvents appends n events on provider ods's subject: its
// registration, then in turn a count (with a request id, "count-<i>",
// whose dots test the index's keys), reservations, a taking up and
// releases. It returns them as appended.
func providerEvents(t *testing.T, store *jetstream.Store, ods string, n int) []spa.Record {
	t.Helper()
	ctx := context.Background()
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	var recs []spa.Record
	var last uint64
	for i := range n {
		at := start.Add(time.Duration(i) * time.Minute)
		as := fmt.Sprintf("%s-a%d", ods, i/10)
		var e spa.Event
		var req spa.Request
		switch i % 10 {
		case 0:
			if i == 0 {
				e = spa.ProviderRegistered{Details: spa.ProviderDetails{ODS: ods, Name: "Elmwood", Boroughs: []string{"Bromley"}, Services: []spa.Service{spa.ServiceCareHomeBed}}}
				break
			}
			e = spa.CapacityUpdated{Capacity: []spa.Capacity{{Service: spa.ServiceCareHomeBed, Available: int32(2 + i%7), Open: true, AsOf: at}}}
			req = spa.Request{ID: fmt.Sprintf("count.%d.%s", i, ods), Hash: []byte{byte(i)}}
		case 1, 3, 5, 6:
			e = spa.CapacityReserved{Service: spa.ServiceCareHomeBed, AssignmentID: fmt.Sprintf("%s-%d", as, i%10), Tracked: true}
		case 2, 8:
			e = spa.CapacityOccupied{Service: spa.ServiceCareHomeBed, AssignmentID: fmt.Sprintf("%s-%d", as, i%10-1-i%10/8)}
		case 4, 7:
			e = spa.CapacityReleased{Service: spa.ServiceCareHomeBed, AssignmentID: fmt.Sprintf("%s-%d", as, i%10-1-i%10/7)}
		case 9:
			e = spa.CapacityReleased{Service: spa.ServiceCareHomeBed, AssignmentID: as + "-6"}
		}
		rec := spa.Record{EventID: fmt.Sprintf("evt-%s-%d", ods, i), AggregateID: ods, OccurredAt: at, RecordedAt: at, Request: req, Event: e}
		seq, err := store.Append(ctx, rec, last)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		rec.Sequence, last = seq, seq
		recs = append(recs, rec)
	}
	return recs
}

// fold is the provider's state as h has it: its snapshot's, with the
// records after it applied.
func fold(t *testing.T, h spa.History) spa.Provider {
	t.Helper()
	var p spa.Provider
	if h.Snapshot != nil {
		if err := json.Unmarshal(h.Snapshot.State, &p); err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range h.Records {
		p.Apply(rec)
	}
	return p
}

// replayed is the provider's state folded from every one of its events.
func replayed(t *testing.T, store *jetstream.Store, ods string) spa.Provider {
	t.Helper()
	recs, _, err := store.Load(context.Background(), spa.AggregateProvider, ods)
	if err != nil {
		t.Fatal(err)
	}
	return fold(t, spa.History{Records: recs})
}

func decodesAsProvider(state []byte) error { return json.Unmarshal(state, new(spa.Provider)) }

// snapshotAt is the snapshot of the provider after the first n of recs.
func snapshotAt(t *testing.T, store *jetstream.Store, recs []spa.Record, n int) (spa.Snapshot, []spa.RequestAt) {
	t.Helper()
	h, err := store.History(context.Background(), spa.AggregateProvider, recs[0].AggregateID, "test-rules", "", decodesAsProvider)
	if err != nil {
		t.Fatal(err)
	}
	if h.Snapshot != nil || len(h.Records) < n {
		t.Fatalf("history without snapshots: %d records, snapshot %v", len(h.Records), h.Snapshot)
	}
	h.Records, h.Hashes = h.Records[:n], h.Hashes[:n]
	state, err := json.Marshal(fold(t, h))
	if err != nil {
		t.Fatal(err)
	}
	var reqs []spa.RequestAt
	for _, rec := range h.Records {
		if rec.Request.ID != "" {
			reqs = append(reqs, spa.RequestAt{ID: rec.Request.ID, Sequence: rec.Sequence})
		}
	}
	return spa.Snapshot{Sequence: h.Records[n-1].Sequence, Hash: h.Hashes[n-1], State: state}, reqs
}

// TestHistoryFromSnapshot: a provider's history is its snapshot and the
// events after it, folding to the state every event folds to; the
// request index answers for the ids before the snapshot.
func TestHistoryFromSnapshot(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := context.Background()
	recs := providerEvents(t, store, "VLAXL", 300)
	providerEvents(t, store, "NQR01", 20) // another provider's, in between

	h, err := store.History(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, "", decodesAsProvider)
	if err != nil {
		t.Fatal(err)
	}
	if h.Snapshot != nil || len(h.Records) != 300 || len(h.Hashes) != 300 || h.Last != recs[299].Sequence || h.Revision != 0 {
		t.Fatalf("before any snapshot: snapshot %v, %d records, %d hashes, last %d (want %d), revision %d",
			h.Snapshot, len(h.Records), len(h.Hashes), h.Last, recs[299].Sequence, h.Revision)
	}
	if diff := cmp.Diff(recs, h.Records, cmpopts.IgnoreFields(spa.Record{}, "PrevHash")); diff != "" {
		t.Fatalf("records (-appended +read):\n%s", diff)
	}
	for i := 1; i < len(h.Records); i++ {
		if !bytes.Equal(h.Records[i].PrevHash, h.Hashes[i-1]) {
			t.Fatalf("event %d links to %x; the hash read of the one before is %x", i, h.Records[i].PrevHash, h.Hashes[i-1])
		}
	}

	snap, reqs := snapshotAt(t, store, recs, 250)
	store.SaveSnapshot(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, 0, snap, reqs)
	for _, tt := range []struct {
		name, request string
		want          uint64
	}{
		{"no request id", "", 0},
		{"an id before the snapshot", recs[100].Request.ID, recs[100].Sequence},
		{"an id after it (not indexed yet)", recs[280].Request.ID, 0},
		{"an id never used", "count.never.used", 0},
		{"another provider's id", "count.10.NQR01", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := store.History(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, tt.request, decodesAsProvider)
			if err != nil {
				t.Fatal(err)
			}
			if h.Snapshot == nil || h.Snapshot.Sequence != recs[249].Sequence || len(h.Records) != 50 || h.Last != recs[299].Sequence || h.Revision == 0 {
				t.Fatalf("snapshot %v, %d records, last %d, revision %d", h.Snapshot, len(h.Records), h.Last, h.Revision)
			}
			if h.Requested != tt.want {
				t.Errorf("requested = %d, want %d", h.Requested, tt.want)
			}
			if diff := cmp.Diff(replayed(t, store, "VLAXL"), fold(t, h)); diff != "" {
				t.Errorf("state (-replayed +from the snapshot):\n%s", diff)
			}
		})
	}

	// A snapshot at the last event: no records after it.
	last, _ := snapshotAt(t, store, recs, 300)
	h, _ = store.History(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, "", decodesAsProvider)
	store.SaveSnapshot(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, h.Revision, last, nil)
	h, err = store.History(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, "", decodesAsProvider)
	if err != nil {
		t.Fatal(err)
	}
	if h.Snapshot == nil || h.Snapshot.Sequence != recs[299].Sequence || len(h.Records) != 0 || h.Last != recs[299].Sequence {
		t.Fatalf("snapshot at the end: %v, %d records, last %d", h.Snapshot, len(h.Records), h.Last)
	}
}

// TestSnapshotNotMatchingTheLogIsNotUsed: a snapshot that names an event
// the provider does not have (another hash, another subject's event, one
// beyond the log), one whose state does not decode, one deleted, or one
// folded by other rules is not used: the history is every event, and a
// snapshot saved on it replaces the bad one.
func TestSnapshotNotMatchingTheLogIsNotUsed(t *testing.T) {
	t.Parallel()
	store, js := newStore(t)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, jetstream.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	recs := providerEvents(t, store, "VLAXL", 120)
	other := providerEvents(t, store, "NQR01", 5)
	good, reqs := snapshotAt(t, store, recs, 100)
	key := "provider.VLAXL.state." + spa.ProviderStateVersion
	must := func(_ uint64, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	stored := func(s spa.Snapshot) []byte {
		b, err := json.Marshal(map[string]any{"seq": s.Sequence, "hash": s.Hash, "state": json.RawMessage(s.State)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		damage func(t *testing.T)
	}{
		{"another hash", func(t *testing.T) {
			bad := good
			bad.Hash = make([]byte, 32)
			must(kv.Put(ctx, key, stored(bad)))
		}},
		{"another subject's event", func(t *testing.T) {
			bad := good
			bad.Sequence = other[2].Sequence
			h, _ := store.History(ctx, spa.AggregateProvider, "NQR01", "test-rules", "", decodesAsProvider)
			bad.Hash = h.Hashes[2]
			must(kv.Put(ctx, key, stored(bad)))
		}},
		{"beyond the log", func(t *testing.T) {
			bad := good
			bad.Sequence = other[4].Sequence + 100
			must(kv.Put(ctx, key, stored(bad)))
		}},
		{"a state that does not decode", func(t *testing.T) {
			bad := good
			bad.State = []byte(`{"Version":"one"}`)
			must(kv.Put(ctx, key, stored(bad)))
		}},
		{"not JSON", func(t *testing.T) { must(kv.Put(ctx, key, []byte("garbage"))) }},
		{"deleted", func(t *testing.T) { must(0, kv.Delete(ctx, key)) }},
		{"folded by other rules", func(t *testing.T) {
			must(0, kv.Delete(ctx, key))
			must(kv.Put(ctx, "provider.VLAXL.state.provider-0", stored(good)))
		}},
	}
	want := replayed(t, store, "VLAXL")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: each damages the one snapshot.
			tt.damage(t)
			h, err := store.History(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, recs[50].Request.ID, decodesAsProvider)
			if err != nil {
				t.Fatal(err)
			}
			if h.Snapshot != nil || len(h.Records) != 120 || h.Last != recs[119].Sequence {
				t.Fatalf("snapshot %v used, %d records, last %d", h.Snapshot, len(h.Records), h.Last)
			}
			if diff := cmp.Diff(want, fold(t, h)); diff != "" {
				t.Errorf("state (-replayed +read):\n%s", diff)
			}
			store.SaveSnapshot(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, h.Revision, good, reqs)
			h, err = store.History(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, recs[50].Request.ID, decodesAsProvider)
			if err != nil {
				t.Fatal(err)
			}
			if h.Snapshot == nil || h.Snapshot.Sequence != good.Sequence || h.Requested != recs[50].Sequence {
				t.Fatalf("after saving a good one: snapshot %v, request at %d (want %d)", h.Snapshot, h.Requested, recs[50].Sequence)
			}
			if diff := cmp.Diff(want, fold(t, h)); diff != "" {
				t.Errorf("state (-replayed +from the snapshot):\n%s", diff)
			}
		})
	}
}

// TestSnapshotSaveGivesWay: of two writers that read the same snapshot
// entry, the second to save gives way; a save against a revision never
// read does not replace what is there.
func TestSnapshotSaveGivesWay(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := context.Background()
	recs := providerEvents(t, store, "VLAXL", 60)
	at40, _ := snapshotAt(t, store, recs, 40)
	at50, _ := snapshotAt(t, store, recs, 50)
	store.SaveSnapshot(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, 0, at50, nil)
	store.SaveSnapshot(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, 0, at40, nil)
	h, err := store.History(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, "", decodesAsProvider)
	if err != nil {
		t.Fatal(err)
	}
	if h.Snapshot == nil || h.Snapshot.Sequence != at50.Sequence {
		t.Fatalf("snapshot %v, want the first saved, at %d", h.Snapshot, at50.Sequence)
	}
	store.SaveSnapshot(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, h.Revision+7, at40, nil)
	if h, _ = store.History(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, "", decodesAsProvider); h.Snapshot == nil || h.Snapshot.Sequence != at50.Sequence {
		t.Fatalf("snapshot %v after a save against another revision, want the one at %d", h.Snapshot, at50.Sequence)
	}
}

// TestHistoryWithoutTheBucket: a bus without the snapshots' bucket (one
// provisioned by an earlier version) answers histories from every event,
// and saving a snapshot there changes nothing.
func TestHistoryWithoutTheBucket(t *testing.T) {
	t.Parallel()
	store, js := newStore(t)
	ctx := context.Background()
	if err := js.DeleteKeyValue(ctx, jetstream.StateBucket); err != nil {
		t.Fatal(err)
	}
	recs := providerEvents(t, store, "VLAXL", 40)
	for range 2 {
		h, err := store.History(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, recs[10].Request.ID, decodesAsProvider)
		if err != nil {
			t.Fatal(err)
		}
		if h.Snapshot != nil || len(h.Records) != 40 || h.Requested != 0 {
			t.Fatalf("snapshot %v, %d records, requested %d", h.Snapshot, len(h.Records), h.Requested)
		}
		snap := spa.Snapshot{Sequence: h.Records[39].Sequence, Hash: h.Hashes[39], State: []byte("{}")}
		store.SaveSnapshot(ctx, spa.AggregateProvider, "VLAXL", spa.ProviderStateVersion, 0, snap, nil)
	}
	if _, err := js.KeyValue(ctx, jetstream.StateBucket); err != natsjs.ErrBucketNotFound {
		t.Fatalf("bucket after saving without it: %v", err)
	}
}
