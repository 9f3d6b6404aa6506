package spa

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// uk returns an instant in UK time on 10-20 January 2024 (GMT).
func uk(day, hour, min int) time.Time { return time.Date(2024, 1, day, hour, min, 0, 0, london()) }

func TestDueAlerts(t *testing.T) {
	t.Parallel()
	readyOn := func(drd string, adjust func(d *Details)) ReferralSubmitted {
		e := submitted(adjust)
		e.DischargeReadyDate = drd
		return e
	}
	ready := func(adjust func(d *Details)) ReferralSubmitted { return readyOn("2024-01-10", adjust) }
	urgent := func(d *Details) { d.Needs.UrgentCommunityResponse = true }
	// at is a UK wall-clock time in 2025, the year of the clock-change
	// rows (30 March: 01:00 GMT becomes 02:00 BST; 26 October: 02:00 BST
	// becomes 01:00 GMT).
	at := func(m time.Month, day, hour, min int) time.Time {
		return time.Date(2025, m, day, hour, min, 0, 0, london())
	}
	test := func(taken time.Time) InfectionTestRecorded {
		return InfectionTestRecorded{Test: InfectionTest{Type: TestTypePCR, TakenAt: taken, Result: TestResultNegative}}
	}
	careHomeBound := PathwayDecided{Pathway: PathwayP0Home, Inputs: map[string]string{"care_home_bound": "true"}}
	home := ServiceHomeCareReablement
	a1 := AssignmentIDFor(referralID, 1)
	type due struct {
		at    time.Time
		clock string
		level ClockLevel
		days  int32
	}
	tests := []struct {
		name   string
		events []Record
		now    time.Time
		want   []due
	}{
		{name: "same day: nothing before 75% of the day", events: recs(uk(10, 9, 0), ready(func(*Details) {})), now: uk(10, 17, 59)},
		{name: "same day: warning at 18:00, breach at midnight, escalation after two days, delay flags",
			events: recs(uk(10, 9, 0), ready(func(*Details) {})), now: uk(20, 0, 0),
			want: []due{{uk(10, 18, 0), ClockSameDayDischarge, ClockWarning, 0}, {uk(11, 0, 0), ClockSameDayDischarge, ClockBreach, 0},
				{uk(12, 0, 0), ClockSameDayDischarge, ClockEscalation, 0}, {uk(17, 0, 0), ClockSameDayDischarge, ClockDelayFlag, 7}}},
		{name: "same day: left in time, nothing", events: recs(uk(10, 9, 0), ready(func(*Details) {}), PatientLeftHospital{LeftAt: uk(10, 15, 0)}), now: uk(20, 0, 0)},
		{name: "same day: alerts raised are not raised again",
			events: recs(uk(10, 9, 0), ready(func(*Details) {}), ClockAlerted{Clock: ClockSameDayDischarge, Level: ClockWarning, StartedAt: uk(10, 0, 0)}), now: uk(10, 23, 0)},
		{name: "same day: a reset Discharge Ready Date re-arms the clock", events: append(
			recs(uk(10, 9, 0), ready(func(*Details) {}), ClockAlerted{Clock: ClockSameDayDischarge, Level: ClockWarning, StartedAt: uk(10, 0, 0)}),
			Record{Sequence: 3, OccurredAt: uk(10, 20, 0), Event: CriteriaToResideRecorded{CriteriaMet: []Criterion{CriterionNEWS2Above3}}},
			Record{Sequence: 4, OccurredAt: uk(12, 9, 0), Event: CriteriaToResideRecorded{DischargeReadyDate: "2024-01-12"}}),
			now: uk(13, 1, 0), want: []due{{uk(12, 18, 0), ClockSameDayDischarge, ClockWarning, 0}, {uk(13, 0, 0), ClockSameDayDischarge, ClockBreach, 0}}},
		{name: "same day: the clock-change day in spring has 23 hours", events: recs(at(time.March, 30, 9, 0), readyOn("2025-03-30", func(*Details) {})),
			now: at(time.March, 31, 1, 0), want: []due{{at(time.March, 30, 18, 15), ClockSameDayDischarge, ClockWarning, 0}, {at(time.March, 31, 0, 0), ClockSameDayDischarge, ClockBreach, 0}}},
		{name: "delay flags count UK calendar days across a clock change", events: recs(at(time.March, 25, 9, 0), readyOn("2025-03-25", func(*Details) {})),
			now: at(time.April, 1, 0, 30), want: []due{{at(time.March, 25, 18, 0), ClockSameDayDischarge, ClockWarning, 0}, {at(time.March, 26, 0, 0), ClockSameDayDischarge, ClockBreach, 0},
				{at(time.March, 27, 0, 0), ClockSameDayDischarge, ClockEscalation, 0}, {at(time.April, 1, 0, 0), ClockSameDayDischarge, ClockDelayFlag, 7}}},
		{name: "a hold pauses the clocks", events: append(recs(uk(10, 9, 0), ready(func(*Details) {})),
			Record{Sequence: 2, OccurredAt: uk(10, 10, 0), Event: ReferralHeld{Reason: HoldReasonFundingDispute}},
			Record{Sequence: 3, OccurredAt: uk(10, 14, 0), Event: HoldReleased{Reason: HoldReasonFundingDispute}}),
			now: uk(10, 23, 0), want: []due{{uk(10, 22, 0), ClockSameDayDischarge, ClockWarning, 0}}},
		{name: "an open hold stops the clocks, not the delay days", events: append(recs(uk(10, 9, 0), ready(func(*Details) {})),
			Record{Sequence: 2, OccurredAt: uk(10, 10, 0), Event: ReferralHeld{Reason: HoldReasonSafeguarding}}), now: uk(20, 0, 0),
			want: []due{{uk(17, 0, 0), ClockSameDayDischarge, ClockDelayFlag, 7}}},
		{name: "reablement: 2 days from the referral until care starts", events: append(recs(uk(10, 9, 0), ready(func(*Details) {}),
			PatientLeftHospital{LeftAt: uk(10, 12, 0)}),
			Record{Sequence: 3, OccurredAt: uk(10, 12, 0), Event: PathwayDecided{Pathway: PathwayP1HomeFirst, Service: home}},
			Record{Sequence: 4, OccurredAt: uk(10, 12, 0), Event: OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home}},
			Record{Sequence: 5, OccurredAt: uk(10, 13, 0), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted}},
			Record{Sequence: 6, OccurredAt: uk(12, 11, 0), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskInProgress}}),
			now: uk(20, 0, 0), want: []due{{uk(11, 21, 0), ClockReablement, ClockWarning, 0}, {uk(12, 9, 0), ClockReablement, ClockBreach, 0}}},
		{name: "leave hospital: 2h from acceptance", events: append(recs(uk(10, 9, 0), ready(func(*Details) {}), PatientLeftHospital{LeftAt: uk(10, 12, 30)}),
			Record{Sequence: 3, OccurredAt: uk(10, 9, 0), Event: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceStepDownBed}},
			Record{Sequence: 4, OccurredAt: uk(10, 9, 0), Event: OfferMade{AssignmentID: a1, ProviderODS: "STP01", Service: ServiceStepDownBed}},
			Record{Sequence: 5, OccurredAt: uk(10, 10, 0), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted}}),
			now: uk(11, 12, 0), want: []due{{uk(10, 11, 30), ClockLeaveHospital, ClockWarning, 0}, {uk(10, 12, 0), ClockLeaveHospital, ClockBreach, 0}}},
		{name: "urgent response counts operating hours only", events: recs(uk(10, 19, 0), ready(urgent), PatientLeftHospital{LeftAt: uk(10, 17, 0)}),
			now: uk(11, 9, 0), want: []due{{uk(11, 8, 30), ClockUrgentResponse, ClockWarning, 0}, {uk(11, 9, 0), ClockUrgentResponse, ClockBreach, 0}}},
		{name: "urgent response asked at 21:00 starts at 08:00", events: recs(uk(10, 21, 0), ready(urgent), PatientLeftHospital{LeftAt: uk(10, 17, 0)}),
			now: uk(11, 10, 0), want: []due{{uk(11, 9, 30), ClockUrgentResponse, ClockWarning, 0}, {uk(11, 10, 0), ClockUrgentResponse, ClockBreach, 0}}},
		{name: "urgent response stops at the first visit", events: append(recs(uk(10, 9, 0), ready(urgent), PatientLeftHospital{LeftAt: uk(10, 9, 0)}),
			Record{Sequence: 3, OccurredAt: uk(10, 9, 0), Event: PathwayDecided{Pathway: PathwayP1HomeFirst, Service: ServiceUrgentCommunityResponse}},
			Record{Sequence: 4, OccurredAt: uk(10, 9, 0), Event: OfferMade{AssignmentID: a1, ProviderODS: "UCR01", Service: ServiceUrgentCommunityResponse}},
			Record{Sequence: 5, OccurredAt: uk(10, 9, 5), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted}},
			Record{Sequence: 6, OccurredAt: uk(10, 10, 40), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskInProgress}}),
			now: uk(11, 10, 0), want: []due{{uk(10, 10, 30), ClockUrgentResponse, ClockWarning, 0}}},
		{name: "operating hours on the spring clock change: 08:00-20:00 BST", events: recs(at(time.March, 30, 7, 0), readyOn("2025-03-30", urgent), PatientLeftHospital{LeftAt: at(time.March, 30, 7, 0)}),
			now: at(time.March, 30, 11, 0), want: []due{{at(time.March, 30, 9, 30), ClockUrgentResponse, ClockWarning, 0}, {at(time.March, 30, 10, 0), ClockUrgentResponse, ClockBreach, 0}}},
		{name: "operating hours on the autumn clock change: 08:00-20:00 GMT", events: recs(at(time.October, 26, 19, 0), readyOn("2025-10-26", urgent), PatientLeftHospital{LeftAt: at(time.October, 26, 19, 0)}),
			now: at(time.October, 27, 12, 0), want: []due{{at(time.October, 26, 17, 45), ClockSameDayDischarge, ClockWarning, 0}, {at(time.October, 27, 8, 30), ClockUrgentResponse, ClockWarning, 0}, {at(time.October, 27, 9, 0), ClockUrgentResponse, ClockBreach, 0},
				{at(time.October, 27, 11, 0), ClockUrgentResponse, ClockEscalation, 0}}},
		{name: "test validity under the overlay: 48h from the test", events: append(recs(uk(10, 9, 0), ready(fromCareHome), PatientLeftHospital{}),
			Record{Sequence: 3, OccurredAt: uk(10, 9, 0), Event: InfectionTestRecorded{Test: InfectionTest{Type: TestTypePCR, TakenAt: uk(10, 8, 0), Result: TestResultNegative}}},
			Record{Sequence: 4, OccurredAt: uk(10, 9, 0), Event: PathwayDecided{Pathway: PathwayP0Home, Inputs: map[string]string{"care_home_bound": "true"}}}),
			now: uk(12, 8, 0), want: []due{{uk(10, 18, 0), ClockSameDayDischarge, ClockWarning, 0}, {uk(11, 0, 0), ClockSameDayDischarge, ClockBreach, 0},
				{uk(11, 20, 0), ClockTestValidity, ClockWarning, 0}, {uk(12, 0, 0), ClockSameDayDischarge, ClockEscalation, 0}, {uk(12, 8, 0), ClockTestValidity, ClockBreach, 0}}},
	}
	tests = append(tests, []struct {
		name   string
		events []Record
		now    time.Time
		want   []due
	}{
		{name: "a new test re-arms test validity", events: append(recs(uk(10, 9, 0), ready(fromCareHome), PatientLeftHospital{}),
			Record{Sequence: 2, OccurredAt: uk(10, 9, 0), Event: test(uk(10, 8, 0))},
			Record{Sequence: 3, OccurredAt: uk(10, 9, 0), Event: careHomeBound},
			Record{Sequence: 4, OccurredAt: uk(11, 20, 0), Event: ClockAlerted{Clock: ClockTestValidity, Level: ClockWarning, StartedAt: uk(10, 8, 0)}},
			Record{Sequence: 5, OccurredAt: uk(11, 21, 0), Event: test(uk(11, 21, 0))},
			Record{Sequence: 6, OccurredAt: uk(13, 9, 0), Event: PatientLeftHospital{LeftAt: uk(13, 10, 0)}}),
			now: uk(13, 10, 0), want: []due{{uk(10, 18, 0), ClockSameDayDischarge, ClockWarning, 0}, {uk(11, 0, 0), ClockSameDayDischarge, ClockBreach, 0},
				{uk(12, 0, 0), ClockSameDayDischarge, ClockEscalation, 0}, {uk(13, 9, 0), ClockTestValidity, ClockWarning, 0}}},
		{name: "each wait in the no-capacity queue escalates until an offer", events: append(recs(uk(10, 9, 0), ready(func(*Details) {}), PatientLeftHospital{LeftAt: uk(10, 9, 0)}),
			Record{Sequence: 3, OccurredAt: uk(10, 9, 0), Event: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceStepDownBed}},
			Record{Sequence: 4, OccurredAt: uk(10, 9, 0), Event: AwaitingCapacity{Service: ServiceStepDownBed}},
			Record{Sequence: 5, OccurredAt: uk(10, 12, 0), Event: ClockAlerted{Clock: ClockAwaitingCapacity, Level: ClockWarning, StartedAt: uk(10, 9, 0)}},
			Record{Sequence: 6, OccurredAt: uk(10, 14, 0), Event: OfferMade{AssignmentID: a1, ProviderODS: "STP01", Service: ServiceStepDownBed}},
			Record{Sequence: 7, OccurredAt: uk(10, 15, 0), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskRejected, Reason: "no bed"}},
			Record{Sequence: 8, OccurredAt: uk(10, 15, 0), Event: AwaitingCapacity{Service: ServiceStepDownBed}}),
			now: uk(11, 0, 0), want: []due{{uk(10, 13, 0), ClockAwaitingCapacity, ClockBreach, 0},
				{uk(10, 18, 0), ClockAwaitingCapacity, ClockWarning, 0}, {uk(10, 19, 0), ClockAwaitingCapacity, ClockBreach, 0},
				{uk(10, 23, 0), ClockAwaitingCapacity, ClockEscalation, 0}}},
		{name: "a hold does not pause test validity", events: append(recs(uk(10, 9, 0), ready(fromCareHome), PatientLeftHospital{}),
			Record{Sequence: 2, OccurredAt: uk(10, 9, 0), Event: test(uk(10, 8, 0))},
			Record{Sequence: 3, OccurredAt: uk(10, 9, 0), Event: careHomeBound},
			Record{Sequence: 4, OccurredAt: uk(10, 10, 0), Event: ReferralHeld{Reason: HoldReasonFundingDispute}},
			Record{Sequence: 5, OccurredAt: uk(10, 16, 0), Event: HoldReleased{Reason: HoldReasonFundingDispute}},
			Record{Sequence: 6, OccurredAt: uk(11, 21, 0), Event: PatientLeftHospital{LeftAt: uk(11, 21, 0)}}),
			now: uk(12, 0, 0), want: []due{{uk(11, 0, 0), ClockSameDayDischarge, ClockWarning, 0}, {uk(11, 6, 0), ClockSameDayDischarge, ClockBreach, 0},
				{uk(11, 20, 0), ClockTestValidity, ClockWarning, 0}}},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r Referral
			for _, rec := range tt.events {
				r.Apply(rec)
			}
			var got []due
			for _, d := range DueAlerts(r, DefaultOperatingHours, tt.now) {
				got = append(got, due{d.At, d.Event.Clock, d.Event.Level, d.Event.DelayDays})
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(due{})); diff != "" {
				t.Fatalf("due alerts (-want +got):\n%s", diff)
			}
		})
	}
}

