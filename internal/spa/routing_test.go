package spa

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func at(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 10, 0, 0, 0, time.UTC) }

// referralAt builds a referral from events that all occurred at t.
func referralAt(t time.Time, events ...Event) Referral {
	var r Referral
	for i, e := range events {
		r.Apply(Record{Sequence: uint64(i + 1), AggregateID: referralID, OccurredAt: t, Event: e})
	}
	return r
}

// submitted returns a ready referral's submission, details adjusted.
func submitted(adjust func(d *Details)) ReferralSubmitted {
	d := validDetails()
	adjust(&d)
	return ReferralSubmitted{RequestID: requestID, Details: d, DischargeReadyDate: "2020-05-01"}
}

func provider(ods string, s Service, available int32, adjust func(p *ProviderDetails)) Provider {
	d := ProviderDetails{ODS: ods, Name: ods, Boroughs: []string{"Bromley"}, Services: []Service{s}}
	if adjust != nil {
		adjust(&d)
	}
	var p Provider
	p.Apply(Record{Sequence: 1, Event: ProviderRegistered{Details: d}})
	p.Apply(Record{Sequence: 2, Event: CapacityUpdated{Capacity: []Capacity{{Service: s, Available: available, Open: true, AsOf: now}}}})
	return p
}

func positiveTest(taken time.Time) InfectionTestRecorded {
	return InfectionTestRecorded{Test: InfectionTest{Type: TestTypePCR, TakenAt: taken, Result: TestResultPositive}}
}

func fromCareHome(d *Details) {
	d.AdmittedFrom, d.Needs = AdmittedFromCareHome, Needs{Mobility: MobilityHoist, CarersPerTransfer: 2}
}

