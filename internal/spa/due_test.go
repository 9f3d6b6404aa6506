package spa

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestNextAlert: NextAlert is the instant DueAlerts first has something
// to raise, and with AllDay it is never later than with the SPA's hours
// (the read model's index is a safe lower bound).
func TestNextAlert(t *testing.T) {
	t.Parallel()
	readyAt := func(at time.Time, adjust func(*Details)) Referral {
		e := submitted(adjust)
		e.DischargeReadyDate = LocalDate(at)
		return Replay(recs(at, e))
	}
	urgent := func(d *Details) { d.Needs.UrgentCommunityResponse = true }
	tests := []struct {
		name    string
		r       Referral
		want    time.Time
		allDay  time.Time
		nothing bool
	}{
		{name: "same day: the warning at 18:00", r: readyAt(uk(10, 9, 0), func(*Details) {}), want: uk(10, 18, 0), allDay: uk(10, 18, 0)},
		{name: "urgent response asked at 21:00: 09:30 next day in hours, 22:30 all day", r: func() Referral {
			e := submitted(urgent)
			e.DischargeReadyDate = ""
			return Replay(recs(uk(10, 21, 0), e))
		}(),
			want: uk(11, 9, 30), allDay: uk(10, 22, 30)},
		{name: "an alert raised: the next level", r: func() Referral {
			r := readyAt(uk(10, 9, 0), func(*Details) {})
			r.Apply(Record{Sequence: 2, OccurredAt: uk(10, 18, 0), Event: ClockAlerted{Clock: ClockSameDayDischarge, Level: ClockWarning, StartedAt: uk(10, 0, 0)}})
			return r
		}(), want: uk(11, 0, 0), allDay: uk(11, 0, 0)},
		{name: "an open hold and every delay flag raised: nothing", r: func() Referral {
			r := readyAt(uk(10, 9, 0), func(*Details) {})
			r.Apply(Record{Sequence: 2, OccurredAt: uk(10, 10, 0), Event: ReferralHeld{Reason: HoldReasonSafeguarding}})
			for i, d := range DelayFlagDays {
				r.Apply(Record{Sequence: uint64(3 + i), OccurredAt: uk(10, 10, 0), Event: ClockAlerted{Clock: ClockSameDayDischarge, Level: ClockDelayFlag, DelayDays: d, StartedAt: uk(10, 0, 0)}})
			}
			return r
		}(), nothing: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := NextAlert(tt.r, DefaultOperatingHours)
			all, allOK := NextAlert(tt.r, AllDay)
			if tt.nothing {
				if ok || allOK {
					t.Fatalf("next alert at %s (all day %s), want none", got, all)
				}
				if due := DueAlerts(tt.r, DefaultOperatingHours, uk(10, 0, 0).AddDate(1, 0, 0)); len(due) != 0 {
					t.Fatalf("none next, yet %d due a year on", len(due))
				}
				return
			}
			if !ok || !got.Equal(tt.want) || !allOK || !all.Equal(tt.allDay) {
				t.Fatalf("next alert %s %v, all day %s %v; want %s, %s", got, ok, all, allOK, tt.want, tt.allDay)
			}
			if due := DueAlerts(tt.r, DefaultOperatingHours, got.Add(-time.Nanosecond)); len(due) != 0 {
				t.Fatalf("%d due just before the next alert", len(due))
			}
			if due := DueAlerts(tt.r, DefaultOperatingHours, got); len(due) == 0 || !due[0].At.Equal(got) {
				t.Fatalf("due at the next alert: %v", due)
			}
		})
	}
}