// recs records events at t, sequences from 1; a PatientLeftHospital with
// no time is left out (it stands for "still in hospital" in a table).
func recs(t time.Time, events ...Event) []Record {
	var out []Record
	for _, e := range events {
		if l, ok := e.(PatientLeftHospital); ok && l.LeftAt.IsZero() {
			continue
		}
		out = append(out, Record{Sequence: uint64(len(out) + 1), AggregateID: referralID, OccurredAt: t, Event: e})
	}
	return out
}

func TestOperatingHours(t *testing.T) {
	t.Parallel()
	if err := DefaultOperatingHours.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, h := range []OperatingHours{{Open: 20 * 60, Close: 8 * 60}, {Open: -1, Close: 60}, {Open: 0, Close: 25 * 60}} {
		if h.Validate() == nil {
			t.Errorf("%+v accepted", h)
		}
	}
}

// TestDelayFlagsCountDelayDays: each delay flag falls due at the instant
// the board's delay days reach its number, across a clock change too.
func TestDelayFlagsCountDelayDays(t *testing.T) {
	t.Parallel()
	for _, drd := range []string{"2024-01-10", "2025-03-25", "2025-10-20"} {
		e := submitted(func(*Details) {})
		e.DischargeReadyDate = drd
		var r Referral
		r.Apply(Record{Sequence: 1, AggregateID: referralID, OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Event: e})
		flags := 0
		for _, d := range DueAlerts(r, DefaultOperatingHours, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
			if d.Event.Level != ClockDelayFlag {
				continue
			}
			flags++
			if got, before := r.DelayDays(d.At), r.DelayDays(d.At.Add(-time.Nanosecond)); got != int(d.Event.DelayDays) || before != got-1 {
				t.Errorf("DRD %s: flag %d due at %s, when the delay days are %d (%d just before)", drd, d.Event.DelayDays, d.At, got, before)
			}
		}
		if flags != len(DelayFlagDays) {
			t.Errorf("DRD %s: %d delay flags, want %d", drd, flags, len(DelayFlagDays))
		}
	}
}