func TestNextStepRules(t *testing.T) {
	t.Parallel()
	homeInputs := map[string]string{"admitted_from": "home", "discharge_ready_date": "2020-05-01", "ongoing_bedded_care": "false", "short_term_bed_based_care": "false"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	careHomeInputs := with(homeInputs, "admitted_from", "care-home", "care_home_bound", "true")
	tests := []struct {
		name       string
		at         time.Time
		events     []Event
		want       Event
		wantRule   string
		wantPolicy string
	}{
		{name: "1 criteria to reside: no date, no decision", at: at(2024, 1, 10),
			events: []Event{func() Event { e := submitted(func(*Details) {}); e.DischargeReadyDate = ""; return e }()}, wantPolicy: "2023.1"},
		{name: "1 criteria met again after a decision: no offer", at: at(2024, 1, 10),
			events: []Event{submitted(func(*Details) {}), PathwayDecided{Pathway: PathwayP1HomeFirst, Service: ServiceHomeCareReablement},
				CriteriaToResideRecorded{CriteriaMet: []Criterion{CriterionOxygen}, AssessedOn: "2024-01-10"}}, wantPolicy: "2023.1"},
		{name: "2 end of life at home: hospice at home", at: at(2024, 1, 10),
			events: []Event{submitted(func(d *Details) { d.EndOfLife = EndOfLife{FastTrack: true, PreferredPlace: PlaceOfCareHome} })},
			want: PathwayDecided{Pathway: PathwayEndOfLife, Service: ServiceHospiceAtHome, Rule: RuleEndOfLife, ReasonCode: "fast-track",
				Inputs: with(homeInputs, "preferred_place", "home")}, wantRule: RuleEndOfLife, wantPolicy: "2023.1"},
		{name: "2 end of life, hospice preferred: hospice bed, before the overlay", at: at(2021, 1, 10),
			events: []Event{submitted(func(d *Details) {
				fromCareHome(d)
				d.EndOfLife = EndOfLife{FastTrack: true, PreferredPlace: PlaceOfCareHospice}
			})},
			want: PathwayDecided{Pathway: PathwayEndOfLife, Service: ServiceHospiceBed, Rule: RuleEndOfLife, ReasonCode: "fast-track",
				Inputs: with(homeInputs, "admitted_from", "care-home", "preferred_place", "hospice")}, wantRule: RuleEndOfLife, wantPolicy: "2020.1-infection-overlay"},
		{name: "2 end of life in a nursing home: care home bed", at: at(2024, 1, 10),
			events: []Event{submitted(func(d *Details) { d.EndOfLife = EndOfLife{FastTrack: true, PreferredPlace: PlaceOfCareNursingHome} })},
			want: PathwayDecided{Pathway: PathwayEndOfLife, Service: ServiceCareHomeBed, Rule: RuleEndOfLife, ReasonCode: "fast-track",
				Inputs: with(homeInputs, "preferred_place", "nursing-home")}, wantRule: RuleEndOfLife, wantPolicy: "2023.1"},
		{name: "3 overlay 2020: positive care home resident to a designated bed, 14 days", at: at(2020, 6, 1),
			events: []Event{submitted(fromCareHome), positiveTest(at(2020, 5, 31))},
			want: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceDesignatedStepDownBed, Rule: RuleInfectionOverlay, ReasonCode: "infection-positive-designated-bed",
				IsolationDays: 14, Inputs: with(careHomeInputs, "test", "positive taken 2020-05-31T10:00:00Z")}, wantRule: RuleInfectionOverlay, wantPolicy: "2020.1-infection-overlay"},
		{name: "3 overlay 2022: 10 days", at: at(2022, 3, 1),
			events: []Event{submitted(fromCareHome), positiveTest(at(2022, 2, 28))},
			want: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceDesignatedStepDownBed, Rule: RuleInfectionOverlay, ReasonCode: "infection-positive-designated-bed",
				IsolationDays: 10, Inputs: with(careHomeInputs, "test", "positive taken 2022-02-28T10:00:00Z")}, wantRule: RuleInfectionOverlay, wantPolicy: "2022.1-isolation-10-days"},
		{name: "3 overlay: positive, bound for a care home from home", at: at(2020, 6, 1),
			events: []Event{submitted(func(d *Details) { d.Needs.OngoingBeddedCare = true }), positiveTest(at(2020, 5, 31))},
			want: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceDesignatedStepDownBed, Rule: RuleInfectionOverlay, ReasonCode: "infection-positive-designated-bed",
				IsolationDays: 14, Inputs: with(homeInputs, "ongoing_bedded_care", "true", "care_home_bound", "true", "test", "positive taken 2020-05-31T10:00:00Z")},
			wantRule: RuleInfectionOverlay, wantPolicy: "2020.1-infection-overlay"},
		{name: "3 overlay: a test older than 48h waits for a new one", at: at(2020, 6, 1),
			events: []Event{submitted(fromCareHome), positiveTest(at(2020, 5, 29))},
			want: ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay, Note: "a test taken within 48h0m0s before discharge is needed",
				Inputs: with(careHomeInputs, "test", "positive taken 2020-05-29T10:00:00Z")}, wantRule: RuleInfectionOverlay, wantPolicy: "2020.1-infection-overlay"},
		{name: "3 overlay: no test waits", at: at(2020, 6, 1), events: []Event{submitted(fromCareHome)},
			want: ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay, Note: "a test taken within 48h0m0s before discharge is needed",
				Inputs: with(careHomeInputs, "test", "none")}, wantRule: RuleInfectionOverlay, wantPolicy: "2020.1-infection-overlay"},
		{name: "3 overlay: negative, back to the same care home", at: at(2020, 6, 1),
			events: []Event{submitted(fromCareHome), InfectionTestRecorded{Test: InfectionTest{Type: TestTypeLateralFlow, TakenAt: at(2020, 6, 1).Add(-time.Hour), Result: TestResultNegative}}},
			want: PathwayDecided{Pathway: PathwayP0Home, Rule: RuleWardLed, ReasonCode: "back-to-same-care-home",
				Inputs: with(careHomeInputs, "test", "negative taken 2020-06-01T09:00:00Z")}, wantRule: RuleWardLed, wantPolicy: "2020.1-infection-overlay"},
		{name: "3 the day before the overlay: no overlay", at: time.Date(2020, 4, 14, 22, 0, 0, 0, time.UTC),
			events: []Event{submitted(fromCareHome), positiveTest(at(2020, 4, 14))},
			want: PathwayDecided{Pathway: PathwayP0Home, Rule: RuleWardLed, ReasonCode: "back-to-same-care-home",
				Inputs: with(homeInputs, "admitted_from", "care-home")}, wantRule: RuleWardLed, wantPolicy: "2019.1"},
		{name: "3 the first day of the overlay (UK midnight)", at: time.Date(2020, 4, 14, 23, 0, 0, 0, time.UTC),
			events: []Event{submitted(fromCareHome), positiveTest(at(2020, 4, 14))},
			want: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceDesignatedStepDownBed, Rule: RuleInfectionOverlay, ReasonCode: "infection-positive-designated-bed",
				IsolationDays: 14, Inputs: with(careHomeInputs, "test", "positive taken 2020-04-14T10:00:00Z")}, wantRule: RuleInfectionOverlay, wantPolicy: "2020.1-infection-overlay"},
		{name: "3 the overlay ended in 2023", at: at(2023, 1, 1),
			events: []Event{submitted(fromCareHome), positiveTest(at(2022, 12, 31))},
			want: PathwayDecided{Pathway: PathwayP0Home, Rule: RuleWardLed, ReasonCode: "back-to-same-care-home",
				Inputs: with(homeInputs, "admitted_from", "care-home")}, wantRule: RuleWardLed, wantPolicy: "2023.1"},
		{name: "4 home first", at: at(2024, 1, 10), events: []Event{submitted(func(*Details) {})},
			want:     PathwayDecided{Pathway: PathwayP1HomeFirst, Service: ServiceHomeCareReablement, Rule: RuleHomeFirst, ReasonCode: "home-with-support", Inputs: homeInputs},
			wantRule: RuleHomeFirst, wantPolicy: "2023.1"},
		{name: "4a an urgent community response asked for", at: at(2024, 1, 10), events: []Event{submitted(func(d *Details) { d.Needs.UrgentCommunityResponse = true })},
			want: PathwayDecided{Pathway: PathwayP1HomeFirst, Service: ServiceUrgentCommunityResponse, Rule: RuleUrgentResponse, ReasonCode: "urgent-2h-response",
				Inputs: with(homeInputs, "urgent_community_response", "true")}, wantRule: RuleUrgentResponse, wantPolicy: "2023.1"},
		{name: "4a an urgent community response back at the care home", at: at(2024, 1, 10),
			events: []Event{submitted(func(d *Details) { fromCareHome(d); d.Needs.UrgentCommunityResponse = true })},
			want: PathwayDecided{Pathway: PathwayP1HomeFirst, Service: ServiceUrgentCommunityResponse, Rule: RuleUrgentResponse, ReasonCode: "urgent-2h-response",
				Inputs: with(with(homeInputs, "admitted_from", "care-home"), "urgent_community_response", "true")}, wantRule: RuleUrgentResponse, wantPolicy: "2023.1"},
		{name: "4 home, no new support: ward-led pathway 0", at: at(2024, 1, 10),
			events:   []Event{submitted(func(d *Details) { d.Needs = Needs{Mobility: MobilityIndependent, SafeAloneOvernight: true} })},
			want:     PathwayDecided{Pathway: PathwayP0Home, Rule: RuleWardLed, ReasonCode: "home-no-new-support", Inputs: homeInputs},
			wantRule: RuleWardLed, wantPolicy: "2023.1"},
		{name: "5 short-term bed: step-down", at: at(2024, 1, 10), events: []Event{submitted(func(d *Details) { d.Needs.ShortTermBedBasedCare = true })},
			want: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceStepDownBed, Rule: RuleStepDown, ReasonCode: "short-term-24h-bed",
				Inputs: with(homeInputs, "short_term_bed_based_care", "true")}, wantRule: RuleStepDown, wantPolicy: "2023.1"},
		{name: "6 ongoing 24h care: care home with a reason", at: at(2024, 1, 10), events: []Event{submitted(func(d *Details) { d.Needs.OngoingBeddedCare = true })},
			want: PathwayDecided{Pathway: PathwayP3CareHome, Service: ServiceCareHomeBed, Rule: RuleCareHome, ReasonCode: "ongoing-24h-care",
				Inputs: with(homeInputs, "ongoing_bedded_care", "true")}, wantRule: RuleCareHome, wantPolicy: "2023.1"},
		{name: "7 no home to go to: housing hold", at: at(2024, 1, 10), events: []Event{submitted(func(d *Details) { d.AdmittedFrom = AdmittedFromOther })},
			want:     ReferralHeld{Reason: HoldReasonHousing, Rule: RuleHold, Note: "not admitted from a home; housing needed", Inputs: with(homeInputs, "admitted_from", "other")},
			wantRule: RuleHold, wantPolicy: "2023.1"},
		{name: "7 housing found: home first", at: at(2024, 1, 10), events: []Event{submitted(func(d *Details) { d.AdmittedFrom = AdmittedFromOther }),
			ReferralHeld{Reason: HoldReasonHousing, Rule: RuleHold}, HoldReleased{Reason: HoldReasonHousing}},
			want: PathwayDecided{Pathway: PathwayP1HomeFirst, Service: ServiceHomeCareReablement, Rule: RuleHomeFirst, ReasonCode: "home-with-support",
				Inputs: with(homeInputs, "admitted_from", "other")}, wantRule: RuleHomeFirst, wantPolicy: "2023.1"},
		{name: "7 a coordinator's hold stops routing", at: at(2024, 1, 10),
			events: []Event{submitted(func(*Details) {}), ReferralHeld{Reason: HoldReasonFundingDispute}}, wantPolicy: "2023.1"},
		{name: "3 the overlay over: the wait for a test is released", at: at(2023, 1, 1),
			events: []Event{submitted(fromCareHome), ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay}},
			want:   HoldReleased{Reason: HoldReasonAwaitingTest, Note: "the policy in force (2023.1) no longer requires a test"}, wantRule: RuleInfectionOverlay, wantPolicy: "2023.1"},
		{name: "3 the overlay over while the patient is not ready: the wait is released too", at: at(2023, 1, 1),
			events: []Event{submitted(fromCareHome), ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay},
				CriteriaToResideRecorded{CriteriaMet: []Criterion{CriterionOxygen}, AssessedOn: "2022-12-31"}},
			want: HoldReleased{Reason: HoldReasonAwaitingTest, Note: "the policy in force (2023.1) no longer requires a test"}, wantRule: RuleInfectionOverlay, wantPolicy: "2023.1"},
		{name: "3 a valid test releases the wait", at: at(2020, 6, 1),
			events: []Event{submitted(fromCareHome), ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay}, positiveTest(at(2020, 6, 1))},
			want:   HoldReleased{Reason: HoldReasonAwaitingTest, Note: "a test within the validity window arrived"}, wantRule: RuleInfectionOverlay, wantPolicy: "2020.1-infection-overlay"},
		{name: "ward-led referrals get no offer", at: at(2024, 1, 10),
			events: []Event{submitted(func(*Details) {}), PathwayDecided{Pathway: PathwayP0Home}}, wantPolicy: "2023.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			step := NextStep(referralAt(tt.at, tt.events...), nil, DefaultPolicies, tt.at)
			if diff := cmp.Diff(tt.want, step.Event); diff != "" {
				t.Fatalf("step (-want +got):\n%s", diff)
			}
			if step.Rule != tt.wantRule || step.Policy.Version != tt.wantPolicy {
				t.Fatalf("rule %q policy %q; want %q %q", step.Rule, step.Policy.Version, tt.wantRule, tt.wantPolicy)
			}
		})
	}
}

