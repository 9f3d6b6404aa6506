package spa

import (
	"testing"
	"time"
)

// TestAwaitingCapacityClockStopsWhileNotReady: a referral in the
// no-capacity queue whose patient meets a criterion to reside again leaves
// the queue, and its awaiting-capacity clock stops with it.
func TestAwaitingCapacityClockStopsWhileNotReady(t *testing.T) {
	var r Referral
	for _, rec := range []Record{
		{Sequence: 1, AggregateID: referralID, OccurredAt: uk(10, 9, 0), Event: submitted(func(*Details) {})},
		{Sequence: 2, AggregateID: referralID, OccurredAt: uk(10, 9, 0), Event: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceStepDownBed}},
		{Sequence: 3, AggregateID: referralID, OccurredAt: uk(10, 9, 0), Event: AwaitingCapacity{Service: ServiceStepDownBed}},
		// 30 minutes later the patient deteriorates: NEWS2 > 3 again.
		{Sequence: 4, AggregateID: referralID, OccurredAt: uk(10, 9, 30), Event: CriteriaToResideRecorded{CriteriaMet: []Criterion{CriterionNEWS2Above3}}},
	} {
		r.Apply(rec)
	}
	if r.Status != StatusNotReady {
		t.Fatalf("status %v, want not ready", r.Status)
	}
	for _, d := range DueAlerts(r, DefaultOperatingHours, uk(11, 0, 0)) {
		if d.Event.Clock == ClockAwaitingCapacity {
			t.Errorf("awaiting-capacity %v due at %s for a referral that is not in the queue (not ready since 09:30)", d.Event.Level, d.At.Format(time.DateTime))
		}
	}
}

// TestUrgentResponseClockOnlyWhenRoutedThere: a referral that asks for an
// urgent community response but is routed elsewhere by an earlier rule
// (end-of-life fast track) runs no urgent-response clock.
func TestUrgentResponseClockOnlyWhenRoutedThere(t *testing.T) {
	eol := func(d *Details) {
		d.Needs.UrgentCommunityResponse = true
		d.EndOfLife = EndOfLife{FastTrack: true, PreferredPlace: PlaceOfCareHospice}
	}
	c := validSubmit()
	eol(&c.Details)
	c.Details.Episode.AdmissionDate = "2024-01-05"
	c.Details.Episode.ExpectedDischargeDate = ""
	if _, err := DecideSubmit(Referral{}, c, uk(10, 9, 0)); err != nil {
		t.Fatalf("submission refused: %v", err) // accepted: the combination is valid input
	}
	var r Referral
	seq := uint64(0)
	apply := func(at time.Time, e Event) {
		seq++
		r.Apply(Record{Sequence: seq, AggregateID: referralID, OccurredAt: at, Event: e})
	}
	apply(uk(10, 9, 0), submitted(eol))
	step := NextStep(r, nil, DefaultPolicies, uk(10, 9, 0))
	pd, ok := step.Event.(PathwayDecided)
	if !ok || pd.Service == ServiceUrgentCommunityResponse {
		t.Fatalf("step %#v", step.Event)
	}
	apply(uk(10, 9, 0), pd)
	a1 := AssignmentIDFor(referralID, 1)
	apply(uk(10, 9, 0), OfferMade{AssignmentID: a1, ProviderODS: "HOS10", Service: pd.Service})
	apply(uk(10, 9, 10), AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted})
	apply(uk(10, 9, 40), PatientLeftHospital{LeftAt: uk(10, 9, 40)})
	apply(uk(10, 10, 0), AssignmentStatusChanged{AssignmentID: a1, Status: TaskInProgress})
	for _, d := range DueAlerts(r, DefaultOperatingHours, uk(12, 0, 0)) {
		if d.Event.Clock == ClockUrgentResponse {
			t.Errorf("urgent-response %v due at %s; the referral went to %v (rule %s) and is in care since 10:00", d.Event.Level, d.At.Format(time.DateTime), pd.Service, pd.Rule)
		}
	}
}

