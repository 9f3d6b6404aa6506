package bolt_test

import (
	"fmt"
	"slices"
	"testing"

	"spa/internal/bolt"
	"spa/internal/codec"
	"spa/internal/spa"
)

// TestProviderFeed: the feed index lists, per provider, the referral
// events addressed to it (offers, changes of its assignments, an
// undecodable event stepped over that its headers address to it), and
// neither events addressed to nobody nor events on the provider's own
// subject; a page starts after its cursor and stops at its limit, and
// says how far the model had applied.
func TestProviderFeed(t *testing.T) {
	t.Parallel()
	m := open(t)
	var entries []bolt.Entry
	add := func(id string, e spa.Event) uint64 {
		seq := uint64(len(entries) + 1)
		rec := spa.Record{Sequence: seq, EventID: fmt.Sprint("e", seq), AggregateID: id, OccurredAt: at, RecordedAt: at, Event: e}
		raw, err := codec.MarshalRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, bolt.Entry{Record: rec, Raw: raw})
		return seq
	}
	var want, other []uint64
	for i := range 5 {
		id := spa.ReferralIDFor(fmt.Sprintf("feed-%d", i))
		add(id, spa.ReferralSubmitted{RequestID: fmt.Sprintf("feed-%d", i), Details: spa.Details{Episode: spa.Episode{SiteODS: "RJZ30"}}})
		want = append(want, add(id, spa.OfferMade{AssignmentID: id + "-1", ProviderODS: "NQR01", Service: spa.ServiceHomeCareReablement}))
		other = append(other, add(id, spa.OfferMade{AssignmentID: id + "-2", ProviderODS: "NQR011", Service: spa.ServiceHomeCareReablement}))
		add("NQR01", spa.CapacityReserved{Service: spa.ServiceHomeCareReablement, ReferralID: id, AssignmentID: id + "-1"})
		want = append(want, add(id, spa.AssignmentStatusChanged{AssignmentID: id + "-1", Status: spa.TaskAccepted, ProviderODS: "NQR01"}))
	}
	skipped := uint64(len(entries) + 1)
	entries = append(entries, bolt.Entry{Record: spa.Record{Sequence: skipped}, Raw: []byte{},
		Skipped: &bolt.Skipped{Aggregate: spa.AggregateReferral, ID: spa.ReferralIDFor("feed-0"), Provider: "NQR01"}})
	want = append(want, skipped)
	if err := m.Apply(entries); err != nil {
		t.Fatal(err)
	}

	all, applied, err := m.ProviderFeed("NQR01", 0, 100)
	if err != nil || !slices.Equal(all, want) || applied != skipped {
		t.Fatalf("NQR01's feed = %v applied %d (%v), want %v applied %d", all, applied, err, want, skipped)
	}
	var paged []uint64
	for after := uint64(0); ; {
		page, _, err := m.ProviderFeed("NQR01", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1]
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("paged by 3: %v, want %v", paged, want)
	}
	if got, _, _ := m.ProviderFeed("NQR011", other[1], 100); !slices.Equal(got, other[2:]) {
		t.Fatalf("NQR011 after %d: %v, want %v", other[1], got, other[2:])
	}
	if none, _, _ := m.ProviderFeed("RJZ30", 0, 100); len(none) != 0 {
		t.Fatalf("a provider with no events: %v", none)
	}
}