func TestNextStepOffers(t *testing.T) {
	t.Parallel()
	decided := []Event{submitted(func(*Details) {}), PathwayDecided{Pathway: PathwayP1HomeFirst, Service: ServiceHomeCareReablement, Rule: RuleHomeFirst}}
	home := ServiceHomeCareReablement
	a1 := AssignmentIDFor(referralID, 1)
	a2 := AssignmentIDFor(referralID, 2)
	tests := []struct {
		name      string
		events    []Event
		providers []Provider
		want      Change
	}{
		{name: "trusted assessor first", events: decided, providers: []Provider{
			provider("NQR01", home, 5, nil), provider("NQR02", home, 1, func(p *ProviderDetails) { p.TrustedAssessor = true })},
			want: Change{Event: OfferMade{AssignmentID: a1, ProviderODS: "NQR02", Service: home, Inputs: map[string]string{"candidates": "NQR02,NQR01", "borough": "Bromley"}},
				ProviderODS: "NQR02", Provider: CapacityReserved{Service: home, ReferralID: referralID, AssignmentID: a1, Tracked: true}, GuardProvider: true}},
		{name: "then the most units free, then ODS code", events: decided, providers: []Provider{
			provider("NQR03", home, 2, nil), provider("NQR01", home, 5, nil), provider("NQR02", home, 5, nil)},
			want: Change{Event: OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home, Inputs: map[string]string{"candidates": "NQR01,NQR02,NQR03", "borough": "Bromley"}},
				ProviderODS: "NQR01", Provider: CapacityReserved{Service: home, ReferralID: referralID, AssignmentID: a1, Tracked: true}, GuardProvider: true}},
		{name: "no room, closed, other borough, other service: the no-capacity queue", events: decided, providers: []Provider{
			provider("NQR01", home, 0, nil),
			func() Provider {
				p := provider("NQR02", home, 3, nil)
				p.Capacity[0].Open = false
				return p
			}(),
			provider("NQR03", home, 3, func(p *ProviderDetails) { p.Boroughs = []string{"Lewisham"} }),
			provider("NQR04", ServiceStepDownBed, 3, nil)},
			want: Change{Event: AwaitingCapacity{Service: home, Borough: "Bromley"}}},
		{name: "already in the queue: nothing", events: append(decided[:2:2], AwaitingCapacity{Service: home, Borough: "Bromley"}), want: Change{}},
		{name: "after a decline, the next provider", events: append(decided[:2:2],
			OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home}, AssignmentStatusChanged{AssignmentID: a1, Status: TaskRejected, Reason: "no carers"}),
			providers: []Provider{provider("NQR01", home, 5, nil), provider("NQR02", home, 1, nil)},
			want: Change{Event: OfferMade{AssignmentID: a2, ProviderODS: "NQR02", Service: home, Inputs: map[string]string{"candidates": "NQR02", "borough": "Bromley"}},
				ProviderODS: "NQR02", Provider: CapacityReserved{Service: home, ReferralID: referralID, AssignmentID: a2, Tracked: true}, GuardProvider: true}},
		{name: "a provider that declined is offered again once it declares after the decline", events: append(decided[:2:2],
			OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home}, AssignmentStatusChanged{AssignmentID: a1, Status: TaskRejected, Reason: "no bed until Friday"}),
			providers: []Provider{func() Provider {
				p := provider("NQR01", home, 5, nil)
				p.Capacity[0].DeclaredSeq = 99 // Friday's count
				return p
			}(), provider("NQR02", home, 1, nil)},
			want: Change{Event: OfferMade{AssignmentID: a2, ProviderODS: "NQR01", Service: home, Inputs: map[string]string{"candidates": "NQR01,NQR02", "borough": "Bromley"}},
				ProviderODS: "NQR01", Provider: CapacityReserved{Service: home, ReferralID: referralID, AssignmentID: a2, Tracked: true}, GuardProvider: true}},
		{name: "a live offer: nothing", events: append(decided[:2:2], OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home}),
			providers: []Provider{provider("NQR02", home, 5, nil)}, want: Change{}},
		{name: "positive patients only to homes that take them", events: []Event{
			submitted(func(d *Details) { d.Needs.OngoingBeddedCare = true }), positiveTest(at(2024, 1, 1)),
			PathwayDecided{Pathway: PathwayP3CareHome, Service: ServiceCareHomeBed}},
			providers: []Provider{provider("VLAXL", ServiceCareHomeBed, 9, nil), provider("VLAXM", ServiceCareHomeBed, 1, func(p *ProviderDetails) { p.AcceptsInfectionPositive = true })},
			want: Change{Event: OfferMade{AssignmentID: a1, ProviderODS: "VLAXM", Service: ServiceCareHomeBed, Inputs: map[string]string{"candidates": "VLAXM", "borough": "Bromley"}},
				ProviderODS: "VLAXM", Provider: CapacityReserved{Service: ServiceCareHomeBed, ReferralID: referralID, AssignmentID: a1, Tracked: true}, GuardProvider: true}},
		{name: "withdrawn with a live offer: cancelled, unit released", events: append(decided[:2:2],
			OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home}, ReferralWithdrawn{Reason: WithdrawalReasonDied}),
			want: Change{Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskCancelled, Reason: "referral withdrawn", ProviderODS: "NQR01"},
				ProviderODS: "NQR01", Provider: CapacityReleased{Service: home, ReferralID: referralID, AssignmentID: a1, Reason: "cancelled: referral withdrawn"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := referralAt(at(2024, 1, 10), tt.events...)
			step := NextStep(r, tt.providers, DefaultPolicies, at(2024, 1, 10))
			if diff := cmp.Diff(tt.want, step.Change); diff != "" {
				t.Fatalf("change (-want +got):\n%s", diff)
			}
			// The router loads providers only when NeedsProviders says so:
			// otherwise they must not change the step.
			needs := NeedsProviders(r, DefaultPolicies, at(2024, 1, 10))
			if _, offer := step.Event.(OfferMade); offer && !needs {
				t.Fatal("an offer, yet NeedsProviders is false")
			}
			if without := NextStep(r, nil, DefaultPolicies, at(2024, 1, 10)); !needs && !cmp.Equal(without.Change, step.Change) {
				t.Fatalf("NeedsProviders is false, yet the providers change the step:\n%s", cmp.Diff(without.Change, step.Change))
			}
		})
	}
}

