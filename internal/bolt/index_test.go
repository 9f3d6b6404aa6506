package bolt_test

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"spa/internal/bolt"
	"spa/internal/spa"
)

// The values the property test draws from: sites, boroughs (two of them
// equal but for case) and services.
var (
	sites    = []string{"RJZ30", "RH802", ""}
	boroughs = []string{"Bromley", "BROMLEY", "Lewisham", ""}
	services = []spa.Service{spa.ServiceUnspecified, spa.ServiceHomeCareReablement, spa.ServiceStepDownBed, spa.ServiceCareHomeBed}
)

// TestIndexesFollowTheState applies random event sequences to a few
// referrals (statuses, pathways, sites, boroughs, services and holds
// changing back and forth, amendments, events before a submission), in
// random batches, and checks after every batch that the indexes hold
// exactly the keys the referrals' states call for (none left behind),
// and at the end that every board filter, paged at random sizes, lists
// what a full scan of the states replayed beside the model lists, that
// the waiting queues do too, and that a model built in one batch has the
// same digest.
func TestIndexesFollowTheState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var files, events atomic.Int64
	rapid.Check(t, func(t *rapid.T) {
		m, closeModel := openIn(t, dir, &files)
		defer closeModel()
		ids := make([]string, rapid.IntRange(1, 5).Draw(t, "referrals"))
		for i := range ids {
			ids[i] = spa.ReferralIDFor(fmt.Sprintf("prop-%d", i))
		}
		states := map[string]*spa.Referral{}
		for _, id := range ids {
			states[id] = &spa.Referral{}
		}
		var entries []bolt.Entry
		n := uint64(rapid.IntRange(1, 80).Draw(t, "events"))
		for seq := uint64(1); seq <= n; seq++ {
			id := rapid.SampledFrom(ids).Draw(t, "referral")
			rec := spa.Record{Sequence: seq, EventID: fmt.Sprint("e", seq), AggregateID: id,
				OccurredAt: at.Add(time.Duration(seq) * time.Minute), Event: drawEvent(t, *states[id], seq)}
			rec.RecordedAt = rec.OccurredAt
			states[id].Apply(rec)
			entries = append(entries, bolt.Entry{Record: rec})
		}
		events.Add(int64(len(entries)))
		for from := 0; from < len(entries); {
			to := min(len(entries), from+rapid.IntRange(1, 20).Draw(t, "batch"))
			if err := m.Apply(entries[from:to]); err != nil {
				t.Fatal(err)
			}
			if err := m.CheckIndexes(); err != nil {
				t.Fatalf("after sequence %d: %v", to, err)
			}
			from = to
		}

		var all []spa.Referral
		for _, r := range states {
			if r.Exists() {
				all = append(all, *r)
			}
		}
		slices.SortFunc(all, func(a, b spa.Referral) int { return cmp.Compare(a.SubmittedSequence, b.SubmittedSequence) })
		scan := func(keep func(spa.Referral) bool) []string {
			var out []string
			for _, r := range all {
				if keep(r) {
					out = append(out, r.ID)
				}
			}
			return out
		}
		// Every value of each filter alone, and combinations drawn from
		// the values the referrals hold.
		var filters []bolt.Filter
		for status := spa.StatusUnspecified; status <= spa.StatusWardLed; status++ {
			filters = append(filters, bolt.Filter{Status: status})
		}
		for pathway := spa.PathwayP0Home; pathway <= spa.PathwayEndOfLife; pathway++ {
			filters = append(filters, bolt.Filter{Pathway: pathway})
		}
		for _, site := range sites[:2] {
			filters = append(filters, bolt.Filter{SiteODS: site})
		}
		for i := 0; i < 10 && len(all) > 0; i++ {
			r := rapid.SampledFrom(all).Draw(t, "combined from")
			filters = append(filters, bolt.Filter{Status: r.Status, Pathway: r.Pathway, SiteODS: r.Details.Episode.SiteODS},
				bolt.Filter{Status: r.Status, SiteODS: r.Details.Episode.SiteODS}, bolt.Filter{Status: r.Status, Pathway: r.Pathway})
		}
		size := rapid.IntRange(1, 4).Draw(t, "page size")
		for _, f := range filters {
			want := scan(func(r spa.Referral) bool {
				return (f.Status == 0 || r.Status == f.Status) && (f.Pathway == 0 || r.Pathway == f.Pathway) &&
					(f.SiteODS == "" || r.Details.Episode.SiteODS == f.SiteODS)
			})
			if got := listAll(t, m, f, size); !slices.Equal(got, want) {
				t.Fatalf("List(%+v), pages of %d: %v, a full scan: %v", f, size, got, want)
			}
		}
		for _, b := range append(boroughs, "bromley", "Croydon") {
			for _, s := range services {
				want := scan(func(r spa.Referral) bool {
					return r.Status == spa.StatusAwaitingCapacity && strings.EqualFold(r.Details.Patient.Borough, b) && r.Service == s
				})
				got, err := m.AwaitingCapacity(b, s)
				if err != nil {
					t.Fatal(err)
				}
				if ids := idsOf(got); !slices.Equal(ids, want) {
					t.Fatalf("AwaitingCapacity(%q, %d): %v, a full scan: %v", b, s, ids, want)
				}
			}
		}
		got, err := m.AwaitingTest()
		if err != nil {
			t.Fatal(err)
		}
		if want := scan(func(r spa.Referral) bool { return r.Hold == spa.HoldReasonAwaitingTest }); !slices.Equal(idsOf(got), want) {
			t.Fatalf("AwaitingTest: %v, a full scan: %v", idsOf(got), want)
		}

		whole, closeWhole := openIn(t, dir, &files)
		defer closeWhole()
		if err := whole.Apply(entries); err != nil {
			t.Fatal(err)
		}
		a, _, err := m.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if b, _, err := whole.Digest(); err != nil || a != b {
			t.Fatalf("built in batches and in one: digests %s and %s (%v)", a, b, err)
		}
	})
	t.Logf("%d events in %d models", events.Load(), files.Load())
}

