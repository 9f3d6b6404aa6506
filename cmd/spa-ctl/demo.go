package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/authz"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/identity"
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
	// in2020: a migrated record from November 2020, when the infection
	// overlay was in force.
	in2020 bool
}

// demoProvider is one sample provider and its capacity per service.
type demoProvider struct {
	ods, name string
	boroughs  []string
	units     map[spav1.Service]int32
	trusted   bool
	positive  bool
}

// demoProviders are fictional providers of every kind in the two boroughs.
var demoProviders = []demoProvider{
	{ods: "NQR10", name: "Bromley Reablement Team", boroughs: []string{"Bromley"}, trusted: true,
		units: map[spav1.Service]int32{spav1.Service_SERVICE_HOME_CARE_REABLEMENT: 6, spav1.Service_SERVICE_URGENT_COMMUNITY_RESPONSE: 3}},
	{ods: "NQR11", name: "Bexley Home First Care", boroughs: []string{"Bexley"},
		units: map[spav1.Service]int32{spav1.Service_SERVICE_HOME_CARE_REABLEMENT: 4}},
	{ods: "NQR12", name: "Orpington Intermediate Care Unit", boroughs: []string{"Bromley", "Bexley"}, trusted: true, positive: true,
		units: map[spav1.Service]int32{spav1.Service_SERVICE_STEP_DOWN_BED: 3, spav1.Service_SERVICE_DESIGNATED_STEP_DOWN_BED: 2}},
	{ods: "VLA10", name: "Elmwood Care Home", boroughs: []string{"Bromley"}, positive: true,
		units: map[spav1.Service]int32{spav1.Service_SERVICE_CARE_HOME_BED: 2}},
	{ods: "VLA11", name: "Cray Valley Nursing Home", boroughs: []string{"Bexley", "Bromley"},
		units: map[spav1.Service]int32{spav1.Service_SERVICE_CARE_HOME_BED: 1}},
	{ods: "HOS10", name: "Cedarwood Hospice", boroughs: []string{"Bromley", "Bexley"}, trusted: true,
		units: map[spav1.Service]int32{spav1.Service_SERVICE_HOSPICE_BED: 2, spav1.Service_SERVICE_HOSPICE_AT_HOME: 3}},
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
		from: spav1.AdmittedFrom_ADMITTED_FROM_CARE_HOME, mobility: spav1.Mobility_MOBILITY_HOIST, carers: 2, calls: 0, in2020: true,
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
	{given: "Daniel", family: "Price", borough: "Bexley", postcode: "DA8 1AA", ward: "Acute Medical Unit", age: 49, admittedDaysAgo: 3, drdDaysAgo: 0,
		from: spav1.AdmittedFrom_ADMITTED_FROM_OTHER, mobility: spav1.Mobility_MOBILITY_INDEPENDENT, carers: 0, calls: 1},
	{given: "Joan", family: "Hughes", borough: "Bromley", postcode: "BR1 4DD", ward: "Darwin Ward", age: 70, admittedDaysAgo: 2, drdDaysAgo: 0,
		from: spav1.AdmittedFrom_ADMITTED_FROM_HOME, mobility: spav1.Mobility_MOBILITY_INDEPENDENT, carers: 0, calls: 0},
}

// demo submits the sample referrals. Their request ids are fixed for the
// day, so running demo again the same day changes nothing.
func (c *ctl) demo(ctx context.Context, args []string) error {
	if err := c.flags("demo").Parse(args); err != nil {
		return errUsage
	}
	if !c.dev {
		// It acts for many organisations; a certificate is one.
		return errors.New("demo runs against a development-mode server only: it acts as each sample provider and hospital site")
	}
	now := time.Now()
	realToday := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.Local)
	if err := c.demoProviders(ctx, now); err != nil {
		return err
	}
	for i, p := range demoPatients {
		today, occurred := realToday, (*timestamppb.Timestamp)(nil)
		if p.in2020 {
			today = time.Date(2020, 11, 20, 0, 0, 0, 0, time.Local)
			occurred = timestamppb.New(today.Add(11 * time.Hour))
		}
		date := func(daysAgo int) string { return today.AddDate(0, 0, -daysAgo).Format(spa.DateLayout) }
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
		req := &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("demo-%s-%03d", realToday.Format("20060102"), i+1), Referral: d, OccurredAt: occurred}
		var res *spav1.SubmitReferralResponse
		team := c.actingAs(ctx, identity.Identity{ODS: site, Role: authz.DischargeTeam, User: "demo"})
		if err := c.call(team, func(ctx context.Context) (err error) {
			res, err = c.client.SubmitReferral(ctx, req)
			return err
		}); err != nil {
			return fmt.Errorf("demo: %s %s: %w", p.given, p.family, err)
		}
		note := "submitted"
		if res.GetReplayed() {
			note = "already there"
		}
		if p.in2020 {
			note += "; a November 2020 record, when the infection overlay applied"
		}
		fmt.Fprintf(c.stdout, "%s  %-22s %-8s %s (sequence %d)\n", res.GetReferralId(), p.given+" "+p.family, p.borough, note, res.GetSequence())
	}
	fmt.Fprintln(c.stdout, "\nthe router offers them to providers in a moment: spa-ctl board; spa-ctl providers")
	return nil
}

// demoProviders registers the sample providers and, for any still without
// a count, their capacity.
func (c *ctl) demoProviders(ctx context.Context, now time.Time) error {
	for _, p := range demoProviders {
		d := &spav1.ProviderDetails{Ods: p.ods, Name: p.name, Boroughs: p.boroughs, TrustedAssessor: p.trusted, AcceptsInfectionPositive: p.positive}
		var caps []*spav1.Capacity
		for s := spav1.Service(1); int(s) < len(spav1.Service_name); s++ {
			if n, ok := p.units[s]; ok {
				d.Services = append(d.Services, s)
				caps = append(caps, &spav1.Capacity{Service: s, AvailableUnits: n, Open: true, AsOf: timestamppb.New(now)})
			}
		}
		ctx := c.actingAs(ctx, identity.Identity{ODS: p.ods, Role: authz.Provider, User: "demo"})
		var reg *spav1.RegisterProviderResponse
		if err := c.command(ctx, "", func(ctx context.Context, id string) (err error) {
			reg, err = c.providers.RegisterProvider(ctx, &spav1.RegisterProviderRequest{Provider: d, RequestId: id})
			return err
		}); err != nil {
			return fmt.Errorf("demo: provider %s: %w", p.ods, err)
		}
		note := "registered"
		if reg.GetUnchanged() {
			note = "already there"
		} else if err := c.command(ctx, "", func(ctx context.Context, id string) error {
			_, err := c.providers.UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: p.ods, Capacity: caps, RequestId: id})
			return err
		}); err != nil {
			return fmt.Errorf("demo: capacity of %s: %w", p.ods, err)
		}
		fmt.Fprintf(c.stdout, "%-6s %-34s %s\n", p.ods, p.name, note)
	}
	fmt.Fprintln(c.stdout)
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