// TestPolicyBoundHoldsWheneverPolicyStep walks many random referral
// histories (the router's own steps, amendments, criteria, tests, holds,
// providers' answers, discharges) and checks at every state that a
// referral PolicyStep would route under some policies at some instant is
// PolicyBound: the scheduler asks PolicyStep of those only.
func TestPolicyBoundHoldsWheneverPolicyStep(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(31, 7))
	policies := []Policies{
		DefaultPolicies,
		DefaultPolicies.WithSwitches([]PolicySwitched{{Rule: PolicyRuleInfectionOverlay, On: true, EffectiveFrom: "2024-03-01"}}),
		DefaultPolicies.WithSwitches([]PolicySwitched{{Rule: PolicyRuleInfectionOverlay, On: false, EffectiveFrom: "2021-02-01"},
			{Rule: PolicyRuleInfectionOverlay, On: true, EffectiveFrom: "2021-06-01"}}),
	}
	adjusts := []func(*Details){
		func(*Details) {},
		fromCareHome,
		func(d *Details) { fromCareHome(d); d.InfectionTest = nil },
		func(d *Details) { d.AdmittedFrom = AdmittedFromOther },
		func(d *Details) { d.Needs.OngoingBeddedCare = true },
		func(d *Details) { d.Needs.ShortTermBedBasedCare = true },
		func(d *Details) { d.Needs.UrgentCommunityResponse = true },
		func(d *Details) { d.EndOfLife = EndOfLife{FastTrack: true, PreferredPlace: PlaceOfCareHospice} },
		func(d *Details) { d.Needs = Needs{Mobility: MobilityIndependent} },
	}
	bound, stepped := 0, 0
	for range 1500 {
		at := time.Date(2020, 3, 1, 9, 0, 0, 0, london()).Add(time.Duration(rng.IntN(1400*24)) * time.Hour)
		pols := policies[rng.IntN(len(policies))]
		e := submitted(adjusts[rng.IntN(len(adjusts))])
		e.DischargeReadyDate = LocalDate(at)
		if rng.IntN(4) == 0 {
			e.DischargeReadyDate = ""
		}
		var r Referral
		seq := uint64(0)
		apply := func(ev Event, actor Actor) {
			seq++
			r.Apply(Record{Sequence: seq, AggregateID: referralID, OccurredAt: at, Actor: actor, Event: ev})
		}
		apply(e, Actor{})
		for range 14 {
			if r.Status != StatusWithdrawn && r.Status != StatusCompleted {
				for _, ps := range policies {
					for _, now := range []time.Time{at.Add(time.Hour), at.AddDate(0, 3, 0), at.AddDate(2, 0, 0), at.AddDate(6, 0, 0)} {
						if _, ok := PolicyStep(r, ps, now); ok {
							stepped++
							if !PolicyBound(r) {
								t.Fatalf("PolicyStep at %s but not PolicyBound: %+v", now, r)
							}
						}
					}
				}
				if PolicyBound(r) {
					bound++
				}
			}
			at = at.Add(time.Duration(rng.IntN(24*60)) * time.Hour / 8)
			live := r.LiveAssignment()
			switch n := rng.IntN(12); {
			case n < 4: // the router's step, with or without a provider
				var providers []Provider
				if rng.IntN(2) == 0 && r.Service != ServiceUnspecified {
					providers = []Provider{provider("STP01", r.Service, 2, nil)}
				}
				if s := NextStep(r, providers, pols, at); s.Event != nil {
					apply(s.Event, Actor{Role: ActorRouter})
				}
			case n == 4:
				d := r.Details
				d.AdmittedFrom = []AdmittedFrom{AdmittedFromHome, AdmittedFromCareHome, AdmittedFromOther}[rng.IntN(3)]
				d.Needs.OngoingBeddedCare = rng.IntN(3) == 0
				apply(ReferralAmended{Details: d, Paths: []string{"admitted_from", "needs"}, Reason: "reassessed"}, Actor{})
			case n == 5:
				if rng.IntN(2) == 0 {
					apply(CriteriaToResideRecorded{CriteriaMet: []Criterion{CriterionNEWS2Above3}}, Actor{})
				} else {
					apply(CriteriaToResideRecorded{DischargeReadyDate: LocalDate(at)}, Actor{})
				}
			case n == 6:
				apply(InfectionTestRecorded{Test: InfectionTest{Type: TestTypePCR, TakenAt: at.Add(-time.Duration(rng.IntN(96)) * time.Hour),
					Result: []TestResult{TestResultNegative, TestResultPositive}[rng.IntN(2)]}}, Actor{})
			case n == 7:
				if r.Hold == HoldReasonUnspecified {
					apply(ReferralHeld{Reason: HoldReasonSafeguarding}, Actor{})
				} else if r.HoldRule == "" {
					apply(HoldReleased{Reason: r.Hold}, Actor{})
				}
			case n <= 9 && live != nil:
				to := []TaskStatus{TaskAccepted, TaskInProgress, TaskCompleted, TaskRejected}[rng.IntN(4)]
				apply(AssignmentStatusChanged{AssignmentID: live.ID, Status: to}, Actor{})
			case n == 10 && r.LeftHospitalAt.IsZero():
				apply(PatientLeftHospital{LeftAt: at}, Actor{})
			case n == 11 && rng.IntN(4) == 0:
				apply(ReferralWithdrawn{Reason: WithdrawalReasonNoLongerNeeded}, Actor{})
			}
		}
	}
	if stepped == 0 || bound == 0 {
		t.Fatalf("%d policy steps among %d bound states: the walk exercises nothing", stepped, bound)
	}
	t.Logf("%d policy steps, %d states bound", stepped, bound)
}
