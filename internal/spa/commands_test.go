package spa

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// now is 10:00 UK time on 22 November 2026 (GMT).
var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

const requestID = "3f1c9a52-5d1e-4f0a-9b7e-2f8f3c1d0a11"

var referralID = ReferralIDFor(requestID)

func validDetails() Details {
	return Details{
		Patient: Patient{NHSNumber: "9434765919", GivenName: "Margaret", FamilyName: "Thompson",
			BirthDate: "1942-03-14", Postcode: "BR1 3JH", Borough: "Bromley", GPPracticeODS: "G84001"},
		Episode:      Episode{SiteODS: "RH802", Ward: "Darwin Ward", AdmissionDate: "2026-11-16", ExpectedDischargeDate: "2026-11-24"},
		AdmittedFrom: AdmittedFromHome,
		Needs:        Needs{Mobility: MobilityWalkingAid, CarersPerTransfer: 1, CareCallsPerDay: 2, Equipment: []string{"commode"}},
		Risks:        Risks{Falls: true},
		HospitalLead: Contact{Name: "Ada Obi", Role: "discharge coordinator", Phone: "020 8000 1234"},
	}
}

func validSubmit() SubmitReferral {
	return SubmitReferral{RequestID: requestID, Details: validDetails()}
}

// history builds records on the test referral, sequences 1, 2, ...
func history(events ...Event) []Record {
	recs := make([]Record, len(events))
	for i, e := range events {
		recs[i] = Record{Sequence: uint64(i + 1), AggregateID: referralID, OccurredAt: now.Add(-time.Hour), Event: e}
	}
	return recs
}

func submittedEvent(drd string, criteria ...Criterion) ReferralSubmitted {
	d := validDetails()
	d.CriteriaMet = criteria
	return ReferralSubmitted{RequestID: requestID, Details: d, DischargeReadyDate: drd}
}

// decideCase is one row of a decision table: given these events, this
// command gives this event, or an error of this kind naming exactly these
// fields.
type decideCase[C any] struct {
	name       string
	given      []Event
	cmd        C
	want       Event
	wantKind   Kind
	wantFields []string
}

