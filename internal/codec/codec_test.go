package codec

import (
	"encoding/hex"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

func fullDetails() spa.Details {
	return spa.Details{
		Patient:      spa.Patient{NHSNumber: "9434765919", GivenName: "Margaret", FamilyName: "Thompson", BirthDate: "1942-03-14", Postcode: "BR1 3JH", Borough: "Bromley", GPPracticeODS: "G84001"},
		Episode:      spa.Episode{SiteODS: "RH802", Ward: "Darwin Ward", AdmissionDate: "2026-11-16", ExpectedDischargeDate: "2026-11-24"},
		AdmittedFrom: spa.AdmittedFromCareHome,
		Needs: spa.Needs{Mobility: spa.MobilityHoist, CarersPerTransfer: 2, CareCallsPerDay: 4, SafeAloneOvernight: true,
			Equipment: []string{"hoist", "commode"}, ShortTermBedBasedCare: true, OngoingBeddedCare: true},
		Risks:              spa.Risks{Falls: true, PressureUlcers: true, Safeguarding: true, LacksMentalCapacity: true},
		InfectionTest:      &spa.InfectionTest{Type: spa.TestTypeLateralFlow, TakenAt: time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC), Result: spa.TestResultPositive},
		EndOfLife:          spa.EndOfLife{FastTrack: true, PreferredPlace: spa.PlaceOfCareHospice},
		Consent:            spa.Consent{ShareWithProviders: true, Preferences: "daughter to be told first"},
		HospitalLead:       spa.Contact{Name: "Ada Obi", Role: "discharge coordinator", Phone: "020 8000 1234"},
		CriteriaMet:        []spa.Criterion{spa.CriterionOxygen, spa.CriterionIVFluids},
		DischargeReadyDate: "2026-11-21",
		ProposedPathway:    spa.PathwayEndOfLife,
	}
}