func TestDecideTransition(t *testing.T) {
	t.Parallel()
	a1 := AssignmentIDFor(referralID, 1)
	home := ServiceHomeCareReablement
	release := func(reason string) Change {
		return Change{ProviderODS: "NQR01", Provider: CapacityReleased{Service: home, ReferralID: referralID, AssignmentID: a1, Reason: reason}}
	}
	offered := []Event{submitted(func(*Details) {}), PathwayDecided{Pathway: PathwayP1HomeFirst, Service: home}, OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home}}
	moved := func(to ...TaskStatus) []Event {
		out := append([]Event(nil), offered...)
		for _, s := range to {
			out = append(out, AssignmentStatusChanged{AssignmentID: a1, Status: s})
		}
		return out
	}
	tests := []struct {
		name     string
		given    []Event
		to       TaskStatus
		reason   string
		release  string
		occupy   bool
		hold     bool
		wantKind Kind
	}{
		{name: "requested -> received", given: moved(), to: TaskReceived},
		{name: "requested -> accepted", given: moved(), to: TaskAccepted},
		{name: "received -> accepted", given: moved(TaskReceived), to: TaskAccepted},
		{name: "requested -> rejected releases the unit", given: moved(), to: TaskRejected, reason: "no carers", release: "rejected: no carers"},
		{name: "received -> rejected releases the unit", given: moved(TaskReceived), to: TaskRejected, reason: "no carers", release: "rejected: no carers"},
		{name: "accepted -> in-progress occupies the unit", given: moved(TaskAccepted), to: TaskInProgress, occupy: true},
		{name: "accepted -> cancelled releases the unit", given: moved(TaskAccepted), to: TaskCancelled, reason: "died", release: "cancelled: died"},
		{name: "accepted -> on-hold", given: moved(TaskAccepted), to: TaskOnHold},
		{name: "on-hold -> back to accepted", given: moved(TaskAccepted, TaskOnHold), to: TaskAccepted},
		{name: "on-hold from accepted -> not to in-progress", given: moved(TaskAccepted, TaskOnHold), to: TaskInProgress, wantKind: KindFailedPrecondition},
		// A unit taken up stays reserved until the provider counts again.
		{name: "in-progress -> completed keeps the unit taken", given: moved(TaskAccepted, TaskInProgress), to: TaskCompleted},
		{name: "in-progress -> failed keeps the unit taken", given: moved(TaskAccepted, TaskInProgress), to: TaskFailed, reason: "readmitted"},
		{name: "on-hold from in-progress -> cancelled keeps the unit taken", given: moved(TaskAccepted, TaskInProgress, TaskOnHold), to: TaskCancelled, reason: "died", occupy: true},
		{name: "on-hold from accepted -> cancelled releases the unit", given: moved(TaskAccepted, TaskOnHold), to: TaskCancelled, reason: "died", release: "cancelled: died"},
		{name: "in-progress -> on-hold holds the bed again", given: moved(TaskAccepted, TaskInProgress), to: TaskOnHold, hold: true},
		{name: "in-progress -> on-hold -> back takes the bed up again", given: moved(TaskAccepted, TaskInProgress, TaskOnHold), to: TaskInProgress, occupy: true},
		{name: "requested -> in-progress", given: moved(), to: TaskInProgress, wantKind: KindFailedPrecondition},
		{name: "requested -> completed", given: moved(), to: TaskCompleted, wantKind: KindFailedPrecondition},
		{name: "rejected -> accepted", given: moved(TaskRejected), to: TaskAccepted, wantKind: KindFailedPrecondition},
		{name: "completed -> cancelled", given: moved(TaskAccepted, TaskInProgress, TaskCompleted), to: TaskCancelled, reason: "x", wantKind: KindFailedPrecondition},
		{name: "cancelled -> received", given: moved(TaskCancelled), to: TaskReceived, wantKind: KindFailedPrecondition},
		{name: "rejected needs a reason", given: moved(), to: TaskRejected, wantKind: KindInvalid},
		{name: "requested is the SPA's", given: moved(TaskReceived), to: TaskRequested, wantKind: KindInvalid},
		{name: "unknown assignment", given: offered[:2], to: TaskAccepted, wantKind: KindNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := referralAt(now, tt.given...)
			got, err := DecideTransition(r, TransitionAssignment{AssignmentID: a1, To: tt.to, Reason: tt.reason}, now)
			if KindOf(err) != tt.wantKind || (err == nil) != (tt.wantKind == KindInternal) {
				t.Fatalf("err = %v, want kind %d", err, tt.wantKind)
			}
			if err != nil {
				if tt.wantKind == KindFailedPrecondition && !containsAll(err.Error(), r.Assignments[0].Status.String()) {
					t.Fatalf("error %q does not name the current status", err)
				}
				return
			}
			want := Change{Event: AssignmentStatusChanged{AssignmentID: a1, Status: tt.to, Reason: tt.reason, ProviderODS: "NQR01"}}
			if tt.release != "" {
				rel := release(tt.release)
				want.ProviderODS, want.Provider = rel.ProviderODS, rel.Provider
			}
			if tt.occupy {
				want.ProviderODS, want.Provider = "NQR01", CapacityOccupied{Service: home, ReferralID: referralID, AssignmentID: a1}
			}
			if tt.hold {
				want.ProviderODS, want.Provider = "NQR01", CapacityReserved{Service: home, ReferralID: referralID, AssignmentID: a1, Tracked: true}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("change (-want +got):\n%s", diff)
			}
		})
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func TestPolicySwitch(t *testing.T) {
	t.Parallel()
	on := DefaultPolicies.Switch(true, date(2026, 12, 1))
	if p := on.At(at(2026, 11, 30)); p.InfectionOverlay || p.Version != "2023.1" {
		t.Fatalf("before the switch: %+v", p)
	}
	p := on.At(at(2027, 3, 1))
	if !p.InfectionOverlay || p.Version != "2026-12-01-overlay-on" || p.IsolationDays != 10 || p.TestValidity != 48*time.Hour {
		t.Fatalf("after the switch: %+v", p)
	}
	off := DefaultPolicies.Switch(false, date(2021, 1, 1))
	if p := off.At(at(2022, 6, 1)); p.InfectionOverlay || p.Version != "2021-01-01-overlay-off" {
		t.Fatalf("switched off: %+v", p)
	}
	if p := off.At(at(2020, 6, 1)); !p.InfectionOverlay {
		t.Fatalf("before switching off: %+v", p)
	}
}

