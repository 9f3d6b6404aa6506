package spa

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDecideAmend: an amendment changes only the named details, each
// validated as in a submission and reported under changes.<path>; a
// reason is required; details already so decide nothing; a referral
// that is withdrawn or missing cannot be amended.
func TestDecideAmend(t *testing.T) {
	t.Parallel()
	open := referralAt(now, submittedEvent("2026-11-20"))
	twoCarers := Needs{Mobility: MobilityHoist, CarersPerTransfer: 2, Equipment: []string{"hoist"}}
	tests := []struct {
		name     string
		r        Referral
		c        AmendReferral
		want     Event
		wantKind Kind
		fields   []string
	}{
		{name: "needs changed", r: open, c: AmendReferral{ReferralID: referralID, Paths: []string{"needs"}, Reason: "OT reassessment",
			Details: Details{Needs: twoCarers, AdmittedFrom: AdmittedFromOther}},
			want: func() Event {
				d := open.Details
				d.Needs = twoCarers
				return ReferralAmended{Details: d, Paths: []string{"needs"}, Reason: "OT reassessment"}
			}()},
		{name: "expected discharge date", r: open, c: AmendReferral{ReferralID: referralID, Paths: []string{"expected_discharge_date"}, Reason: "ward round",
			Details: Details{Episode: Episode{ExpectedDischargeDate: "2026-11-25"}}},
			want: func() Event {
				d := open.Details
				d.Episode.ExpectedDischargeDate = "2026-11-25"
				return ReferralAmended{Details: d, Paths: []string{"expected_discharge_date"}, Reason: "ward round"}
			}()},
		{name: "already so: nothing", r: open, c: AmendReferral{ReferralID: referralID, Paths: []string{"needs"}, Reason: "again", Details: Details{Needs: open.Details.Needs}}},
		{name: "bad values named under changes", r: open, c: AmendReferral{ReferralID: referralID, Paths: []string{"needs", "hospital_lead", "expected_discharge_date"}, Reason: "x",
			Details: Details{Needs: Needs{Mobility: 99, CarersPerTransfer: 9}, Episode: Episode{ExpectedDischargeDate: "soon"}}},
			wantKind: KindInvalid, fields: []string{"changes.needs.mobility", "changes.needs.carers_per_transfer", "changes.hospital_lead.name", "changes.hospital_lead.phone", "changes.expected_discharge_date"}},
		{name: "urgent response with 24h bed-based care", r: open, c: AmendReferral{ReferralID: referralID, Paths: []string{"needs"}, Reason: "x",
			Details: Details{Needs: Needs{Mobility: MobilityAssisted, UrgentCommunityResponse: true, OngoingBeddedCare: true}}},
			wantKind: KindInvalid, fields: []string{"changes.needs.urgent_community_response"}},
		{name: "who the patient is cannot be amended; no reason", r: open, c: AmendReferral{ReferralID: referralID, Paths: []string{"patient.nhs_number", "needs", "needs"}},
			wantKind: KindInvalid, fields: []string{"reason", "update_mask.paths[0]", "update_mask.paths[2]"}},
		{name: "nothing named", r: open, c: AmendReferral{ReferralID: referralID, Reason: "x"}, wantKind: KindInvalid, fields: []string{"update_mask"}},
		{name: "withdrawn", r: referralAt(now, submittedEvent("2026-11-20"), ReferralWithdrawn{Reason: WithdrawalReasonDied}),
			c: AmendReferral{ReferralID: referralID, Paths: []string{"risks"}, Reason: "x", Details: Details{Risks: Risks{Falls: true}}}, wantKind: KindFailedPrecondition},
		{name: "not found", c: AmendReferral{ReferralID: referralID, Paths: []string{"risks"}, Reason: "x"}, wantKind: KindNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecideAmend(tt.r, tt.c, now)
			if KindOf(err) != tt.wantKind || (err == nil) != (tt.wantKind == KindInternal) {
				t.Fatalf("err = %v, want kind %d", err, tt.wantKind)
			}
			if tt.fields != nil {
				var fields []string
				for _, v := range err.(*Error).Violations {
					fields = append(fields, v.Field)
				}
				slices.Sort(fields)
				want := slices.Sorted(slices.Values(tt.fields))
				if diff := cmp.Diff(want, fields); diff != "" {
					t.Fatalf("violations (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("event (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAmendedRouting: an amendment the decided pathway no longer fits is
// decided again while no provider has accepted, a live offer that no
// longer fits cancelled first; after acceptance it is only recorded. A
// patient meeting a criterion to reside again has an offer not yet
// accepted cancelled and an accepted one put on hold, taken up again with
// a new Discharge Ready Date.
func TestAmendedRouting(t *testing.T) {
	t.Parallel()
	home := ServiceHomeCareReablement
	a1 := AssignmentIDFor(referralID, 1)
	decided := []Event{submitted(func(*Details) {}), PathwayDecided{Pathway: PathwayP1HomeFirst, Service: home, Rule: RuleHomeFirst}}
	bedded := func() ReferralAmended {
		d := submitted(func(*Details) {}).Details
		d.Needs.ShortTermBedBasedCare = true
		return ReferralAmended{Details: d, Paths: []string{"needs"}, Reason: "needs a bed"}
	}()
	risks := func() ReferralAmended {
		d := submitted(func(*Details) {}).Details
		d.Risks.Falls = true
		return ReferralAmended{Details: d, Paths: []string{"risks"}, Reason: "fell on the ward"}
	}()
	offered := OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home}
	notReady := CriteriaToResideRecorded{CriteriaMet: []Criterion{CriterionOxygen}, AssessedOn: "2020-05-02"}
	tests := []struct {
		name     string
		events   []Event
		wantRule string
		want     Event
	}{
		{name: "no longer fits, no offer: decided again", events: append(slices.Clone(decided), bedded), wantRule: RuleStepDown,
			want: PathwayDecided{Pathway: PathwayP2StepDown, Service: ServiceStepDownBed, Rule: RuleStepDown, ReasonCode: "short-term-24h-bed",
				Inputs: map[string]string{"admitted_from": "home", "discharge_ready_date": "2020-05-01", "ongoing_bedded_care": "false", "short_term_bed_based_care": "true"}}},
		{name: "no longer fits, offered: the offer is cancelled first", events: append(slices.Clone(decided), offered, bedded), wantRule: RuleAmended,
			want: AssignmentStatusChanged{AssignmentID: a1, Status: TaskCancelled, Reason: "the referral was amended: step-down fits it now", ProviderODS: "NQR01"}},
		{name: "still fits: the offer stands", events: append(slices.Clone(decided), offered, risks)},
		{name: "accepted: recorded only", events: append(slices.Clone(decided), offered, AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted}, bedded)},
		{name: "criteria met again, offered: cancelled", events: append(slices.Clone(decided), offered, notReady), wantRule: RuleCriteriaToReside,
			want: AssignmentStatusChanged{AssignmentID: a1, Status: TaskCancelled, Reason: reasonCriteriaMetAgain, ProviderODS: "NQR01"}},
		{name: "criteria met again, accepted: on hold", events: append(slices.Clone(decided), offered, AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted}, notReady),
			wantRule: RuleCriteriaToReside, want: AssignmentStatusChanged{AssignmentID: a1, Status: TaskOnHold, Reason: reasonCriteriaMetAgain, ProviderODS: "NQR01"}},
		{name: "ready again: the held acceptance stands again", events: append(slices.Clone(decided), offered, AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted},
			notReady, AssignmentStatusChanged{AssignmentID: a1, Status: TaskOnHold, Reason: reasonCriteriaMetAgain},
			CriteriaToResideRecorded{AssessedOn: "2020-05-03", DischargeReadyDate: "2020-05-03"}),
			wantRule: RuleCriteriaToReside, want: AssignmentStatusChanged{AssignmentID: a1, Status: TaskAccepted, ProviderODS: "NQR01"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := referralAt(at(2024, 1, 10), tt.events...)
			step := NextStep(r, nil, DefaultPolicies, at(2024, 1, 10))
			if step.Rule != tt.wantRule {
				t.Errorf("rule %q, want %q", step.Rule, tt.wantRule)
			}
			if diff := cmp.Diff(tt.want, step.Event); diff != "" {
				t.Fatalf("step (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCancelledByTheRouterIsNoDecline: an offer the router cancelled (the
// patient met a criterion to reside again) does not pass its provider
// over when the referral is offered again.
func TestCancelledByTheRouterIsNoDecline(t *testing.T) {
	t.Parallel()
	home := ServiceHomeCareReablement
	a1 := AssignmentIDFor(referralID, 1)
	var r Referral
	for i, e := range []Event{submitted(func(*Details) {}), PathwayDecided{Pathway: PathwayP1HomeFirst, Service: home},
		OfferMade{AssignmentID: a1, ProviderODS: "NQR01", Service: home}} {
		r.Apply(Record{Sequence: uint64(i + 1), AggregateID: referralID, OccurredAt: now, Event: e})
	}
	r.Apply(Record{Sequence: 4, AggregateID: referralID, OccurredAt: now, Actor: Actor{Role: ActorRouter},
		Event: AssignmentStatusChanged{AssignmentID: a1, Status: TaskCancelled, Reason: reasonCriteriaMetAgain}})
	if got := Candidates(r, home, []Provider{provider("NQR01", home, 1, nil)}); len(got) != 1 {
		t.Fatalf("candidates %v; the provider whose offer the router cancelled is passed over", got)
	}
}
