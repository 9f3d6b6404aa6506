package spa

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Limits on what a client may send.
const (
	MaxNameLen      = 100
	MaxShortTextLen = 64
	MaxFreeTextLen  = 1000
	// MaxEquipment is the most items referral.needs.equipment may list.
	MaxEquipment = 20
	MaxCarers    = 4
	MaxCareCalls = 8
	// MaxCriteria is the most criteria to reside a criteria_met list
	// (referral.criteria_met, RecordCriteriaToReside's criteria_met) may
	// hold: each national criterion once (10).
	MaxCriteria = int(criterionEnd) - 1
)

// SubmitReferral is the command a discharge team sends to refer a patient.
type SubmitReferral struct {
	RequestID string
	Details   Details
}

// RecordCriteriaToReside records a reassessment of the criteria to reside.
type RecordCriteriaToReside struct {
	ReferralID  string
	CriteriaMet []Criterion
	AssessedOn  string
}

// RecordInfectionTest records a test result.
type RecordInfectionTest struct {
	ReferralID string
	Test       InfectionTest
}

// WithdrawReferral withdraws a referral.
type WithdrawReferral struct {
	ReferralID string
	Reason     WithdrawalReason
	Note       string
}

// Normalise puts a submission into canonical form (trimmed text, NHS number
// without spaces, upper-case codes and postcode, UTC times, nil for empty
// lists) so that validation and the idempotency comparison see one form.
func (c *SubmitReferral) Normalise() {
	c.RequestID = strings.TrimSpace(c.RequestID)
	d := &c.Details
	p := &d.Patient
	p.NHSNumber = strings.Join(strings.Fields(p.NHSNumber), "")
	p.GivenName = strings.TrimSpace(p.GivenName)
	p.FamilyName = strings.TrimSpace(p.FamilyName)
	p.Postcode = normalisePostcode(p.Postcode)
	p.Borough = strings.TrimSpace(p.Borough)
	p.GPPracticeODS = strings.ToUpper(strings.TrimSpace(p.GPPracticeODS))
	e := &d.Episode
	e.SiteODS = strings.ToUpper(strings.TrimSpace(e.SiteODS))
	e.Ward = strings.TrimSpace(e.Ward)
	if len(d.Needs.Equipment) == 0 {
		d.Needs.Equipment = nil
	}
	for i, s := range d.Needs.Equipment {
		d.Needs.Equipment[i] = strings.TrimSpace(s)
	}
	if len(d.CriteriaMet) == 0 {
		d.CriteriaMet = nil
	}
	if d.InfectionTest != nil {
		d.InfectionTest.TakenAt = d.InfectionTest.TakenAt.UTC()
	}
	d.HospitalLead.Name = strings.TrimSpace(d.HospitalLead.Name)
	d.HospitalLead.Role = strings.TrimSpace(d.HospitalLead.Role)
	d.HospitalLead.Phone = strings.TrimSpace(d.HospitalLead.Phone)
}

// DecideSubmit decides a submission against the referral at the id derived
// from its request id. It returns the event to append; or nil and a nil
// error when r already holds this very submission (the caller answers the
// retry with r); or a *Error: KindInvalid with every bad field, or
// KindAlreadyExists when the request id was used with other details.
// c must be normalised first.
func DecideSubmit(r Referral, c SubmitReferral, now time.Time) (Event, error) {
	var vs violations
	if !requestIDPattern.MatchString(c.RequestID) {
		vs.add("request_id", requestIDRule)
	}
	validateDetails(&vs, "referral.", c.Details, LocalDate(now), now)
	if err := vs.err(); err != nil {
		return nil, err
	}
	if r.Exists() {
		if r.RequestID == c.RequestID && sameJSON(r.Submitted, c.Details) {
			return nil, nil
		}
		return nil, Errorf(KindAlreadyExists, "request_id %q was already used for referral %s with different details", c.RequestID, r.ID)
	}
	drd := c.Details.DischargeReadyDate
	if drd == "" && len(c.Details.CriteriaMet) == 0 {
		drd = LocalDate(now)
	}
	return ReferralSubmitted{RequestID: c.RequestID, Details: c.Details, DischargeReadyDate: drd}, nil
}

