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

// TestAmendedHoldsKeepTheirMeaning: a housing hold an amendment made moot
// does not count as housing found, and an amendment the rules held the
// referral on does not claim the hold's later release.
func TestAmendedHoldsKeepTheirMeaning(t *testing.T) {
	t.Parallel()
	router := Actor{Role: ActorRouter}
	var r Referral
	seq := uint64(0)
	apply := func(actor Actor, e Event) {
		seq++
		r.Apply(Record{Sequence: seq, AggregateID: referralID, OccurredAt: at(2024, 1, 10).Add(time.Duration(seq) * time.Minute), Actor: actor, Event: e})
	}
	sub := submitted(func(d *Details) { d.AdmittedFrom = AdmittedFromOther })
	apply(Actor{}, sub)
	step := NextStep(r, nil, DefaultPolicies, r.FactsAt)
	if h, ok := step.Event.(ReferralHeld); !ok || h.Reason != HoldReasonHousing {
		t.Fatalf("not admitted from a home: %#v", step.Event)
	}
	apply(router, step.Event)
	d := sub.Details
	d.AdmittedFrom = AdmittedFromCareHome
	apply(Actor{}, ReferralAmended{Details: d, Paths: []string{"admitted_from"}, Reason: "lives in a care home"})
	step = NextStep(r, nil, DefaultPolicies, r.FactsAt)
	if _, ok := step.Event.(HoldReleased); !ok || step.Rule != RuleAmended {
		t.Fatalf("amended to a care home: %#v (%s)", step.Event, step.Rule)
	}
	apply(router, step.Event)
	step = NextStep(r, nil, DefaultPolicies, r.FactsAt)
	if pd, ok := step.Event.(PathwayDecided); !ok || pd.Rule != RuleWardLed || pd.ReasonCode != "back-to-same-care-home" {
		t.Fatalf("after the moot housing hold: %#v, want back to the same care home", step.Event)
	}

	// Amended before the overlay held it for a test: the test's arrival
	// releases it under the overlay's rule.
	r, seq = Referral{}, 0
	sub = submitted(func(d *Details) {
		fromCareHome(d)
		d.InfectionTest = nil
	})
	apply(Actor{}, sub)
	d = sub.Details
	d.Needs.CareCallsPerDay = 1
	apply(Actor{}, ReferralAmended{Details: d, Paths: []string{"needs"}, Reason: "reassessed"})
	step = NextStep(r, nil, DefaultPolicies, at(2021, 3, 1))
	if h, ok := step.Event.(ReferralHeld); !ok || h.Reason != HoldReasonAwaitingTest {
		t.Fatalf("under the overlay: %#v", step.Event)
	}
	apply(router, step.Event)
	apply(Actor{}, InfectionTestRecorded{Test: InfectionTest{Type: TestTypePCR, TakenAt: r.FactsAt, Result: TestResultNegative}})
	step = NextStep(r, nil, DefaultPolicies, r.FactsAt)
	if _, ok := step.Event.(HoldReleased); !ok || step.Rule != RuleInfectionOverlay {
		t.Fatalf("a valid test: %#v (%s), want released by the overlay's rule", step.Event, step.Rule)
	}
}

// TestSwitchesOnOneDay: switches from the same day are versions of their
// own, and a switch reports the later ones it replaces.
func TestSwitchesOnOneDay(t *testing.T) {
	t.Parallel()
	var l PolicyLog
	day := time.Date(2026, 12, 4, 0, 0, 0, 0, london())
	for i, s := range []struct {
		on   bool
		from string
		at   time.Time
	}{{false, "2026-12-20", day.Add(8 * time.Hour)}, {true, "2026-12-04", day.Add(9 * time.Hour)}, {false, "2026-12-04", day.Add(11 * time.Hour)}, {true, "2026-12-04", day.Add(14 * time.Hour)}} {
		e, err := DecideSwitchPolicy(l, SwitchPolicy{Rule: PolicyRuleInfectionOverlay, On: s.on, EffectiveFrom: s.from, Reason: "guidance"}, s.at)
		if err != nil || e == nil {
			t.Fatalf("switch %d: %v %v", i, e, err)
		}
		l.Apply(Record{Sequence: uint64(i + 1), Event: e})
		if i == 1 {
			if sup := l.Superseded(); len(sup) != 1 || sup[0].EffectiveFrom != "2026-12-20" {
				t.Fatalf("the switch from today replaces the one for the 20th: %+v", sup)
			}
		}
	}
	seen := map[string]bool{}
	for _, p := range DefaultPolicies.WithSwitches(l.Switches) {
		if seen[p.Version] {
			t.Fatalf("version %s twice", p.Version)
		}
		seen[p.Version] = true
	}
	if p := DefaultPolicies.WithSwitches(l.Switches).At(day.Add(10 * time.Hour)); p.Version != "2026-12-04T09:00:00-overlay-on" {
		t.Fatalf("in force at 10:00: %+v", p)
	}
}