// runDecide runs a decision table against decide, on the state S that the
// given events build.
func runDecide[S any, P interface {
	*S
	Apply(Record)
}, C any](t *testing.T, cases []decideCase[C], decide func(S, C, time.Time) (Event, error)) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var state S
			for _, rec := range history(tt.given...) {
				P(&state).Apply(rec)
			}
			got, err := decide(state, tt.cmd, now)
			if tt.wantKind == KindInternal {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Fatalf("event (-want +got):\n%s", diff)
				}
				return
			}
			if KindOf(err) != tt.wantKind {
				t.Fatalf("error = %v (kind %d), want kind %d", err, KindOf(err), tt.wantKind)
			}
			var de *Error
			errors.As(err, &de)
			var fields []string
			for _, v := range de.Violations {
				fields = append(fields, v.Field)
			}
			if diff := cmp.Diff(tt.wantFields, fields); diff != "" {
				t.Fatalf("violated fields (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

// submitting returns a normalised submission: the valid one, mutated.
func submitting(mutate func(c *SubmitReferral)) SubmitReferral {
	c := validSubmit()
	mutate(&c)
	c.Normalise()
	return c
}

func TestDecideSubmit(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 101)
	tests := []decideCase[SubmitReferral]{
		{name: "no criteria met and no date: discharge ready today", cmd: submitting(func(c *SubmitReferral) {}),
			want: submittedEvent("2026-11-22")},
		{name: "an earlier discharge ready date is kept", cmd: submitting(func(c *SubmitReferral) { c.Details.DischargeReadyDate = "2026-11-20" }),
			want: func() Event { e := submittedEvent("2026-11-20"); e.Details.DischargeReadyDate = "2026-11-20"; return e }()},
		{name: "criteria met: no discharge ready date", cmd: submitting(func(c *SubmitReferral) { c.Details.CriteriaMet = []Criterion{CriterionOxygen} }),
			want: submittedEvent("", CriterionOxygen)},
		{name: "input is normalised", cmd: submitting(func(c *SubmitReferral) {
			c.Details.Patient.NHSNumber, c.Details.Patient.Postcode, c.Details.Episode.SiteODS = "943 476 5919", "br13jh", " rh802 "
		}), want: submittedEvent("2026-11-22")},
		{name: "retry with the same details appends nothing", given: []Event{submittedEvent("2026-11-22")},
			cmd: submitting(func(c *SubmitReferral) {}), want: nil},
		{name: "retry with the same details differently written appends nothing", given: []Event{submittedEvent("2026-11-22")},
			cmd: submitting(func(c *SubmitReferral) { c.Details.Patient.NHSNumber = "943 476 5919" }), want: nil},
		{name: "same request id, other details", given: []Event{submittedEvent("2026-11-22")},
			cmd: submitting(func(c *SubmitReferral) { c.Details.Episode.Ward = "Elizabeth Ward" }), wantKind: KindAlreadyExists},
		{name: "bad NHS number, future birth date and missing ward at once", cmd: submitting(func(c *SubmitReferral) {
			c.Details.Patient.NHSNumber, c.Details.Patient.BirthDate, c.Details.Episode.Ward = "9434765918", "2027-01-01", ""
		}), wantKind: KindInvalid, wantFields: []string{"referral.patient.nhs_number", "referral.patient.birth_date", "referral.episode.ward"}},
		{name: "empty request", cmd: submitting(func(c *SubmitReferral) { *c = SubmitReferral{} }), wantKind: KindInvalid, wantFields: []string{
			"request_id", "referral.patient.nhs_number", "referral.patient.given_name", "referral.patient.family_name",
			"referral.patient.birth_date", "referral.patient.postcode", "referral.patient.borough", "referral.episode.site_ods",
			"referral.episode.ward", "referral.episode.admission_date", "referral.admitted_from", "referral.needs.mobility",
			"referral.hospital_lead.name", "referral.hospital_lead.phone"}},
	}
	// One row per validation rule: the mutation and the one field it breaks.
	rules := []struct {
		field  string
		mutate func(c *SubmitReferral)
	}{
		{"request_id", func(c *SubmitReferral) { c.RequestID = "short" }},
		{"request_id", func(c *SubmitReferral) { c.RequestID = "has spaces in it" }},
		{"request_id", func(c *SubmitReferral) { c.RequestID = strings.Repeat("a", 65) }},
		{"referral.patient.nhs_number", func(c *SubmitReferral) { c.Details.Patient.NHSNumber = "1234567890" }},
		{"referral.patient.nhs_number", func(c *SubmitReferral) { c.Details.Patient.NHSNumber = "0000000000" }},
		{"referral.patient.nhs_number", func(c *SubmitReferral) { c.Details.Patient.NHSNumber = "94347659" }},
		{"referral.patient.given_name", func(c *SubmitReferral) { c.Details.Patient.GivenName = long }},
		{"referral.patient.family_name", func(c *SubmitReferral) { c.Details.Patient.FamilyName = "Thomp\x00son" }},
		{"referral.patient.family_name", func(c *SubmitReferral) { c.Details.Patient.FamilyName = "\xff" }},
		{"referral.patient.birth_date", func(c *SubmitReferral) { c.Details.Patient.BirthDate = "14/03/1942" }},
		{"referral.patient.birth_date", func(c *SubmitReferral) { c.Details.Patient.BirthDate = "1942-02-30" }},
		{"referral.patient.birth_date", func(c *SubmitReferral) { c.Details.Patient.BirthDate = "1850-01-01" }},
		{"referral.patient.postcode", func(c *SubmitReferral) { c.Details.Patient.Postcode = "12345" }},
		{"referral.patient.borough", func(c *SubmitReferral) { c.Details.Patient.Borough = "" }},
		{"referral.patient.gp_practice_ods", func(c *SubmitReferral) { c.Details.Patient.GPPracticeODS = "G8400-1" }},
		{"referral.episode.site_ods", func(c *SubmitReferral) { c.Details.Episode.SiteODS = "RH8021234567" }},
		{"referral.episode.ward", func(c *SubmitReferral) { c.Details.Episode.Ward = strings.Repeat("w", 65) }},
		{"referral.episode.admission_date", func(c *SubmitReferral) { c.Details.Episode.AdmissionDate = "2026-11-23" }},
		{"referral.episode.admission_date", func(c *SubmitReferral) { c.Details.Episode.AdmissionDate = "1940-01-01" }},
		{"referral.episode.expected_discharge_date", func(c *SubmitReferral) { c.Details.Episode.ExpectedDischargeDate = "2026-11-15" }},
		{"referral.episode.expected_discharge_date", func(c *SubmitReferral) { c.Details.Episode.ExpectedDischargeDate = "soon" }},
		{"referral.admitted_from", func(c *SubmitReferral) { c.Details.AdmittedFrom = AdmittedFromUnspecified }},
		{"referral.admitted_from", func(c *SubmitReferral) { c.Details.AdmittedFrom = 99 }},
		{"referral.needs.mobility", func(c *SubmitReferral) { c.Details.Needs.Mobility = -1 }},
		{"referral.needs.carers_per_transfer", func(c *SubmitReferral) { c.Details.Needs.CarersPerTransfer = 5 }},
		{"referral.needs.care_calls_per_day", func(c *SubmitReferral) { c.Details.Needs.CareCallsPerDay = -1 }},
		{"referral.needs.equipment", func(c *SubmitReferral) { c.Details.Needs.Equipment = make([]string, 21) }},
		{"referral.needs.equipment[1]", func(c *SubmitReferral) { c.Details.Needs.Equipment = []string{"commode", " "} }},
		{"referral.needs.urgent_community_response", func(c *SubmitReferral) {
			c.Details.Needs.UrgentCommunityResponse, c.Details.Needs.OngoingBeddedCare = true, true
		}},
		{"referral.infection_test.type", func(c *SubmitReferral) {
			c.Details.InfectionTest = &InfectionTest{TakenAt: now.Add(-time.Hour), Result: TestResultNegative}
		}},
		{"referral.infection_test.result", func(c *SubmitReferral) {
			c.Details.InfectionTest = &InfectionTest{Type: TestTypePCR, TakenAt: now.Add(-time.Hour), Result: 7}
		}},
		{"referral.infection_test.taken_at", func(c *SubmitReferral) {
			c.Details.InfectionTest = &InfectionTest{Type: TestTypePCR, TakenAt: now.Add(time.Hour), Result: TestResultNegative}
		}},
		{"referral.infection_test.taken_at", func(c *SubmitReferral) {
			c.Details.InfectionTest = &InfectionTest{Type: TestTypePCR, Result: TestResultNegative}
		}},
		{"referral.end_of_life.preferred_place", func(c *SubmitReferral) { c.Details.EndOfLife = EndOfLife{FastTrack: true} }},
		{"referral.end_of_life.preferred_place", func(c *SubmitReferral) { c.Details.EndOfLife = EndOfLife{PreferredPlace: 9} }},
		{"referral.consent.preferences", func(c *SubmitReferral) { c.Details.Consent.Preferences = strings.Repeat("p", 1001) }},
		{"referral.hospital_lead.name", func(c *SubmitReferral) { c.Details.HospitalLead.Name = "" }},
		{"referral.hospital_lead.role", func(c *SubmitReferral) { c.Details.HospitalLead.Role = strings.Repeat("r", 65) }},
		{"referral.hospital_lead.phone", func(c *SubmitReferral) { c.Details.HospitalLead.Phone = "call the ward" }},
		{"referral.criteria_met[0]", func(c *SubmitReferral) { c.Details.CriteriaMet = []Criterion{CriterionUnspecified} }},
		{"referral.criteria_met[0]", func(c *SubmitReferral) { c.Details.CriteriaMet = []Criterion{42} }},
		{"referral.criteria_met[1]", func(c *SubmitReferral) { c.Details.CriteriaMet = []Criterion{CriterionOxygen, CriterionOxygen} }},
		{"referral.criteria_met", func(c *SubmitReferral) { c.Details.CriteriaMet = make([]Criterion, 11) }},
		{"referral.discharge_ready_date", func(c *SubmitReferral) {
			c.Details.CriteriaMet, c.Details.DischargeReadyDate = []Criterion{CriterionOxygen}, "2026-11-20"
		}},
		{"referral.discharge_ready_date", func(c *SubmitReferral) { c.Details.DischargeReadyDate = "2026-11-15" }},
		{"referral.discharge_ready_date", func(c *SubmitReferral) { c.Details.DischargeReadyDate = "2026-11-23" }},
		{"referral.proposed_pathway", func(c *SubmitReferral) { c.Details.ProposedPathway = 6 }},
	}
	for _, r := range rules {
		tests = append(tests, decideCase[SubmitReferral]{name: "invalid " + r.field, cmd: submitting(r.mutate), wantKind: KindInvalid, wantFields: []string{r.field}})
	}
	runDecide(t, tests, DecideSubmit)
}

func TestDecideRecordCriteria(t *testing.T) {
	t.Parallel()
	notReady := submittedEvent("", CriterionOxygen)
	ready := submittedEvent("2026-11-20")
	withdrawn := ReferralWithdrawn{Reason: WithdrawalReasonDied}
	tests := []decideCase[RecordCriteriaToReside]{
		{name: "none met sets the discharge ready date", given: []Event{notReady},
			cmd:  RecordCriteriaToReside{ReferralID: referralID, AssessedOn: "2026-11-21"},
			want: CriteriaToResideRecorded{AssessedOn: "2026-11-21", DischargeReadyDate: "2026-11-21"}},
		{name: "none met again keeps the first date", given: []Event{ready},
			cmd:  RecordCriteriaToReside{ReferralID: referralID, AssessedOn: "2026-11-22"},
			want: CriteriaToResideRecorded{AssessedOn: "2026-11-22", DischargeReadyDate: "2026-11-20"}},
		{name: "a criterion met again resets the date", given: []Event{ready},
			cmd:  RecordCriteriaToReside{ReferralID: referralID, CriteriaMet: []Criterion{CriterionNEWS2Above3}, AssessedOn: "2026-11-22"},
			want: CriteriaToResideRecorded{CriteriaMet: []Criterion{CriterionNEWS2Above3}, AssessedOn: "2026-11-22"}},
		{name: "after a reset, none met sets a new date", given: []Event{ready,
			CriteriaToResideRecorded{CriteriaMet: []Criterion{CriterionIVFluids}, AssessedOn: "2026-11-21"}},
			cmd:  RecordCriteriaToReside{ReferralID: referralID, AssessedOn: "2026-11-22"},
			want: CriteriaToResideRecorded{AssessedOn: "2026-11-22", DischargeReadyDate: "2026-11-22"}},
		{name: "unknown referral", cmd: RecordCriteriaToReside{ReferralID: referralID, AssessedOn: "2026-11-22"}, wantKind: KindNotFound},
		{name: "withdrawn referral", given: []Event{ready, withdrawn},
			cmd: RecordCriteriaToReside{ReferralID: referralID, AssessedOn: "2026-11-22"}, wantKind: KindFailedPrecondition},
		{name: "assessed before admission", given: []Event{notReady},
			cmd:      RecordCriteriaToReside{ReferralID: referralID, AssessedOn: "2026-11-15"},
			wantKind: KindInvalid, wantFields: []string{"assessed_on"}},
		{name: "everything wrong", cmd: RecordCriteriaToReside{ReferralID: "r1", CriteriaMet: []Criterion{0}, AssessedOn: "2026-12-01"},
			wantKind: KindInvalid, wantFields: []string{"referral_id", "criteria_met[0]", "assessed_on"}},
		{name: "missing fields", cmd: RecordCriteriaToReside{},
			wantKind: KindInvalid, wantFields: []string{"referral_id", "assessed_on"}},
	}
	runDecide(t, tests, DecideRecordCriteria)
}

func TestDecideRecordTest(t *testing.T) {
	t.Parallel()
	taken := time.Date(2026, 11, 22, 7, 30, 0, 0, time.FixedZone("BST", 3600))
	tests := []decideCase[RecordInfectionTest]{
		{name: "recorded in UTC", given: []Event{submittedEvent("2026-11-20")},
			cmd:  RecordInfectionTest{ReferralID: referralID, Test: InfectionTest{Type: TestTypePCR, TakenAt: taken, Result: TestResultPositive}},
			want: InfectionTestRecorded{Test: InfectionTest{Type: TestTypePCR, TakenAt: taken.UTC(), Result: TestResultPositive}}},
		{name: "unknown referral",
			cmd:      RecordInfectionTest{ReferralID: referralID, Test: InfectionTest{Type: TestTypePCR, TakenAt: taken, Result: TestResultPositive}},
			wantKind: KindNotFound},
		{name: "empty test", given: []Event{submittedEvent("2026-11-20")}, cmd: RecordInfectionTest{ReferralID: referralID},
			wantKind: KindInvalid, wantFields: []string{"test.type", "test.result", "test.taken_at"}},
		{name: "taken before testing existed", given: []Event{submittedEvent("2026-11-20")},
			cmd:      RecordInfectionTest{ReferralID: referralID, Test: InfectionTest{Type: TestTypePCR, TakenAt: time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC), Result: TestResultNegative}},
			wantKind: KindInvalid, wantFields: []string{"test.taken_at"}},
	}
	runDecide(t, tests, DecideRecordTest)
}