// DecideRecordCriteria decides a reassessment: no criterion met sets the
// Discharge Ready Date to the assessment date unless one is already set;
// any criterion met resets it.
func DecideRecordCriteria(r Referral, c RecordCriteriaToReside, now time.Time) (Event, error) {
	var vs violations
	checkReferralID(&vs, c.ReferralID)
	checkCriteria(&vs, "criteria_met", c.CriteriaMet)
	assessed := checkDate(&vs, "assessed_on", c.AssessedOn, true, LocalDate(now))
	if err := vs.err(); err != nil {
		return nil, err
	}
	if err := checkOpen(r, c.ReferralID); err != nil {
		return nil, err
	}
	if !assessed.IsZero() && c.AssessedOn < r.Details.Episode.AdmissionDate {
		vs.add("assessed_on", "must not be before the admission date %s", r.Details.Episode.AdmissionDate)
		return nil, vs.err()
	}
	drd := ""
	if len(c.CriteriaMet) == 0 {
		drd = r.DischargeReadyDate
		if drd == "" {
			drd = c.AssessedOn
		}
	}
	return CriteriaToResideRecorded{CriteriaMet: slices.Clone(c.CriteriaMet), AssessedOn: c.AssessedOn, DischargeReadyDate: drd}, nil
}

// DecideRecordTest decides a test result.
func DecideRecordTest(r Referral, c RecordInfectionTest, now time.Time) (Event, error) {
	var vs violations
	checkReferralID(&vs, c.ReferralID)
	checkTest(&vs, "test.", c.Test, now)
	if err := vs.err(); err != nil {
		return nil, err
	}
	if err := checkOpen(r, c.ReferralID); err != nil {
		return nil, err
	}
	t := c.Test
	t.TakenAt = t.TakenAt.UTC()
	return InfectionTestRecorded{Test: t}, nil
}

// DecideWithdraw decides a withdrawal; a withdrawn referral cannot be
// withdrawn again (KindFailedPrecondition).
func DecideWithdraw(r Referral, c WithdrawReferral, _ time.Time) (Event, error) {
	var vs violations
	checkReferralID(&vs, c.ReferralID)
	checkEnum(&vs, "reason", c.Reason, withdrawalReasonEnd, true)
	checkText(&vs, "note", c.Note, false, MaxFreeTextLen)
	if err := vs.err(); err != nil {
		return nil, err
	}
	if err := checkOpen(r, c.ReferralID); err != nil {
		return nil, err
	}
	return ReferralWithdrawn{Reason: c.Reason, Note: c.Note}, nil
}

// checkOpen refuses commands on a missing or withdrawn referral.
func checkOpen(r Referral, id string) error {
	if !r.Exists() {
		return Errorf(KindNotFound, "referral %s not found", id)
	}
	if r.Withdrawn {
		return Errorf(KindFailedPrecondition, "referral %s is withdrawn", id)
	}
	return nil
}

func checkReferralID(vs *violations, id string) {
	if id == "" {
		vs.add("referral_id", "is required")
	} else if !IsReferralID(id) {
		vs.add("referral_id", "is not a referral id (ref- and 16 characters)")
	}
}

// checkEnum refuses values outside [1, end) and, when required, zero.
func checkEnum[E ~int32](vs *violations, field string, v, end E, required bool) {
	switch {
	case v == 0 && required:
		vs.add(field, "is required")
	case v < 0 || v >= end:
		vs.add(field, "has unknown value %d", v)
	}
}

func checkCriteria(vs *violations, field string, cs []Criterion) {
	if len(cs) > MaxCriteria {
		vs.add(field, "must list each criterion at most once (at most %d)", MaxCriteria)
		return
	}
	seen := map[Criterion]bool{}
	for i, c := range cs {
		f := fmt.Sprintf("%s[%d]", field, i)
		checkEnum(vs, f, c, criterionEnd, true)
		if seen[c] {
			vs.add(f, "is listed twice")
		}
		seen[c] = true
	}
}

func checkTest(vs *violations, prefix string, t InfectionTest, now time.Time) {
	checkEnum(vs, prefix+"type", t.Type, testTypeEnd, true)
	checkEnum(vs, prefix+"result", t.Result, testResultEnd, true)
	checkRecentTime(vs, prefix+"taken_at", t.TakenAt, now, true)
}