// TestPolicyStep: a referral waiting for a test when the overlay ends is
// routed at the instant the next policy came into force, once; a referral
// whose last fact is after that instant, or whose step the policy does not
// change, is not.
func TestPolicyStep(t *testing.T) {
	t.Parallel()
	held := referralAt(at(2022, 12, 30), submitted(fromCareHome), ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay})
	if got, ok := PolicyStep(held, DefaultPolicies, at(2023, 1, 5)); !ok || !got.Equal(date(2023, 1, 1)) {
		t.Fatalf("held over the end of the overlay: %s, %v; want %s", got, ok, date(2023, 1, 1))
	}
	if _, ok := PolicyStep(held, DefaultPolicies, at(2022, 12, 31)); ok {
		t.Fatal("a step while the overlay is still in force")
	}
	released := held
	released.Apply(Record{Sequence: 9, OccurredAt: date(2023, 1, 1), Event: HoldReleased{Reason: HoldReasonAwaitingTest}})
	if _, ok := PolicyStep(released, DefaultPolicies, at(2023, 1, 5)); ok {
		t.Fatal("a step again after the release")
	}
	coordinator := referralAt(at(2022, 12, 30), submitted(fromCareHome), ReferralHeld{Reason: HoldReasonSafeguarding})
	if _, ok := PolicyStep(coordinator, DefaultPolicies, at(2023, 1, 5)); ok {
		t.Fatal("a coordinator's hold released by a policy")
	}
}