func TestDecideWithdraw(t *testing.T) {
	t.Parallel()
	ready := submittedEvent("2026-11-20")
	tests := []decideCase[WithdrawReferral]{
		{name: "withdrawn", given: []Event{ready}, cmd: WithdrawReferral{ReferralID: referralID, Reason: WithdrawalReasonDeteriorated, Note: "back to ITU"},
			want: ReferralWithdrawn{Reason: WithdrawalReasonDeteriorated, Note: "back to ITU"}},
		{name: "twice", given: []Event{ready, ReferralWithdrawn{Reason: WithdrawalReasonDied}},
			cmd: WithdrawReferral{ReferralID: referralID, Reason: WithdrawalReasonDied}, wantKind: KindFailedPrecondition},
		{name: "unknown referral", cmd: WithdrawReferral{ReferralID: referralID, Reason: WithdrawalReasonDied}, wantKind: KindNotFound},
		{name: "no reason, long note", given: []Event{ready},
			cmd:      WithdrawReferral{ReferralID: referralID, Note: strings.Repeat("n", 1001)},
			wantKind: KindInvalid, wantFields: []string{"reason", "note"}},
	}
	runDecide(t, tests, DecideWithdraw)
}

func TestApply(t *testing.T) {
	t.Parallel()
	test := InfectionTest{Type: TestTypeLateralFlow, TakenAt: now.Add(-2 * time.Hour), Result: TestResultNegative}
	steps := []struct {
		event      Event
		wantStatus Status
		wantDRD    string
	}{
		{submittedEvent("", CriterionOxygen), StatusNotReady, ""},
		{CriteriaToResideRecorded{AssessedOn: "2026-11-21", DischargeReadyDate: "2026-11-21"}, StatusReady, "2026-11-21"},
		{InfectionTestRecorded{Test: test}, StatusReady, "2026-11-21"},
		{CriteriaToResideRecorded{CriteriaMet: []Criterion{CriterionIVFluids}, AssessedOn: "2026-11-22"}, StatusNotReady, ""},
		{ReferralWithdrawn{Reason: WithdrawalReasonSelfDischarged}, StatusWithdrawn, ""},
	}
	var r Referral
	for i, s := range steps {
		r.Apply(Record{Sequence: uint64(i + 1), AggregateID: referralID, OccurredAt: now, Event: s.event})
		if r.Status != s.wantStatus || r.DischargeReadyDate != s.wantDRD || r.Version != uint64(i+1) {
			t.Fatalf("after %s: status %d DRD %q version %d; want %d %q %d",
				EventName(s.event), r.Status, r.DischargeReadyDate, r.Version, s.wantStatus, s.wantDRD, i+1)
		}
	}
	if r.ID != referralID || r.SubmittedSequence != 1 || r.LatestTest == nil || *r.LatestTest != test || r.WithdrawalReason != WithdrawalReasonSelfDischarged {
		t.Fatalf("final state %+v", r)
	}
}
