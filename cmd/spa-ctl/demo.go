package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// demoPatient is one sample referral; days are relative to today.
type demoPatient struct {
	given, family, borough, postcode, ward string
	age, admittedDaysAgo, drdDaysAgo       int // drdDaysAgo < 0: still meets criteria
	from                                   spav1.AdmittedFrom
	mobility                               spav1.Mobility
	carers, calls                          int32
	criteria                               []spav1.CriterionToReside
	proposed                               spav1.Pathway
	needs                                  func(d *spav1.ReferralDetails, today time.Time)
}

// demoPatients are fictional people in two south-east London boroughs,
// chosen to exercise every pathway. NHS numbers are in the 999 range, which
// is never issued to real patients.
var demoPatients = []demoPatient{
	{given: "Margaret", family: "Thompson", borough: "Bromley", postcode: "BR1 3JH", ward: "Darwin Ward", age: 84, admittedDaysAgo: 6, drdDaysAgo: 1,
		from: spav1.AdmittedFrom_ADMITTED_FROM_HOME, mobility: spav1.Mobility_MOBILITY_WALKING_AID, carers: 1, calls: 2, proposed: spav1.Pathway_PATHWAY_P1_HOME_FIRST,
		needs: func(d *spav1.ReferralDetails, today time.Time) {
			d.Risks.Falls = true
			d.Needs.Equipment = []string{"perching stool", "commode"}
		}},
	{given: "Sunita", family: "Patel", borough: "Bexley", postcode: "DA6 7AT", ward: "Elizabeth Ward", age: 72, admittedDaysAgo: 3, drdDaysAgo: 0,
		from: spav1.AdmittedFrom_ADMITTED_FROM_HOME, mobility: spav1.Mobility_MOBILITY_ASSISTED, carers: 1, calls: 4, proposed: spav1.Pathway_PATHWAY_P1_HOME_FIRST},
	{given: "Arthur", family: "Jenkins", borough: "Bromley", postcode: "BR6 8ND", ward: "Orthopaedic Ward 2", age: 79, admittedDaysAgo: 9, drdDaysAgo: -1,
		from: spav1.AdmittedFrom_ADMITTED_FROM_HOME, mobility: spav1.Mobility_MOBILITY_ASSISTED, carers: 2, calls: 0, proposed: spav1.Pathway_PATHWAY_P2_STEP_DOWN,
		criteria: []spav1.CriterionToReside{spav1.CriterionToReside_CRITERION_TO_RESIDE_IV_MEDICATION},
		needs: func(d *spav1.ReferralDetails, today time.Time) {
			d.Needs.ShortTermBedBasedCare = true
			d.Risks.PressureUlcers = true
		}},
	{given: "Doris", family: "Clarke", borough: "Bromley", postcode: "BR2 9AA", ward: "Medical Ward 5", age: 91, admittedDaysAgo: 4, drdDaysAgo: 1,
		from: spav1.AdmittedFrom_ADMITTED_FROM_CARE_HOME, mobility: spav1.Mobility_MOBILITY_HOIST, carers: 2, calls: 0,
		needs: func(d *spav1.ReferralDetails, today time.Time) {
			d.InfectionTest = &spav1.InfectionTest{Type: spav1.InfectionTestType_INFECTION_TEST_TYPE_LATERAL_FLOW,
				TakenAt: timestamppb.New(today.Add(-18 * time.Hour)), Result: spav1.InfectionTestResult_INFECTION_TEST_RESULT_POSITIVE}
			d.Risks.LacksMentalCapacity = true
		}},
	{given: "George", family: "Whitfield", borough: "Bexley", postcode: "DA5 1LR", ward: "Elderly Care 3", age: 88, admittedDaysAgo: 15, drdDaysAgo: 8,
		from: spav1.AdmittedFrom_ADMITTED_FROM_HOME, mobility: spav1.Mobility_MOBILITY_BED_BOUND, carers: 2, calls: 0, proposed: spav1.Pathway_PATHWAY_P3_CARE_HOME,
		needs: func(d *spav1.ReferralDetails, today time.Time) {
			d.Needs.OngoingBeddedCare = true
			d.Risks.Safeguarding = true
		}},
	{given: "Peter", family: "Okafor", borough: "Bromley", postcode: "BR3 4QT", ward: "Oncology Ward", age: 67, admittedDaysAgo: 2, drdDaysAgo: 0,
		from: spav1.AdmittedFrom_ADMITTED_FROM_HOME, mobility: spav1.Mobility_MOBILITY_BED_BOUND, carers: 2, calls: 4, proposed: spav1.Pathway_PATHWAY_END_OF_LIFE,
		needs: func(d *spav1.ReferralDetails, today time.Time) {
			d.EndOfLife = &spav1.EndOfLife{FastTrack: true, PreferredPlace: spav1.PlaceOfCare_PLACE_OF_CARE_HOME}
			d.Needs.Equipment = []string{"hospital bed", "pressure mattress"}
		}},
	{given: "Eileen", family: "Murphy", borough: "Bexley", postcode: "DA14 6LT", ward: "Respiratory Ward", age: 76, admittedDaysAgo: 5, drdDaysAgo: 0,
		from: spav1.AdmittedFrom_ADMITTED_FROM_HOME, mobility: spav1.Mobility_MOBILITY_BED_BOUND, carers: 2, calls: 0, proposed: spav1.Pathway_PATHWAY_END_OF_LIFE,
		needs: func(d *spav1.ReferralDetails, today time.Time) {
			d.EndOfLife = &spav1.EndOfLife{FastTrack: true, PreferredPlace: spav1.PlaceOfCare_PLACE_OF_CARE_HOSPICE}
		}},
	{given: "Kwame", family: "Mensah", borough: "Bromley", postcode: "BR5 2EL", ward: "Respiratory Ward", age: 58, admittedDaysAgo: 7, drdDaysAgo: -1,
		from: spav1.AdmittedFrom_ADMITTED_FROM_HOME, mobility: spav1.Mobility_MOBILITY_INDEPENDENT, carers: 0, calls: 1,
		criteria: []spav1.CriterionToReside{spav1.CriterionToReside_CRITERION_TO_RESIDE_OXYGEN, spav1.CriterionToReside_CRITERION_TO_RESIDE_NEWS2_ABOVE_3}},
}

