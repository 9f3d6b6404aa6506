package bolt_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"spa/internal/bolt"
	"spa/internal/codec"
	"spa/internal/spa"
)

// clockLog builds entries of referral events, sequences from 1.
type clockLog struct {
	t       *testing.T
	entries []bolt.Entry
}

func (l *clockLog) add(id string, at time.Time, e spa.Event) {
	l.t.Helper()
	rec := spa.Record{Sequence: uint64(len(l.entries) + 1), EventID: fmt.Sprint("e", len(l.entries)), AggregateID: id, OccurredAt: at, RecordedAt: at, Event: e}
	raw, err := codec.MarshalRecord(rec)
	if err != nil {
		l.t.Fatal(err)
	}
	l.entries = append(l.entries, bolt.Entry{Record: rec, Raw: raw})
}

// ids returns the referrals' ids, in order.
func ids(cs []bolt.Clocked) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Referral.ID)
	}
	return out
}

// TestClockIndex: the model indexes each open referral under the lower
// bound of its next alert and, when a policy may move it, its last fact;
// an alert raised re-arms it at the next one; a withdrawn or completed
// referral leaves the index; a rebuilt model has the same index.
func TestClockIndex(t *testing.T) {
	t.Parallel()
	day := func(d, h, m int) time.Time { return time.Date(2026, 11, d, h, m, 0, 0, time.UTC) } // GMT = UK time
	l := &clockLog{t: t}
	ready := func(id string, at time.Time, adjust func(*spa.Details)) {
		d := spa.Details{Patient: spa.Patient{Borough: "Bromley"}, Episode: spa.Episode{SiteODS: "RJZ30"}, AdmittedFrom: spa.AdmittedFromHome}
		if adjust != nil {
			adjust(&d)
		}
		drd := spa.LocalDate(at)
		if d.Needs.UrgentCommunityResponse {
			drd = ""
		}
		l.add(id, at, spa.ReferralSubmitted{RequestID: "request-" + id, Details: d, DischargeReadyDate: drd})
	}
	sameDay, urgent, withdrawn, completed, held := spa.ReferralIDFor("same-day"), spa.ReferralIDFor("urgent"), spa.ReferralIDFor("withdrawn"),
		spa.ReferralIDFor("completed"), spa.ReferralIDFor("held")
	ready(sameDay, day(22, 9, 0), nil)
	// Ward-led: no policy moves it. (Not decided, a policy might.)
	l.add(sameDay, day(22, 9, 0), spa.PathwayDecided{Pathway: spa.PathwayP0Home})
	ready(urgent, day(22, 21, 0), func(d *spa.Details) { d.Needs.UrgentCommunityResponse = true })
	ready(withdrawn, day(22, 9, 0), nil)
	ready(completed, day(22, 9, 0), nil)
	ready(held, day(22, 9, 0), func(d *spa.Details) { d.AdmittedFrom = spa.AdmittedFromCareHome })
	m := open(t)
	apply := func() {
		t.Helper()
		if err := m.Apply(l.entries); err != nil {
			t.Fatal(err)
		}
	}
	dueBy := func(now time.Time) []string {
		t.Helper()
		got, err := m.DueBy(now, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ids(got)
	}
	apply()
	// The same-day warnings at 18:00 (the urgent clock's, by 22:30 all
	// day long, is 09:30 the next day in the SPA's hours: the scheduler
	// checks); the held referral's hold is not applied yet.
	if got := dueBy(day(22, 17, 59)); len(got) != 0 {
		t.Fatalf("due by 17:59: %v", got)
	}
	if got, want := dueBy(day(22, 18, 0)), []string{completed, held, sameDay, withdrawn}; !sameSet(got, want) {
		t.Fatalf("due by 18:00: %v, want %v", got, want)
	}
	if got := dueBy(day(22, 22, 30)); !slices.Contains(got, urgent) {
		t.Fatalf("due by 22:30: %v, want the urgent one among them", got)
	}

	// The warning raised: the breach at midnight is next.
	l.add(sameDay, day(22, 18, 0), spa.ClockAlerted{Clock: spa.ClockSameDayDischarge, Level: spa.ClockWarning, StartedAt: day(22, 0, 0)})
	// Withdrawn; completed; held for a test by the overlay.
	l.add(withdrawn, day(22, 10, 0), spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonDied})
	a1 := spa.AssignmentIDFor(completed, 1)
	l.add(completed, day(22, 9, 0), spa.PathwayDecided{Pathway: spa.PathwayP1HomeFirst, Service: spa.ServiceHomeCareReablement})
	l.add(completed, day(22, 9, 0), spa.OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: spa.ServiceHomeCareReablement})
	for _, s := range []spa.TaskStatus{spa.TaskAccepted, spa.TaskInProgress, spa.TaskCompleted} {
		l.add(completed, day(22, 11, 0), spa.AssignmentStatusChanged{AssignmentID: a1, Status: s})
	}
	l.add(held, day(22, 9, 30), spa.ReferralHeld{Reason: spa.HoldReasonAwaitingTest, Rule: spa.RuleInfectionOverlay})
	apply()
	if got := dueBy(day(22, 23, 59)); !sameSet(got, []string{urgent}) {
		t.Fatalf("due by 23:59 after the warning, a withdrawal, a completion and a hold: %v, want only the urgent one", got)
	}
	if got := dueBy(day(23, 0, 0)); !sameSet(got, []string{sameDay, urgent}) {
		t.Fatalf("due by midnight: %v, want the same-day breach and the urgent one", got)
	}
	if got := dueBy(day(22, 0, 0).AddDate(1, 0, 0)); slices.Contains(got, withdrawn) || slices.Contains(got, completed) {
		t.Fatalf("a year on: %v holds a stopped referral", got)
	}
	// The held referral: an open hold stops its clocks but the delay days,
	// and a policy may release it: it is indexed by its last fact.
	if got := dueBy(day(29, 0, 0)); !slices.Contains(got, held) {
		t.Fatalf("due by the 29th: %v, want the held referral's 7-day flag", got)
	}
	bound := func(before time.Time) []string {
		t.Helper()
		got, err := m.PolicyBoundBefore(before, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ids(got)
	}
	if got := bound(day(22, 9, 29)); len(got) != 0 {
		t.Fatalf("policy-bound with facts by 09:29: %v", got)
	}
	if got := bound(day(22, 9, 30)); !sameSet(got, []string{held}) {
		t.Fatalf("policy-bound with facts by 09:30: %v, want the held one", got)
	}
	// skip leaves out what it is given, before the referral is read.
	got, err := m.DueBy(day(23, 0, 0), func(id string, mark uint64) bool { return id == urgent })
	if err != nil || !sameSet(ids(got), []string{sameDay}) {
		t.Fatalf("due by midnight, the urgent one skipped: %v %v, want the same-day one", ids(got), err)
	}
	// Its mark stays while it is unchanged, and changes with an event
	// that moves neither of its instants.
	mark := got[0].Mark
	if again, _ := m.DueBy(day(23, 0, 0), func(id string, _ uint64) bool { return id == urgent }); len(again) != 1 || again[0].Mark != mark {
		t.Fatal("the mark of an unchanged referral changed")
	}
	l.add(sameDay, day(22, 20, 0), spa.ReferralAmended{Details: got[0].Referral.Details, Paths: []string{"hospital_lead"}, Reason: "new lead"})
	apply()
	if again, _ := m.DueBy(day(23, 0, 0), func(id string, _ uint64) bool { return id == urgent }); len(again) != 1 || again[0].Mark == mark {
		t.Fatalf("after an amendment: %v, want the same-day one with a new mark", ids(again))
	}
	// Released, not decided yet: moved to its new last fact; decided
	// ward-led: out.
	l.add(held, day(23, 9, 0), spa.HoldReleased{Reason: spa.HoldReasonAwaitingTest})
	apply()
	if got := bound(day(23, 8, 59)); len(got) != 0 {
		t.Fatalf("policy-bound by 08:59 on the 23rd after the release: %v", got)
	}
	if got := bound(day(23, 9, 0)); !sameSet(got, []string{held}) {
		t.Fatalf("policy-bound by 09:00 on the 23rd after the release: %v, want the released one", got)
	}
	l.add(held, day(23, 9, 0), spa.PathwayDecided{Pathway: spa.PathwayP0Home})
	apply()
	if got := bound(day(30, 0, 0)); len(got) != 0 {
		t.Fatalf("policy-bound after the decision: %v", got)
	}

	// Built again in one batch, or one event at a time: the same model.
	again := open(t)
	for _, e := range l.entries {
		if err := again.Apply([]bolt.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := digest(t, m), digest(t, again); a != b {
		t.Fatalf("digests differ: %s vs %s", a, b)
	}
}

func sameSet(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}
