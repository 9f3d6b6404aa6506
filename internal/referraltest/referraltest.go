// Package referraltest makes valid referrals for tests that go through
// the API: a different patient, with a valid NHS number, for each i.
package referraltest

import (
	"fmt"
	"time"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// Details returns valid details of patient i: admitted from home to a
// Bromley ward three days ago, walking with an aid, two care calls a day.
func Details(i int) *spav1.ReferralDetails {
	return &spav1.ReferralDetails{
		Patient: &spav1.Patient{NhsNumber: NHSNumber(i), GivenName: "Patient", FamilyName: fmt.Sprintf("Number %d", i),
			BirthDate: "1944-05-06", Postcode: "BR1 3JH", Borough: "Bromley"},
		Episode:      &spav1.Episode{SiteOds: "RH802", Ward: "Darwin Ward", AdmissionDate: time.Now().AddDate(0, 0, -3).Format(spa.DateLayout)},
		AdmittedFrom: spav1.AdmittedFrom_ADMITTED_FROM_HOME,
		Needs:        &spav1.Needs{Mobility: spav1.Mobility_MOBILITY_WALKING_AID, CareCallsPerDay: 2},
		HospitalLead: &spav1.Contact{Name: "Ada Obi", Phone: "020 8000 1234"},
	}
}

// NHSNumber returns a valid NHS number for patient i, a different one for
// each i below ten million.
func NHSNumber(i int) string {
	for n := i * 11; ; n++ {
		base := fmt.Sprintf("4%08d", n%100000000)
		for d := '0'; d <= '9'; d++ {
			if s := base + string(d); spa.CheckNHSNumber(s) == "" {
				return s
			}
		}
	}
}
