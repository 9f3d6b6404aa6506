package codec

import (
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// The domain <-> stored-event mapping of the messages events embed: the
// Stored* messages, kept apart from the API's (codec.go maps those), so
// that a change to the API never changes what is stored.

func storedDetails(d spa.Details) *spav1.StoredReferralDetails {
	p, e, n, r := d.Patient, d.Episode, d.Needs, d.Risks
	return &spav1.StoredReferralDetails{
		Patient: &spav1.StoredPatient{
			NhsNumber: p.NHSNumber, GivenName: p.GivenName, FamilyName: p.FamilyName,
			BirthDate: p.BirthDate, Postcode: p.Postcode, Borough: p.Borough, GpPracticeOds: p.GPPracticeODS,
		},
		Episode: &spav1.StoredEpisode{
			SiteOds: e.SiteODS, Ward: e.Ward, AdmissionDate: e.AdmissionDate, ExpectedDischargeDate: e.ExpectedDischargeDate,
		},
		AdmittedFrom: spav1.AdmittedFrom(d.AdmittedFrom),
		Needs: &spav1.StoredNeeds{
			Mobility: spav1.Mobility(n.Mobility), CarersPerTransfer: n.CarersPerTransfer, CareCallsPerDay: n.CareCallsPerDay,
			SafeAloneOvernight: n.SafeAloneOvernight, Equipment: n.Equipment,
			ShortTermBedBasedCare: n.ShortTermBedBasedCare, OngoingBeddedCare: n.OngoingBeddedCare,
			UrgentCommunityResponse: n.UrgentCommunityResponse,
		},
		Risks: &spav1.StoredRisks{
			Falls: r.Falls, PressureUlcers: r.PressureUlcers, Safeguarding: r.Safeguarding, LacksMentalCapacity: r.LacksMentalCapacity,
		},
		InfectionTest:      storedTest(d.InfectionTest),
		EndOfLife:          &spav1.StoredEndOfLife{FastTrack: d.EndOfLife.FastTrack, PreferredPlace: spav1.PlaceOfCare(d.EndOfLife.PreferredPlace)},
		Consent:            &spav1.StoredConsent{ShareWithProviders: d.Consent.ShareWithProviders, Preferences: d.Consent.Preferences},
		HospitalLead:       &spav1.StoredContact{Name: d.HospitalLead.Name, Role: d.HospitalLead.Role, Phone: d.HospitalLead.Phone},
		CriteriaMet:        criteriaToProto(d.CriteriaMet),
		DischargeReadyDate: d.DischargeReadyDate,
		ProposedPathway:    spav1.Pathway(d.ProposedPathway),
	}
}

func detailsFromStored(d *spav1.StoredReferralDetails) spa.Details {
	p, e, n, r := d.GetPatient(), d.GetEpisode(), d.GetNeeds(), d.GetRisks()
	return spa.Details{
		Patient: spa.Patient{
			NHSNumber: p.GetNhsNumber(), GivenName: p.GetGivenName(), FamilyName: p.GetFamilyName(),
			BirthDate: p.GetBirthDate(), Postcode: p.GetPostcode(), Borough: p.GetBorough(), GPPracticeODS: p.GetGpPracticeOds(),
		},
		Episode: spa.Episode{
			SiteODS: e.GetSiteOds(), Ward: e.GetWard(), AdmissionDate: e.GetAdmissionDate(), ExpectedDischargeDate: e.GetExpectedDischargeDate(),
		},
		AdmittedFrom: spa.AdmittedFrom(d.GetAdmittedFrom()),
		Needs: spa.Needs{
			Mobility: spa.Mobility(n.GetMobility()), CarersPerTransfer: n.GetCarersPerTransfer(), CareCallsPerDay: n.GetCareCallsPerDay(),
			SafeAloneOvernight: n.GetSafeAloneOvernight(), Equipment: nilIfEmpty(n.GetEquipment()),
			ShortTermBedBasedCare: n.GetShortTermBedBasedCare(), OngoingBeddedCare: n.GetOngoingBeddedCare(),
			UrgentCommunityResponse: n.GetUrgentCommunityResponse(),
		},
		Risks: spa.Risks{
			Falls: r.GetFalls(), PressureUlcers: r.GetPressureUlcers(), Safeguarding: r.GetSafeguarding(), LacksMentalCapacity: r.GetLacksMentalCapacity(),
		},
		InfectionTest:      testFromStored(d.GetInfectionTest()),
		EndOfLife:          spa.EndOfLife{FastTrack: d.GetEndOfLife().GetFastTrack(), PreferredPlace: spa.PlaceOfCare(d.GetEndOfLife().GetPreferredPlace())},
		Consent:            spa.Consent{ShareWithProviders: d.GetConsent().GetShareWithProviders(), Preferences: d.GetConsent().GetPreferences()},
		HospitalLead:       spa.Contact{Name: d.GetHospitalLead().GetName(), Role: d.GetHospitalLead().GetRole(), Phone: d.GetHospitalLead().GetPhone()},
		CriteriaMet:        CriteriaFromProto(d.GetCriteriaMet()),
		DischargeReadyDate: d.GetDischargeReadyDate(),
		ProposedPathway:    spa.Pathway(d.GetProposedPathway()),
	}
}

func storedTest(t *spa.InfectionTest) *spav1.StoredInfectionTest {
	if t == nil {
		return nil
	}
	return &spav1.StoredInfectionTest{Type: spav1.InfectionTestType(t.Type), TakenAt: timestamp(t.TakenAt), Result: spav1.InfectionTestResult(t.Result)}
}

func testFromStored(t *spav1.StoredInfectionTest) *spa.InfectionTest {
	if t == nil {
		return nil
	}
	return &spa.InfectionTest{Type: spa.TestType(t.GetType()), TakenAt: TimeFromProto(t.GetTakenAt()), Result: spa.TestResult(t.GetResult())}
}

func storedProvider(d spa.ProviderDetails) *spav1.StoredProviderDetails {
	out := &spav1.StoredProviderDetails{
		Ods: d.ODS, Name: d.Name, Boroughs: d.Boroughs,
		TrustedAssessor: d.TrustedAssessor, AcceptsInfectionPositive: d.AcceptsInfectionPositive,
	}
	for _, s := range d.Services {
		out.Services = append(out.Services, spav1.Service(s))
	}
	return out
}

func providerFromStored(d *spav1.StoredProviderDetails) spa.ProviderDetails {
	out := spa.ProviderDetails{
		ODS: d.GetOds(), Name: d.GetName(), Boroughs: nilIfEmpty(d.GetBoroughs()),
		TrustedAssessor: d.GetTrustedAssessor(), AcceptsInfectionPositive: d.GetAcceptsInfectionPositive(),
	}
	for _, s := range d.GetServices() {
		out.Services = append(out.Services, spa.Service(s))
	}
	return out
}

// declarationsToProto and declarationsFromProto convert a CapacityUpdated
// event's counts (Available is the declared count).
func declarationsToProto(cs []spa.Capacity) []*spav1.CapacityDeclaration {
	var out []*spav1.CapacityDeclaration
	for _, c := range cs {
		out = append(out, &spav1.CapacityDeclaration{Service: spav1.Service(c.Service), Units: c.Available, Open: c.Open, AsOf: timestamp(c.AsOf)})
	}
	return out
}

func declarationsFromProto(e *spav1.CapacityUpdated) []spa.Capacity {
	var out []spa.Capacity
	for _, c := range e.GetCapacity() { // stored by versions before 0.3
		out = append(out, spa.Capacity{Service: spa.Service(c.GetService()), Available: c.GetAvailableUnits(), Open: c.GetOpen(), AsOf: TimeFromProto(c.GetAsOf())})
	}
	if len(out) > 0 {
		return out
	}
	for _, c := range e.GetCounts() {
		out = append(out, spa.Capacity{Service: spa.Service(c.GetService()), Available: c.GetUnits(), Open: c.GetOpen(), AsOf: TimeFromProto(c.GetAsOf())})
	}
	return out
}