// TestReablementClockKeptAcrossUpgrade: a referral whose reablement clock
// an earlier version ran from the decision (its warning raised so) keeps
// that clock: nothing is raised again or back-dated after the upgrade.
func TestReablementClockKeptAcrossUpgrade(t *testing.T) {
	a1 := AssignmentIDFor(referralID, 1)
	notReady := submitted(func(*Details) {})
	notReady.DischargeReadyDate = ""
	var r Referral
	for _, rec := range []Record{
		{Sequence: 1, AggregateID: referralID, OccurredAt: uk(10, 9, 0), Event: notReady},
		{Sequence: 2, AggregateID: referralID, OccurredAt: uk(11, 9, 0), Event: CriteriaToResideRecorded{DischargeReadyDate: "2024-01-11"}},
		{Sequence: 3, AggregateID: referralID, OccurredAt: uk(11, 9, 0), Event: PathwayDecided{Pathway: PathwayP1HomeFirst, Service: ServiceHomeCareReablement}},
		{Sequence: 4, AggregateID: referralID, OccurredAt: uk(11, 9, 0), Event: OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: ServiceHomeCareReablement}},
		{Sequence: 5, AggregateID: referralID, OccurredAt: uk(11, 10, 0), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted}},
		{Sequence: 6, AggregateID: referralID, OccurredAt: uk(11, 12, 0), Event: PatientLeftHospital{LeftAt: uk(11, 12, 0)}},
		// 0.2's scheduler: the warning at 75% of 48h from the decision.
		{Sequence: 7, AggregateID: referralID, OccurredAt: uk(12, 21, 0), Event: ClockAlerted{Clock: ClockReablement, Level: ClockWarning, StartedAt: uk(11, 9, 0), Target: 48 * time.Hour}},
		{Sequence: 8, AggregateID: referralID, OccurredAt: uk(12, 22, 0), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskInProgress}},
	} {
		r.Apply(rec)
	}
	// 0.3 deployed on the 14th; the referral is in care (the scheduler looks at it).
	for _, d := range DueAlerts(r, DefaultOperatingHours, uk(14, 0, 0)) {
		if d.Event.Clock == ClockReablement {
			t.Errorf("reablement %v raised again after the upgrade (due %s, start %s); already raised: %+v", d.Event.Level, d.At.Format(time.DateTime), d.Event.StartedAt.Format(time.DateTime), r.Alerts)
		}
	}
}

// TestSameDayEscalationAtTheEndOfTheNextDay: the same-day escalation is at
// the midnight that ends the next UK day, clock-change days included.
func TestSameDayEscalationAtTheEndOfTheNextDay(t *testing.T) {
	for _, drd := range []string{"2025-03-30", "2025-10-26", "2025-06-10"} {
		e := submitted(func(*Details) {})
		e.DischargeReadyDate = drd
		var r Referral
		d0, _ := ParseLocalDate(drd)
		r.Apply(Record{Sequence: 1, AggregateID: referralID, OccurredAt: d0.Add(9 * time.Hour), Event: e})
		want := d0.AddDate(0, 0, 2)
		for _, d := range DueAlerts(r, DefaultOperatingHours, d0.AddDate(0, 0, 5)) {
			if d.Event.Clock == ClockSameDayDischarge && d.Event.Level == ClockEscalation && !d.At.Equal(want) {
				t.Errorf("DRD %s: escalation at %s, want %s (delay days %d there)", drd, d.At.In(london()), want, r.DelayDays(d.At))
			}
		}
	}
}

// TestOperatingHoursTo2400: 00:00-24:00 is every hour of every day, clock
// changes included.
func TestOperatingHoursTo2400(t *testing.T) {
	h := OperatingHours{Open: 0, Close: 24 * 60}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, start := range []time.Time{
		time.Date(2025, 3, 29, 23, 30, 0, 0, london()), time.Date(2025, 3, 30, 0, 30, 0, 0, london()),
		time.Date(2025, 10, 25, 23, 30, 0, 0, london()), time.Date(2025, 10, 26, 0, 30, 0, 0, london()),
		time.Date(2025, 10, 26, 23, 30, 0, 0, london()), time.Date(2024, 1, 10, 23, 59, 0, 0, london()),
	} {
		if got := advance(start, 2*time.Hour, nil, true, h); !got.Equal(start.Add(2 * time.Hour)) {
			t.Errorf("from %s: %s, want %s", start, got, start.Add(2*time.Hour))
		}
	}
}