// demo submits the sample referrals. Their request ids are fixed for the
// day, so running demo again the same day changes nothing.
func (c *ctl) demo(ctx context.Context, args []string) error {
	if err := c.flags("demo").Parse(args); err != nil {
		return errUsage
	}
	now := time.Now()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.Local)
	date := func(daysAgo int) string { return today.AddDate(0, 0, -daysAgo).Format(spa.DateLayout) }
	for i, p := range demoPatients {
		site := "RJZ30" // a Bromley acute site
		if p.borough == "Bexley" {
			site = "RJ224"
		}
		d := &spav1.ReferralDetails{
			Patient: &spav1.Patient{NhsNumber: demoNHSNumber(i), GivenName: p.given, FamilyName: p.family,
				BirthDate: today.AddDate(-p.age, -2, -i).Format(spa.DateLayout), Postcode: p.postcode, Borough: p.borough, GpPracticeOds: "G8400" + strconv.Itoa(i)},
			Episode:         &spav1.Episode{SiteOds: site, Ward: p.ward, AdmissionDate: date(p.admittedDaysAgo)},
			AdmittedFrom:    p.from,
			Needs:           &spav1.Needs{Mobility: p.mobility, CarersPerTransfer: p.carers, CareCallsPerDay: p.calls},
			Risks:           &spav1.Risks{},
			Consent:         &spav1.Consent{ShareWithProviders: true},
			HospitalLead:    &spav1.Contact{Name: "Discharge Coordinator " + p.ward, Role: "discharge coordinator", Phone: "020 8000 " + fmt.Sprintf("%04d", 1000+i)},
			CriteriaMet:     p.criteria,
			ProposedPathway: p.proposed,
		}
		if p.drdDaysAgo >= 0 {
			d.DischargeReadyDate = date(p.drdDaysAgo)
		}
		if p.needs != nil {
			p.needs(d, today)
		}
		req := &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("demo-%s-%03d", today.Format("20060102"), i+1), Referral: d}
		var res *spav1.SubmitReferralResponse
		if err := c.call(ctx, func(ctx context.Context) (err error) {
			res, err = c.client.SubmitReferral(ctx, req)
			return err
		}); err != nil {
			return fmt.Errorf("demo: %s %s: %w", p.given, p.family, err)
		}
		note := "submitted"
		if res.GetReplayed() {
			note = "already there"
		}
		fmt.Fprintf(c.stdout, "%s  %-22s %-8s %s (sequence %d)\n", res.GetReferralId(), p.given+" "+p.family, p.borough, note, res.GetSequence())
	}
	fmt.Fprintln(c.stdout, "\nsee the board: spa-ctl board")
	return nil
}

// demoNHSNumber returns a valid NHS number in the 999 test range.
func demoNHSNumber(i int) string {
	for n := 100000 + i*37; ; n++ {
		base := fmt.Sprintf("999%06d", n)
		for d := '0'; d <= '9'; d++ {
			if s := base + string(d); spa.CheckNHSNumber(s) == "" {
				return s
			}
		}
	}
}
