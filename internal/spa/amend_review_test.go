package spa

import (
	"strings"
	"testing"
	"time"
)

// TestAmendmentsRouteOnlyWhatTheyChange covers amendments tried against
// the routing rules: each case failed before the fixes beside it.
func TestAmendmentsRouteOnlyWhatTheyChange(t *testing.T) {
	t.Parallel()
	careHome := func(d *Details) {
		d.AdmittedFrom, d.Needs = AdmittedFromHome, Needs{Mobility: MobilityHoist, CarersPerTransfer: 2, OngoingBeddedCare: true}
	}
	a1 := AssignmentIDFor(referralID, 1)
	amended := func(sub ReferralSubmitted, paths []string, adjust func(*Details)) ReferralAmended {
		d := sub.Details
		adjust(&d)
		return ReferralAmended{Details: d, Paths: paths, Reason: "ward update"}
	}
	t.Run("a field routing never reads re-decides nothing, whatever changed since", func(t *testing.T) {
		sub := submitted(careHome)
		r := referralAt(at(2026, 11, 30), sub,
			PathwayDecided{Pathway: PathwayP3CareHome, Service: ServiceCareHomeBed, Rule: RuleCareHome},
			OfferMade{AssignmentID: a1, ProviderODS: "VLAXL", Service: ServiceCareHomeBed},
			amended(sub, []string{"hospital_lead"}, func(d *Details) { d.HospitalLead.Phone = "020 7946 0000" }))
		// The overlay came in since the decision: asking the rules again
		// would hold the patient for a test and cancel the offer.
		pols := DefaultPolicies.Switch(true, time.Date(2026, 12, 1, 0, 0, 0, 0, london()))
		if step := NextStep(r, nil, pols, at(2026, 12, 2)); step.Event != nil {
			t.Fatalf("amending the hospital lead: %s (%s)", EventName(step.Event), step.Rule)
		}
	})
	t.Run("a hold a rule placed is released when the amendment removes its cause", func(t *testing.T) {
		for name, adjust := range map[string]func(*Details){
			"admitted from home": func(d *Details) {
				d.AdmittedFrom, d.Needs = AdmittedFromHome, Needs{Mobility: MobilityIndependent, CareCallsPerDay: 2}
			},
			"end of life": func(d *Details) { d.EndOfLife = EndOfLife{FastTrack: true, PreferredPlace: PlaceOfCareHome} },
		} {
			sub := submitted(fromCareHome)
			r := referralAt(at(2021, 3, 1), sub,
				ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay},
				amended(sub, []string{"admitted_from", "needs", "end_of_life"}, adjust))
			step := NextStep(r, nil, DefaultPolicies, at(2021, 3, 2))
			if rel, ok := step.Event.(HoldReleased); !ok || rel.Reason != HoldReasonAwaitingTest || step.Rule != RuleAmended {
				t.Fatalf("%s: step %#v (%s), want the test hold released", name, step.Event, step.Rule)
			}
		}
		// A person's hold is theirs to release.
		sub := submitted(fromCareHome)
		r := referralAt(at(2021, 3, 1), sub, ReferralHeld{Reason: HoldReasonAwaitingTest},
			amended(sub, []string{"admitted_from"}, func(d *Details) { d.AdmittedFrom = AdmittedFromHome }))
		if step := NextStep(r, nil, DefaultPolicies, at(2021, 3, 2)); step.Rule == RuleAmended {
			t.Fatalf("a coordinator's hold released by the router: %#v", step.Event)
		}
	})
	t.Run("no routing once the patient has left", func(t *testing.T) {
		sub := submitted(func(d *Details) { d.AdmittedFrom, d.Needs = AdmittedFromHome, Needs{Mobility: MobilityIndependent} })
		r := referralAt(at(2026, 11, 30), sub,
			PathwayDecided{Pathway: PathwayP0Home, Rule: RuleWardLed},
			PatientLeftHospital{LeftAt: at(2026, 11, 30)},
			amended(sub, []string{"needs"}, func(d *Details) { d.Needs.CareCallsPerDay = 2 }))
		if step := NextStep(r, nil, DefaultPolicies, at(2026, 12, 1)); step.Event != nil {
			t.Fatalf("after the patient left: %s (%s)", EventName(step.Event), step.Rule)
		}
	})
	t.Run("an amendment dated before the submission is refused", func(t *testing.T) {
		sub := submitted(careHome)
		r := referralAt(at(2026, 11, 30), sub)
		d := sub.Details
		d.Risks.Falls = true
		_, err := DecideAmend(r, AmendReferral{ReferralID: referralID, Details: d, Paths: []string{"risks"}, Reason: "fell"}, at(2021, 6, 1))
		if got := violationsOf(err); len(got) != 1 || !strings.HasPrefix(got[0], "occurred_at: ") {
			t.Fatalf("backdated amendment: %v", err)
		}
	})
}

// TestDelayedFactsDoNotMoveRoutingBack: an event dated before the last
// fact (a delayed record) leaves the routing's event time where it was,
// so a second stay in the queue starts when it starts, not with the first.
func TestDelayedFactsDoNotMoveRoutingBack(t *testing.T) {
	t.Parallel()
	var r Referral
	seq := uint64(0)
	apply := func(at time.Time, e Event) {
		seq++
		r.Apply(Record{Sequence: seq, AggregateID: referralID, OccurredAt: at, Event: e})
	}
	apply(uk(10, 8, 0), submitted(func(*Details) {}))
	apply(uk(10, 13, 0), CriteriaToResideRecorded{DischargeReadyDate: "2024-01-10"})
	apply(uk(10, 9, 0), InfectionTestRecorded{Test: InfectionTest{Type: TestTypePCR, TakenAt: uk(10, 7, 0), Result: TestResultNegative}})
	if !r.FactsAt.Equal(uk(10, 13, 0)) {
		t.Fatalf("FactsAt %v after a fact dated 09:00, want 13:00", r.FactsAt)
	}
}

// TestPolicyStepAfterADayMissed: a policy in force for one day only
// still has its step when the scheduler first looks the day after.
func TestPolicyStepAfterADayMissed(t *testing.T) {
	t.Parallel()
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, london()) }
	on := DefaultPolicies.WithSwitches([]PolicySwitched{{Rule: PolicyRuleInfectionOverlay, On: true, EffectiveFrom: "2026-11-01"}})
	heldAt := time.Date(2026, 11, 20, 9, 0, 0, 0, london())
	r := referralAt(heldAt, submitted(func(d *Details) {
		fromCareHome(d)
		d.InfectionTest = nil
	}), ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay})
	ps := on.WithSwitches([]PolicySwitched{
		{Rule: PolicyRuleInfectionOverlay, On: false, EffectiveFrom: "2026-11-22"},
		{Rule: PolicyRuleInfectionOverlay, On: true, EffectiveFrom: "2026-11-23"}})
	got, ok := PolicyStep(r, ps, day(23).Add(10*time.Hour))
	if !ok || !got.Equal(day(22)) {
		t.Fatalf("first look on the 23rd: %v %v, want the 22nd's step", got, ok)
	}
}