func validateDetails(vs *violations, prefix string, d Details, today string, now time.Time) {
	p, e := d.Patient, d.Episode
	pp := prefix + "patient."
	if p.NHSNumber == "" {
		vs.add(pp+"nhs_number", "is required")
	} else if why := CheckNHSNumber(p.NHSNumber); why != "" {
		vs.add(pp+"nhs_number", "%s", why)
	}
	checkText(vs, pp+"given_name", p.GivenName, true, MaxNameLen)
	checkText(vs, pp+"family_name", p.FamilyName, true, MaxNameLen)
	birth := checkDate(vs, pp+"birth_date", p.BirthDate, true, today)
	if p.Postcode == "" {
		vs.add(pp+"postcode", "is required")
	} else if !postcodePattern.MatchString(p.Postcode) {
		vs.add(pp+"postcode", "must be a UK postcode like BR1 3JH")
	}
	checkText(vs, pp+"borough", p.Borough, true, MaxShortTextLen)
	if p.GPPracticeODS != "" && !IsODSCode(p.GPPracticeODS) {
		vs.add(pp+"gp_practice_ods", "must be an ODS code: 1-9 upper-case letters or digits")
	}

	ep := prefix + "episode."
	checkODS(vs, ep+"site_ods", e.SiteODS)
	checkText(vs, ep+"ward", e.Ward, true, MaxShortTextLen)
	admitted := checkDate(vs, ep+"admission_date", e.AdmissionDate, true, today)
	if !admitted.IsZero() && !birth.IsZero() && admitted.Before(birth) {
		vs.add(ep+"admission_date", "must not be before the birth date")
	}
	if e.ExpectedDischargeDate != "" {
		if _, err := time.Parse(DateLayout, e.ExpectedDischargeDate); err != nil {
			vs.add(ep+"expected_discharge_date", "must be an ISO date like 2026-01-31")
		} else if !admitted.IsZero() && e.ExpectedDischargeDate < e.AdmissionDate {
			vs.add(ep+"expected_discharge_date", "must not be before the admission date")
		}
	}

	checkEnum(vs, prefix+"admitted_from", d.AdmittedFrom, admittedFromEnd, true)

	np := prefix + "needs."
	checkEnum(vs, np+"mobility", d.Needs.Mobility, mobilityEnd, true)
	if d.Needs.CarersPerTransfer < 0 || d.Needs.CarersPerTransfer > MaxCarers {
		vs.add(np+"carers_per_transfer", "must be 0-%d", MaxCarers)
	}
	if d.Needs.CareCallsPerDay < 0 || d.Needs.CareCallsPerDay > MaxCareCalls {
		vs.add(np+"care_calls_per_day", "must be 0-%d", MaxCareCalls)
	}
	if len(d.Needs.Equipment) > MaxEquipment {
		vs.add(np+"equipment", "must list at most %d items", MaxEquipment)
	} else {
		for i, s := range d.Needs.Equipment {
			checkText(vs, fmt.Sprintf("%sequipment[%d]", np, i), s, true, MaxShortTextLen)
		}
	}
	if d.Needs.UrgentCommunityResponse && (d.Needs.ShortTermBedBasedCare || d.Needs.OngoingBeddedCare) {
		vs.add(np+"urgent_community_response", "is a visit at home; not with 24h bed-based care")
	}

	if d.InfectionTest != nil {
		checkTest(vs, prefix+"infection_test.", *d.InfectionTest, now)
	}
	lp := prefix + "end_of_life."
	checkEnum(vs, lp+"preferred_place", d.EndOfLife.PreferredPlace, placeOfCareEnd, d.EndOfLife.FastTrack)
	checkText(vs, prefix+"consent.preferences", d.Consent.Preferences, false, MaxFreeTextLen)
	hp := prefix + "hospital_lead."
	checkText(vs, hp+"name", d.HospitalLead.Name, true, MaxNameLen)
	checkText(vs, hp+"role", d.HospitalLead.Role, false, MaxShortTextLen)
	if d.HospitalLead.Phone == "" {
		vs.add(hp+"phone", "is required")
	} else if strings.Trim(d.HospitalLead.Phone, "0123456789 +()-") != "" || len(d.HospitalLead.Phone) > 32 {
		vs.add(hp+"phone", "must be a phone number of at most 32 digits, spaces, + ( ) -")
	}

	checkCriteria(vs, prefix+"criteria_met", d.CriteriaMet)
	drd := checkDate(vs, prefix+"discharge_ready_date", d.DischargeReadyDate, false, today)
	if !drd.IsZero() {
		if len(d.CriteriaMet) > 0 {
			vs.add(prefix+"discharge_ready_date", "must be empty while a criterion to reside is met")
		}
		if !admitted.IsZero() && drd.Before(admitted) {
			vs.add(prefix+"discharge_ready_date", "must not be before the admission date")
		}
	}
	checkEnum(vs, prefix+"proposed_pathway", d.ProposedPathway, pathwayEnd, false)
}

// sameJSON compares two normalised values by their canonical JSON, which
// both sides compute with the same code.
func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// RoutingPaths are the amendable paths the routing rules read: amending
// one has the router ask them again.
var RoutingPaths = []string{"admitted_from", "needs", "end_of_life"}

