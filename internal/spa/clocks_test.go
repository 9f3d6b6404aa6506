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
	ready := func(adjust func(d *Details)) ReferralSubmitted {
		e := submitted(adjust)
		e.DischargeReadyDate = "2024-01-10"
		return e
	}
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
			events: recs(uk(10, 9, 0), ready(func(*Details) {}), ClockAlerted{Clock: ClockSameDayDischarge, Level: ClockWarning}), now: uk(10, 23, 0)},
		{name: "a hold pauses the clocks", events: append(recs(uk(10, 9, 0), ready(func(*Details) {})),
			Record{Sequence: 2, OccurredAt: uk(10, 10, 0), Event: ReferralHeld{Reason: HoldReasonFundingDispute}},
			Record{Sequence: 3, OccurredAt: uk(10, 14, 0), Event: HoldReleased{Reason: HoldReasonFundingDispute}}),
			now: uk(10, 23, 0), want: []due{{uk(10, 22, 0), ClockSameDayDischarge, ClockWarning, 0}}},
		{name: "an open hold stops them", events: append(recs(uk(10, 9, 0), ready(func(*Details) {})),
			Record{Sequence: 2, OccurredAt: uk(10, 10, 0), Event: ReferralHeld{Reason: HoldReasonSafeguarding}}), now: uk(20, 0, 0)},
		{name: "reablement: 2 days from the decision until care starts", events: append(recs(uk(10, 9, 0), ready(func(*Details) {}),
			PatientLeftHospital{LeftAt: uk(10, 12, 0)}),
			Record{Sequence: 3, OccurredAt: uk(10, 12, 0), Event: PathwayDecided{Pathway: PathwayP1HomeFirst, Service: home}},
			Record{Sequence: 4, OccurredAt: uk(10, 12, 0), Event: OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home}},
			Record{Sequence: 5, OccurredAt: uk(10, 13, 0), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted}},
			Record{Sequence: 6, OccurredAt: uk(12, 11, 0), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskInProgress}}),
			now: uk(20, 0, 0), want: []due{{uk(12, 0, 0), ClockReablement, ClockWarning, 0}}},
		{name: "leave hospital: 2h from acceptance", events: append(recs(uk(10, 9, 0), ready(func(*Details) {}), PatientLeftHospital{LeftAt: uk(10, 12, 30)}),
			Record{Sequence: 3, OccurredAt: uk(10, 9, 0), Event: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceStepDownBed}},
			Record{Sequence: 4, OccurredAt: uk(10, 9, 0), Event: OfferMade{AssignmentID: a1, ProviderODS: "STP01", Service: ServiceStepDownBed}},
			Record{Sequence: 5, OccurredAt: uk(10, 10, 0), Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted}}),
			now: uk(11, 12, 0), want: []due{{uk(10, 11, 30), ClockLeaveHospital, ClockWarning, 0}, {uk(10, 12, 0), ClockLeaveHospital, ClockBreach, 0}}},
		{name: "urgent response counts operating hours only", events: append(recs(uk(10, 9, 0), ready(func(*Details) {}), PatientLeftHospital{LeftAt: uk(10, 9, 0)}),
			Record{Sequence: 3, OccurredAt: uk(10, 19, 0), Event: OfferMade{AssignmentID: a1, ProviderODS: "UCR01", Service: ServiceUrgentCommunityResponse}}),
			now: uk(11, 9, 0), want: []due{{uk(11, 8, 30), ClockUrgentResponse, ClockWarning, 0}, {uk(11, 9, 0), ClockUrgentResponse, ClockBreach, 0}}},
		{name: "test validity under the overlay: 48h from the test", events: append(recs(uk(10, 9, 0), ready(fromCareHome), PatientLeftHospital{}),
			Record{Sequence: 3, OccurredAt: uk(10, 9, 0), Event: InfectionTestRecorded{Test: InfectionTest{Type: TestTypePCR, TakenAt: uk(10, 8, 0), Result: TestResultNegative}}},
			Record{Sequence: 4, OccurredAt: uk(10, 9, 0), Event: PathwayDecided{Pathway: PathwayP0Home, Inputs: map[string]string{"care_home_bound": "true"}}}),
			now: uk(12, 8, 0), want: []due{{uk(10, 18, 0), ClockSameDayDischarge, ClockWarning, 0}, {uk(11, 0, 0), ClockSameDayDischarge, ClockBreach, 0},
				{uk(11, 20, 0), ClockTestValidity, ClockWarning, 0}, {uk(12, 0, 0), ClockSameDayDischarge, ClockEscalation, 0}, {uk(12, 8, 0), ClockTestValidity, ClockBreach, 0}}},
	}
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