func TestDetailsRoundTrip(t *testing.T) {
	t.Parallel()
	for name, d := range map[string]spa.Details{"full": fullDetails(), "empty": {}} {
		if diff := cmp.Diff(d, DetailsFromProto(DetailsToProto(d))); diff != "" {
			t.Errorf("%s details round trip (-want +got):\n%s", name, diff)
		}
	}
	if diff := cmp.Diff(spa.Details{}, DetailsFromProto(nil)); diff != "" {
		t.Errorf("nil details (-want +got):\n%s", diff)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 9, 30, 0, 123, time.UTC)
	base := spa.Record{Sequence: 42, EventID: "e1", AggregateID: "ref-7btv6dkkq64y5tep", OccurredAt: at, RecordedAt: at.Add(time.Millisecond),
		Actor: spa.Actor{ODS: "RH802", Role: "discharge-coordinator", User: "ada"}, CausationID: "req-1", CorrelationID: "corr-1", PolicyVersion: "p1",
		Request: spa.Request{ID: "req-00000002", Hash: []byte{1, 2, 3}}}
	events := []spa.Event{
		spa.ReferralSubmitted{RequestID: "req-00000001", Details: fullDetails(), DischargeReadyDate: "2026-11-21"},
		spa.CriteriaToResideRecorded{CriteriaMet: []spa.Criterion{spa.CriterionNEWS2Above3}, AssessedOn: "2026-11-22"},
		spa.CriteriaToResideRecorded{AssessedOn: "2026-11-22", DischargeReadyDate: "2026-11-22"},
		spa.InfectionTestRecorded{Test: spa.InfectionTest{Type: spa.TestTypePCR, TakenAt: at, Result: spa.TestResultNegative}},
		spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonDied, Note: "peacefully"},
		spa.ProviderRegistered{Details: spa.ProviderDetails{ODS: "VLAXL", Name: "Elmwood Care Home", Boroughs: []string{"Bexley", "Bromley"},
			Services: []spa.Service{spa.ServiceDesignatedStepDownBed, spa.ServiceCareHomeBed}, TrustedAssessor: true, AcceptsInfectionPositive: true}},
		spa.PathwayDecided{Pathway: spa.PathwayP2StepDown, Service: spa.ServiceDesignatedStepDownBed, Rule: spa.RuleInfectionOverlay, ReasonCode: "x", Inputs: map[string]string{"a": "b"}, IsolationDays: 14},
		spa.ReferralHeld{Reason: spa.HoldReasonAwaitingTest, Rule: spa.RuleInfectionOverlay, Note: "n", Inputs: map[string]string{"test": "none"}},
		spa.HoldReleased{Reason: spa.HoldReasonHousing, Note: "flat found"},
		spa.AwaitingCapacity{Service: spa.ServiceCareHomeBed, Borough: "Bromley"},
		spa.OfferMade{AssignmentID: "ref-7btv6dkkq64y5tep-a1", ProviderODS: "VLAXL", Service: spa.ServiceCareHomeBed, Inputs: map[string]string{"candidates": "VLAXL"}},
		spa.AssignmentStatusChanged{AssignmentID: "ref-7btv6dkkq64y5tep-a1", Status: spa.TaskRejected, Reason: "full", ProviderODS: "VLAXL"},
		spa.PatientLeftHospital{LeftAt: at},
		spa.CapacityReserved{Service: spa.ServiceCareHomeBed, ReferralID: "ref-7btv6dkkq64y5tep", AssignmentID: "ref-7btv6dkkq64y5tep-a1", Tracked: true},
		spa.CapacityReleased{Service: spa.ServiceCareHomeBed, ReferralID: "ref-7btv6dkkq64y5tep", AssignmentID: "ref-7btv6dkkq64y5tep-a1", Reason: "declined"},
		spa.CapacityOccupied{Service: spa.ServiceCareHomeBed, ReferralID: "ref-7btv6dkkq64y5tep", AssignmentID: "ref-7btv6dkkq64y5tep-a1"},
		spa.ClockAlerted{Clock: spa.ClockSameDayDischarge, Level: spa.ClockDelayFlag, DelayDays: 7, StartedAt: at, Target: 24 * time.Hour, EscalateTo: spa.EscalateCoordinator},
		spa.CapacityUpdated{Capacity: []spa.Capacity{{Service: spa.ServiceCareHomeBed, Available: 3, Open: true, AsOf: at}, {Service: spa.ServiceHospiceBed, AsOf: at}}},
		spa.ReferralAmended{Details: fullDetails(), Paths: []string{"needs", "risks"}, Reason: "reassessed", ProviderODS: "VLAXL"},
		spa.PolicySwitched{Rule: spa.PolicyRuleInfectionOverlay, On: true, EffectiveFrom: "2026-12-01", Reason: "outbreak"},
		spa.NothingChanged{Aggregate: spa.AggregateReferral},
	}
	golden := readGolden(t)
	var written []string
	for _, e := range events {
		rec := base
		rec.Event = e
		data, err := MarshalRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalRecord(42, data)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(rec, got); diff != "" {
			t.Errorf("%s round trip (-want +got):\n%s", spa.EventName(e), diff)
		}
		again, _ := MarshalRecord(got)
		if string(again) != string(data) {
			t.Errorf("%s: encoding is not deterministic", spa.EventName(e))
		}
		// What is stored never changes: the bytes are those this event
		// was first stored as.
		written = append(written, hex.EncodeToString(data))
		if i := len(written) - 1; !*update && (i >= len(golden) || golden[i] != written[i]) {
			t.Errorf("%s is stored differently from %s line %d: a change to the persisted schema", spa.EventName(e), goldenFile, i+1)
		}
	}
	if !*update && len(golden) != len(written) {
		t.Errorf("%s has %d lines for %d events", goldenFile, len(golden), len(written))
	}
	if *update {
		if err := os.WriteFile(goldenFile, []byte(strings.Join(written, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// goldenFile holds the stored bytes of TestRecordRoundTrip's events, one
// hex line each, as first written (go test -run TestRecordRoundTrip
// -update writes them, for a new event only).
const goldenFile = "testdata/records.golden"

var update = flag.Bool("update", false, "write "+goldenFile)

func readGolden(t *testing.T) []string {
	data, err := os.ReadFile(goldenFile)
	if err != nil {
		if *update {
			return nil
		}
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// TestLegacyCapacityUpdated: a CapacityUpdated stored by an earlier
// version, its counts in the API's Capacity message, reads as the same
// declaration as one stored now.
func TestLegacyCapacityUpdated(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
	want := spa.CapacityUpdated{Capacity: []spa.Capacity{{Service: spa.ServiceCareHomeBed, Available: 3, Open: true, AsOf: at}}}
	legacy, err := deterministic.Marshal(&spav1.Envelope{EventId: "e1", SchemaVersion: 1, OccurredAt: timestamp(at), RecordedAt: timestamp(at),
		Payload: &spav1.Envelope_CapacityUpdated{CapacityUpdated: &spav1.CapacityUpdated{
			Capacity: []*spav1.StoredCapacity{{Service: spav1.Service_SERVICE_CARE_HOME_BED, AvailableUnits: 3, Open: true, AsOf: timestamp(at)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalRecord(1, legacy)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(spa.Event(want), got.Event); diff != "" {
		t.Fatalf("legacy CapacityUpdated (-want +got):\n%s", diff)
	}
}

func TestUnknownPayloadIsAnError(t *testing.T) {
	t.Parallel()
	data, err := deterministic.Marshal(&spav1.Envelope{EventId: "from-the-future", SchemaVersion: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnmarshalRecord(7, data); err == nil {
		t.Fatal("an envelope without a known payload decoded")
	}
	if _, err := UnmarshalRecord(7, []byte{0xff, 0xff}); err == nil {
		t.Fatal("garbage decoded")
	}
}