// Amendable are the details a ward may amend, as paths of the API's
// ReferralChanges. Who the patient is, where they are and what they
// proposed stay as submitted.
var Amendable = []string{"admitted_from", "needs", "risks", "end_of_life", "consent", "hospital_lead", "expected_discharge_date"}

// amendedField is where an amendable path's value lives in Details, as a
// field violation names it.
func amendedField(path string) string {
	if path == "expected_discharge_date" {
		return "episode.expected_discharge_date"
	}
	return path
}

// AmendReferral changes the details at Paths to their values in Details.
type AmendReferral struct {
	ReferralID string
	Details    Details
	Paths      []string
	Reason     string
}

// ReferralAmended: the ward changed some of the referral's details.
type ReferralAmended struct {
	// Details are the whole details after the change.
	Details Details
	Paths   []string
	Reason  string
	// ProviderODS is the provider of the live assignment, whose feed
	// carries the change; "" when there is none.
	ProviderODS string
}

func (ReferralAmended) eventName() string    { return "ReferralAmended" }
func (ReferralAmended) aggregate() Aggregate { return AggregateReferral }

// DecideAmend decides an amendment: the paths must be amendable, the
// reason given, the referral open; the details after the change are
// validated as a submission's are (a violation is reported for the
// amended paths only). Details that are so already decide nothing.
func DecideAmend(r Referral, c AmendReferral, now time.Time) (Event, error) {
	var vs violations
	checkReferralID(&vs, c.ReferralID)
	checkText(&vs, "reason", c.Reason, true, MaxFreeTextLen)
	switch {
	case len(c.Paths) == 0:
		vs.add("update_mask", "must name at least one of %s", strings.Join(Amendable, ", "))
	case len(c.Paths) > len(Amendable):
		vs.add("update_mask.paths", "must list at most %d paths", len(Amendable))
		c.Paths = nil
	}
	// A list too long is refused whatever the mask.
	if len(c.Details.Needs.Equipment) > MaxEquipment {
		vs.add("changes.needs.equipment", "must list at most %d items", MaxEquipment)
	}
	paths := slices.Clone(c.Paths)
	for i, p := range paths {
		switch {
		case !slices.Contains(Amendable, p):
			vs.add(fmt.Sprintf("update_mask.paths[%d]", i), "cannot be amended (one of %s)", strings.Join(Amendable, ", "))
		case slices.Index(paths, p) < i:
			vs.add(fmt.Sprintf("update_mask.paths[%d]", i), "is listed twice")
		}
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	if err := checkOpen(r, c.ReferralID); err != nil {
		return nil, err
	}
	if now.Before(r.SubmittedAt) {
		vs.add("occurred_at", "must not be before the referral was submitted (%s)", r.SubmittedAt.UTC().Format(time.RFC3339))
		return nil, vs.err()
	}
	d := r.Details
	for _, p := range paths {
		switch p {
		case "admitted_from":
			d.AdmittedFrom = c.Details.AdmittedFrom
		case "needs":
			d.Needs = c.Details.Needs
		case "risks":
			d.Risks = c.Details.Risks
		case "end_of_life":
			d.EndOfLife = c.Details.EndOfLife
		case "consent":
			d.Consent = c.Details.Consent
		case "hospital_lead":
			d.HospitalLead = c.Details.HospitalLead
		case "expected_discharge_date":
			d.Episode.ExpectedDischargeDate = c.Details.Episode.ExpectedDischargeDate
		}
	}
	// Normalise works in place: on copies, never on the state's or the
	// command's slices.
	d.Needs.Equipment, d.CriteriaMet = slices.Clone(d.Needs.Equipment), slices.Clone(d.CriteriaMet)
	if d.InfectionTest != nil {
		t := *d.InfectionTest
		d.InfectionTest = &t
	}
	n := SubmitReferral{Details: d}
	n.Normalise()
	d = n.Details
	var all violations
	validateDetails(&all, "", d, LocalDate(now), now)
	for _, v := range all {
		for _, p := range paths {
			if f := amendedField(p); v.Field == f || strings.HasPrefix(v.Field, f+".") || strings.HasPrefix(v.Field, f+"[") {
				vs.add("changes."+p+strings.TrimPrefix(v.Field, f), "%s", v.Description)
			}
		}
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	if sameJSON(d, r.Details) {
		return nil, nil
	}
	slices.Sort(paths)
	e := ReferralAmended{Details: d, Paths: paths, Reason: c.Reason}
	if a := r.LiveAssignment(); a != nil {
		e.ProviderODS = a.ProviderODS
	}
	return e, nil
}