// openIn opens a new model in dir; close closes and removes it.
func openIn(t *rapid.T, dir string, files *atomic.Int64) (m *bolt.Model, close func()) {
	path := filepath.Join(dir, fmt.Sprintf("model-%d.db", files.Add(1)))
	m, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return m, func() {
		m.Close()
		os.Remove(path)
	}
}

// drawEvent draws an event for a referral in state r at sequence seq:
// mostly its submission first, then anything that moves what the indexes
// hold (and now and then an event on a referral not submitted yet).
func drawEvent(t *rapid.T, r spa.Referral, seq uint64) spa.Event {
	details := func(d spa.Details) spa.Details {
		d.Episode.SiteODS = rapid.SampledFrom(sites).Draw(t, "site")
		d.Patient.Borough = rapid.SampledFrom(boroughs).Draw(t, "borough")
		return d
	}
	date := func() string { return rapid.SampledFrom([]string{"", "2026-11-21"}).Draw(t, "discharge ready date") }
	service := func() spa.Service { return rapid.SampledFrom(services).Draw(t, "service") }
	hold := func() spa.HoldReason {
		return rapid.SampledFrom([]spa.HoldReason{spa.HoldReasonAwaitingTest, spa.HoldReasonHousing}).Draw(t, "hold")
	}
	if !r.Exists() && rapid.IntRange(0, 9).Draw(t, "submit") > 0 {
		d := details(spa.Details{ProposedPathway: spa.Pathway(rapid.IntRange(0, int(spa.PathwayEndOfLife)).Draw(t, "proposed"))})
		return spa.ReferralSubmitted{RequestID: fmt.Sprint("request-", seq), Details: d, DischargeReadyDate: date()}
	}
	switch rapid.IntRange(0, 10).Draw(t, "kind") {
	case 0:
		return spa.CriteriaToResideRecorded{DischargeReadyDate: date()}
	case 1:
		return spa.PathwayDecided{Pathway: spa.Pathway(rapid.IntRange(0, int(spa.PathwayEndOfLife)).Draw(t, "pathway")), Service: service()}
	case 2, 3:
		return spa.AwaitingCapacity{Service: service()}
	case 4:
		return spa.ReferralHeld{Reason: hold()}
	case 5:
		return spa.HoldReleased{Reason: hold()}
	case 6:
		return spa.OfferMade{AssignmentID: fmt.Sprint("a", seq), ProviderODS: "P1", Service: service()}
	case 7:
		if len(r.Assignments) > 0 {
			a := rapid.SampledFrom(r.Assignments).Draw(t, "assignment")
			return spa.AssignmentStatusChanged{AssignmentID: a.ID, Status: spa.TaskStatus(rapid.IntRange(1, int(spa.TaskCancelled)).Draw(t, "task status"))}
		}
		return spa.ClockAlerted{Clock: spa.ClockAwaitingCapacity, Level: spa.ClockWarning}
	case 8:
		return spa.ReferralAmended{Details: details(r.Details)}
	case 9:
		return spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonNoLongerNeeded}
	}
	return spa.NothingChanged{Aggregate: spa.AggregateReferral}
}

// listAll pages through the board with filter f, size rows a page, and
// returns the ids listed; it fails on a page too long, a short page with
// a next token, or an id listed twice.
func listAll(t interface {
	Helper()
	Fatalf(string, ...any)
}, m *bolt.Model, f bolt.Filter, size int) []string {
	t.Helper()
	var ids []string
	var after uint64
	for {
		rows, next, err := m.List(f, after, size)
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		if len(rows) > size || next != 0 && len(rows) != size {
			t.Fatalf("List(%+v): a page of %d rows, size %d, next %d", f, len(rows), size, next)
		}
		for _, r := range rows {
			if slices.Contains(ids, r.ID) {
				t.Fatalf("List(%+v): %s listed twice", f, r.ID)
			}
		}
		ids = append(ids, idsOf(rows)...)
		if next == 0 {
			return ids
		}
		after = next
	}
}

func idsOf(rs []spa.Referral) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// TestFoldIsEqualFold: two boroughs share a queue key exactly when
// spa.ProviderDetails.Serves (strings.EqualFold) takes one for the
// other.
func TestFoldIsEqualFold(t *testing.T) {
	t.Parallel()
	// Kelvin sign, long s, sharp s, the three sigmas, dotted and dotless i,
	// an invalid byte.
	alphabet := []rune{'k', 'K', '\u212a', 's', 'S', '\u017f', 'ß', 'ẞ', 'Σ', 'σ', 'ς', 'i', 'I', 'İ', 'ı', 'a', ' '}
	word := rapid.Custom(func(t *rapid.T) string {
		s := string(rapid.SliceOfN(rapid.SampledFrom(alphabet), 0, 4).Draw(t, "runes"))
		if rapid.IntRange(0, 9).Draw(t, "invalid") == 0 {
			s += "\xff"
		}
		return s
	})
	rapid.Check(t, func(t *rapid.T) {
		a, b := word.Draw(t, "a"), word.Draw(t, "b")
		if same := bolt.Fold(a) == bolt.Fold(b); same != strings.EqualFold(a, b) {
			t.Fatalf("%q and %q: same key %v, EqualFold %v", a, b, same, strings.EqualFold(a, b))
		}
	})
}
