// Package codec converts between the domain core (internal/spa) and the
// protobuf messages of api/proto: the API's messages and the persisted event
// envelopes. It is the one place that knows both shapes.
package codec

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// SchemaVersion is the payload shape written by this code.
const SchemaVersion = 1

var deterministic = proto.MarshalOptions{Deterministic: true}

// MarshalRecord encodes a record's envelope and payload for the log.
func MarshalRecord(rec spa.Record) ([]byte, error) {
	env := &spav1.Envelope{
		EventId:       rec.EventID,
		SchemaVersion: SchemaVersion,
		AggregateId:   rec.AggregateID,
		OccurredAt:    timestamp(rec.OccurredAt),
		RecordedAt:    timestamp(rec.RecordedAt),
		Actor:         &spav1.Actor{Ods: rec.Actor.ODS, Role: rec.Actor.Role, User: rec.Actor.User},
		CausationId:   rec.CausationID,
		CorrelationId: rec.CorrelationID,
		PolicyVersion: rec.PolicyVersion,
		RequestId:     rec.Request.ID,
		RequestHash:   rec.Request.Hash,
		PrevHash:      rec.PrevHash,
	}
	switch e := rec.Event.(type) {
	case spa.ReferralSubmitted:
		env.Payload = &spav1.Envelope_ReferralSubmitted{ReferralSubmitted: &spav1.ReferralSubmitted{
			RequestId: e.RequestID, Details: storedDetails(e.Details), DischargeReadyDate: e.DischargeReadyDate,
		}}
	case spa.CriteriaToResideRecorded:
		env.Payload = &spav1.Envelope_CriteriaToResideRecorded{CriteriaToResideRecorded: &spav1.CriteriaToResideRecorded{
			CriteriaMet: criteriaToProto(e.CriteriaMet), AssessedOn: e.AssessedOn, DischargeReadyDate: e.DischargeReadyDate,
		}}
	case spa.InfectionTestRecorded:
		env.Payload = &spav1.Envelope_InfectionTestRecorded{InfectionTestRecorded: &spav1.InfectionTestRecorded{
			Test: storedTest(&e.Test),
		}}
	case spa.ReferralWithdrawn:
		env.Payload = &spav1.Envelope_ReferralWithdrawn{ReferralWithdrawn: &spav1.ReferralWithdrawn{
			Reason: spav1.WithdrawalReason(e.Reason), Note: e.Note,
		}}
	case spa.ProviderRegistered:
		env.Payload = &spav1.Envelope_ProviderRegistered{ProviderRegistered: &spav1.ProviderRegistered{
			Details: storedProvider(e.Details),
		}}
	case spa.CapacityUpdated:
		env.Payload = &spav1.Envelope_CapacityUpdated{CapacityUpdated: &spav1.CapacityUpdated{
			Counts: declarationsToProto(e.Capacity),
		}}
	case spa.PathwayDecided:
		env.Payload = &spav1.Envelope_PathwayDecided{PathwayDecided: &spav1.PathwayDecided{
			Pathway: spav1.Pathway(e.Pathway), Service: spav1.Service(e.Service), Rule: e.Rule, ReasonCode: e.ReasonCode,
			Inputs: e.Inputs, IsolationDays: e.IsolationDays,
		}}
	case spa.ReferralHeld:
		env.Payload = &spav1.Envelope_ReferralHeld{ReferralHeld: &spav1.ReferralHeld{
			Reason: spav1.HoldReason(e.Reason), Rule: e.Rule, Note: e.Note, Inputs: e.Inputs,
		}}
	case spa.HoldReleased:
		env.Payload = &spav1.Envelope_HoldReleased{HoldReleased: &spav1.HoldReleased{Reason: spav1.HoldReason(e.Reason), Note: e.Note}}
	case spa.AwaitingCapacity:
		env.Payload = &spav1.Envelope_AwaitingCapacity{AwaitingCapacity: &spav1.AwaitingCapacity{Service: spav1.Service(e.Service), Borough: e.Borough}}
	case spa.OfferMade:
		env.Payload = &spav1.Envelope_OfferMade{OfferMade: &spav1.OfferMade{
			AssignmentId: e.AssignmentID, ProviderOds: e.ProviderODS, Service: spav1.Service(e.Service), Inputs: e.Inputs,
		}}
	case spa.AssignmentStatusChanged:
		env.Payload = &spav1.Envelope_AssignmentStatusChanged{AssignmentStatusChanged: &spav1.AssignmentStatusChanged{
			AssignmentId: e.AssignmentID, Status: spav1.TaskStatus(e.Status), Reason: e.Reason, ProviderOds: e.ProviderODS,
		}}
	case spa.PatientLeftHospital:
		env.Payload = &spav1.Envelope_PatientLeftHospital{PatientLeftHospital: &spav1.PatientLeftHospital{LeftAt: timestamp(e.LeftAt)}}
	case spa.NothingChanged:
		env.Payload = &spav1.Envelope_NothingChanged{NothingChanged: &spav1.NothingChanged{Aggregate: string(e.Aggregate)}}
	case spa.PolicySwitched:
		env.Payload = &spav1.Envelope_PolicySwitched{PolicySwitched: &spav1.PolicySwitched{
			Rule: spav1.PolicyRule(e.Rule), On: e.On, EffectiveFrom: e.EffectiveFrom, Reason: e.Reason, EffectiveAt: timestamp(e.EffectiveAt),
		}}
	case spa.ReferralAmended:
		env.Payload = &spav1.Envelope_ReferralAmended{ReferralAmended: &spav1.ReferralAmended{
			Details: storedDetails(e.Details), Paths: e.Paths, Reason: e.Reason, ProviderOds: e.ProviderODS,
		}}
	case spa.CapacityReserved:
		env.Payload = &spav1.Envelope_CapacityReserved{CapacityReserved: &spav1.CapacityReserved{
			Service: spav1.Service(e.Service), ReferralId: e.ReferralID, AssignmentId: e.AssignmentID, Tracked: e.Tracked,
		}}
	case spa.CapacityOccupied:
		env.Payload = &spav1.Envelope_CapacityOccupied{CapacityOccupied: &spav1.CapacityOccupied{
			Service: spav1.Service(e.Service), ReferralId: e.ReferralID, AssignmentId: e.AssignmentID,
		}}
	case spa.CapacityReleased:
		env.Payload = &spav1.Envelope_CapacityReleased{CapacityReleased: &spav1.CapacityReleased{
			Service: spav1.Service(e.Service), ReferralId: e.ReferralID, AssignmentId: e.AssignmentID, Reason: e.Reason,
		}}
	case spa.ClockAlerted:
		env.Payload = &spav1.Envelope_ClockAlerted{ClockAlerted: &spav1.ClockAlerted{
			Clock: e.Clock, Level: spav1.ClockLevel(e.Level), DelayDays: e.DelayDays, StartedAt: timestamp(e.StartedAt),
			TargetSeconds: int64(e.Target / time.Second), EscalateTo: e.EscalateTo,
		}}
	default:
		return nil, fmt.Errorf("codec: unknown event type %T", rec.Event)
	}
	return deterministic.Marshal(env)
}

// UnmarshalEnvelope decodes a stored envelope's bytes, as they are: it
// checks the wire format only (RecordFromProto checks the contents).
func UnmarshalEnvelope(data []byte) (*spav1.Envelope, error) {
	env := new(spav1.Envelope)
	if err := proto.Unmarshal(data, env); err != nil {
		return nil, fmt.Errorf("codec: decode envelope: %w", err)
	}
	return env, nil
}

// UnmarshalRecord decodes a stored event at sequence seq.
func UnmarshalRecord(seq uint64, data []byte) (spa.Record, error) {
	env, err := UnmarshalEnvelope(data)
	if err != nil {
		return spa.Record{}, err
	}
	return RecordFromProto(seq, env)
}

// RecordFromProto converts a decoded envelope at sequence seq. An envelope
// whose payload this code does not know is an error: a reader older than
// the writer must not guess. So is one holding a timestamp that is not
// valid (out of range, or its nanos outside 0-999,999,999) or a clock
// target too long for a time.Duration: this code never writes one.
func RecordFromProto(seq uint64, env *spav1.Envelope) (spa.Record, error) {
	if err := validTimestamps(env.ProtoReflect()); err != nil {
		return spa.Record{}, fmt.Errorf("codec: event %d (%s): %w", seq, env.GetEventId(), err)
	}
	rec := spa.Record{
		Sequence:      seq,
		EventID:       env.GetEventId(),
		AggregateID:   env.GetAggregateId(),
		OccurredAt:    TimeFromProto(env.GetOccurredAt()),
		RecordedAt:    TimeFromProto(env.GetRecordedAt()),
		Actor:         spa.Actor{ODS: env.GetActor().GetOds(), Role: env.GetActor().GetRole(), User: env.GetActor().GetUser()},
		CausationID:   env.GetCausationId(),
		CorrelationID: env.GetCorrelationId(),
		PolicyVersion: env.GetPolicyVersion(),
		Request:       spa.Request{ID: env.GetRequestId(), Hash: env.GetRequestHash()},
		PrevHash:      env.GetPrevHash(),
	}
	switch p := env.GetPayload().(type) {
	case *spav1.Envelope_ReferralSubmitted:
		e := p.ReferralSubmitted
		rec.Event = spa.ReferralSubmitted{RequestID: e.GetRequestId(), Details: detailsFromStored(e.GetDetails()), DischargeReadyDate: e.GetDischargeReadyDate()}
	case *spav1.Envelope_CriteriaToResideRecorded:
		e := p.CriteriaToResideRecorded
		rec.Event = spa.CriteriaToResideRecorded{CriteriaMet: CriteriaFromProto(e.GetCriteriaMet()), AssessedOn: e.GetAssessedOn(), DischargeReadyDate: e.GetDischargeReadyDate()}
	case *spav1.Envelope_InfectionTestRecorded:
		t := testFromStored(p.InfectionTestRecorded.GetTest())
		if t == nil {
			t = &spa.InfectionTest{}
		}
		rec.Event = spa.InfectionTestRecorded{Test: *t}
	case *spav1.Envelope_ReferralWithdrawn:
		e := p.ReferralWithdrawn
		rec.Event = spa.ReferralWithdrawn{Reason: spa.WithdrawalReason(e.GetReason()), Note: e.GetNote()}
	case *spav1.Envelope_ProviderRegistered:
		rec.Event = spa.ProviderRegistered{Details: providerFromStored(p.ProviderRegistered.GetDetails())}
	case *spav1.Envelope_CapacityUpdated:
		rec.Event = spa.CapacityUpdated{Capacity: declarationsFromProto(p.CapacityUpdated)}
	case *spav1.Envelope_PathwayDecided:
		e := p.PathwayDecided
		rec.Event = spa.PathwayDecided{Pathway: spa.Pathway(e.GetPathway()), Service: spa.Service(e.GetService()), Rule: e.GetRule(),
			ReasonCode: e.GetReasonCode(), Inputs: nilIfEmptyMap(e.GetInputs()), IsolationDays: e.GetIsolationDays()}
	case *spav1.Envelope_ReferralHeld:
		e := p.ReferralHeld
		rec.Event = spa.ReferralHeld{Reason: spa.HoldReason(e.GetReason()), Rule: e.GetRule(), Note: e.GetNote(), Inputs: nilIfEmptyMap(e.GetInputs())}
	case *spav1.Envelope_HoldReleased:
		rec.Event = spa.HoldReleased{Reason: spa.HoldReason(p.HoldReleased.GetReason()), Note: p.HoldReleased.GetNote()}
	case *spav1.Envelope_AwaitingCapacity:
		rec.Event = spa.AwaitingCapacity{Service: spa.Service(p.AwaitingCapacity.GetService()), Borough: p.AwaitingCapacity.GetBorough()}
	case *spav1.Envelope_OfferMade:
		e := p.OfferMade
		rec.Event = spa.OfferMade{AssignmentID: e.GetAssignmentId(), ProviderODS: e.GetProviderOds(), Service: spa.Service(e.GetService()), Inputs: nilIfEmptyMap(e.GetInputs())}
	case *spav1.Envelope_AssignmentStatusChanged:
		e := p.AssignmentStatusChanged
		rec.Event = spa.AssignmentStatusChanged{AssignmentID: e.GetAssignmentId(), Status: spa.TaskStatus(e.GetStatus()), Reason: e.GetReason(), ProviderODS: e.GetProviderOds()}
	case *spav1.Envelope_PatientLeftHospital:
		rec.Event = spa.PatientLeftHospital{LeftAt: TimeFromProto(p.PatientLeftHospital.GetLeftAt())}
	case *spav1.Envelope_NothingChanged:
		rec.Event = spa.NothingChanged{Aggregate: spa.Aggregate(p.NothingChanged.GetAggregate())}
	case *spav1.Envelope_PolicySwitched:
		e := p.PolicySwitched
		rec.Event = spa.PolicySwitched{Rule: spa.PolicyRule(e.GetRule()), On: e.GetOn(), EffectiveFrom: e.GetEffectiveFrom(), Reason: e.GetReason(),
			EffectiveAt: TimeFromProto(e.GetEffectiveAt())}
	case *spav1.Envelope_ReferralAmended:
		e := p.ReferralAmended
		rec.Event = spa.ReferralAmended{Details: detailsFromStored(e.GetDetails()), Paths: e.GetPaths(), Reason: e.GetReason(), ProviderODS: e.GetProviderOds()}
	case *spav1.Envelope_CapacityReserved:
		e := p.CapacityReserved
		rec.Event = spa.CapacityReserved{Service: spa.Service(e.GetService()), ReferralID: e.GetReferralId(), AssignmentID: e.GetAssignmentId(), Tracked: e.GetTracked()}
	case *spav1.Envelope_CapacityOccupied:
		e := p.CapacityOccupied
		rec.Event = spa.CapacityOccupied{Service: spa.Service(e.GetService()), ReferralID: e.GetReferralId(), AssignmentID: e.GetAssignmentId()}
	case *spav1.Envelope_CapacityReleased:
		e := p.CapacityReleased
		rec.Event = spa.CapacityReleased{Service: spa.Service(e.GetService()), ReferralID: e.GetReferralId(), AssignmentID: e.GetAssignmentId(), Reason: e.GetReason()}
	case *spav1.Envelope_ClockAlerted:
		e := p.ClockAlerted
		if t := e.GetTargetSeconds(); t < minTargetSeconds || t > maxTargetSeconds {
			return spa.Record{}, fmt.Errorf("codec: event %d (%s): clock target of %d seconds is out of range", seq, env.GetEventId(), t)
		}
		rec.Event = spa.ClockAlerted{Clock: e.GetClock(), Level: spa.ClockLevel(e.GetLevel()), DelayDays: e.GetDelayDays(),
			StartedAt: TimeFromProto(e.GetStartedAt()), Target: time.Duration(e.GetTargetSeconds()) * time.Second, EscalateTo: e.GetEscalateTo()}
	default:
		return spa.Record{}, fmt.Errorf("codec: event %d (%s) has a payload this version does not know", seq, env.GetEventId())
	}
	return rec, nil
}

// DetailsFromProto converts API referral details; a nil message gives zero
// details, which validation then reports field by field.
func DetailsFromProto(d *spav1.ReferralDetails) spa.Details {
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
		InfectionTest:      TestFromProto(d.GetInfectionTest()),
		EndOfLife:          spa.EndOfLife{FastTrack: d.GetEndOfLife().GetFastTrack(), PreferredPlace: spa.PlaceOfCare(d.GetEndOfLife().GetPreferredPlace())},
		Consent:            spa.Consent{ShareWithProviders: d.GetConsent().GetShareWithProviders(), Preferences: d.GetConsent().GetPreferences()},
		HospitalLead:       spa.Contact{Name: d.GetHospitalLead().GetName(), Role: d.GetHospitalLead().GetRole(), Phone: d.GetHospitalLead().GetPhone()},
		CriteriaMet:        CriteriaFromProto(d.GetCriteriaMet()),
		DischargeReadyDate: d.GetDischargeReadyDate(),
		ProposedPathway:    spa.Pathway(d.GetProposedPathway()),
	}
}

// ChangesFromProto converts an amendment's changes to the details they
// set (the rest left zero).
func ChangesFromProto(c *spav1.ReferralChanges) spa.Details {
	return DetailsFromProto(&spav1.ReferralDetails{
		AdmittedFrom: c.GetAdmittedFrom(), Needs: c.GetNeeds(), Risks: c.GetRisks(), EndOfLife: c.GetEndOfLife(),
		Consent: c.GetConsent(), HospitalLead: c.GetHospitalLead(), Episode: &spav1.Episode{ExpectedDischargeDate: c.GetExpectedDischargeDate()},
	})
}

// DetailsToProto converts domain referral details.
func DetailsToProto(d spa.Details) *spav1.ReferralDetails {
	p, e, n, r := d.Patient, d.Episode, d.Needs, d.Risks
	return &spav1.ReferralDetails{
		Patient: &spav1.Patient{
			NhsNumber: p.NHSNumber, GivenName: p.GivenName, FamilyName: p.FamilyName,
			BirthDate: p.BirthDate, Postcode: p.Postcode, Borough: p.Borough, GpPracticeOds: p.GPPracticeODS,
		},
		Episode: &spav1.Episode{
			SiteOds: e.SiteODS, Ward: e.Ward, AdmissionDate: e.AdmissionDate, ExpectedDischargeDate: e.ExpectedDischargeDate,
		},
		AdmittedFrom: spav1.AdmittedFrom(d.AdmittedFrom),
		Needs: &spav1.Needs{
			Mobility: spav1.Mobility(n.Mobility), CarersPerTransfer: n.CarersPerTransfer, CareCallsPerDay: n.CareCallsPerDay,
			SafeAloneOvernight: n.SafeAloneOvernight, Equipment: n.Equipment,
			ShortTermBedBasedCare: n.ShortTermBedBasedCare, OngoingBeddedCare: n.OngoingBeddedCare,
			UrgentCommunityResponse: n.UrgentCommunityResponse,
		},
		Risks: &spav1.Risks{
			Falls: r.Falls, PressureUlcers: r.PressureUlcers, Safeguarding: r.Safeguarding, LacksMentalCapacity: r.LacksMentalCapacity,
		},
		InfectionTest:      TestToProto(d.InfectionTest),
		EndOfLife:          &spav1.EndOfLife{FastTrack: d.EndOfLife.FastTrack, PreferredPlace: spav1.PlaceOfCare(d.EndOfLife.PreferredPlace)},
		Consent:            &spav1.Consent{ShareWithProviders: d.Consent.ShareWithProviders, Preferences: d.Consent.Preferences},
		HospitalLead:       &spav1.Contact{Name: d.HospitalLead.Name, Role: d.HospitalLead.Role, Phone: d.HospitalLead.Phone},
		CriteriaMet:        criteriaToProto(d.CriteriaMet),
		DischargeReadyDate: d.DischargeReadyDate,
		ProposedPathway:    spav1.Pathway(d.ProposedPathway),
	}
}

// TestFromProto converts a test result; nil stays nil.
func TestFromProto(t *spav1.InfectionTest) *spa.InfectionTest {
	if t == nil {
		return nil
	}
	return &spa.InfectionTest{Type: spa.TestType(t.GetType()), TakenAt: TimeFromProto(t.GetTakenAt()), Result: spa.TestResult(t.GetResult())}
}

// TestToProto converts a test result; nil stays nil.
func TestToProto(t *spa.InfectionTest) *spav1.InfectionTest {
	if t == nil {
		return nil
	}
	return &spav1.InfectionTest{Type: spav1.InfectionTestType(t.Type), TakenAt: timestamp(t.TakenAt), Result: spav1.InfectionTestResult(t.Result)}
}

// CriteriaFromProto converts a list of criteria; empty gives nil.
func CriteriaFromProto(cs []spav1.CriterionToReside) []spa.Criterion {
	if len(cs) == 0 {
		return nil
	}
	out := make([]spa.Criterion, len(cs))
	for i, c := range cs {
		out[i] = spa.Criterion(c)
	}
	return out
}

func criteriaToProto(cs []spa.Criterion) []spav1.CriterionToReside {
	if len(cs) == 0 {
		return nil
	}
	out := make([]spav1.CriterionToReside, len(cs))
	for i, c := range cs {
		out[i] = spav1.CriterionToReside(c)
	}
	return out
}

// ReferralToProto converts a referral's state for the API; delay days are
// counted to now while the patient is in hospital.
func ReferralToProto(r spa.Referral, now time.Time) *spav1.Referral {
	out := &spav1.Referral{
		ReferralId:          r.ID,
		Status:              spav1.ReferralStatus(r.Status),
		Pathway:             spav1.Pathway(r.Pathway),
		Details:             DetailsToProto(r.Details),
		CriteriaMet:         criteriaToProto(r.CriteriaMet),
		DischargeReadyDate:  r.DischargeReadyDate,
		LatestInfectionTest: TestToProto(r.LatestTest),
		WithdrawalReason:    spav1.WithdrawalReason(r.WithdrawalReason),
		SubmittedAt:         timestamp(r.SubmittedAt),
		UpdatedAt:           timestamp(r.UpdatedAt),
		Version:             r.Version,
		Service:             spav1.Service(r.Service),
		HoldReason:          spav1.HoldReason(r.Hold),
		LeftHospitalAt:      timestamp(r.LeftHospitalAt),
		DecisionRule:        r.DecisionRule,
		PolicyVersion:       r.PolicyVersion,
		DelayDays:           int32(r.DelayDays(now)),
	}
	for _, a := range r.Assignments {
		out.Assignments = append(out.Assignments, AssignmentToProto(r.ID, a))
	}
	for _, a := range r.Alerts {
		out.Alerts = append(out.Alerts, &spav1.ClockAlert{Clock: a.Clock, Level: spav1.ClockLevel(a.Level), DelayDays: a.DelayDays, At: timestamp(a.At), EscalateTo: a.EscalateTo,
			StartedAt: timestamp(a.StartedAt)})
	}
	return out
}

// AssignmentToProto converts one assignment of a referral.
func AssignmentToProto(referralID string, a spa.Assignment) *spav1.Assignment {
	return &spav1.Assignment{
		AssignmentId: a.ID, ReferralId: referralID, ProviderOds: a.ProviderODS, Service: spav1.Service(a.Service),
		Status: spav1.TaskStatus(a.Status), Reason: a.Reason, OfferedAt: timestamp(a.OfferedAt), UpdatedAt: timestamp(a.UpdatedAt),
	}
}

// SummaryToProto converts a referral's state to a board row.
func SummaryToProto(r spa.Referral, now time.Time) *spav1.ReferralSummary {
	p := r.Details.Patient
	out := &spav1.ReferralSummary{
		ReferralId:         r.ID,
		Status:             spav1.ReferralStatus(r.Status),
		Pathway:            spav1.Pathway(r.Pathway),
		SiteOds:            r.Details.Episode.SiteODS,
		Ward:               r.Details.Episode.Ward,
		NhsNumber:          p.NHSNumber,
		PatientName:        p.FamilyName + ", " + p.GivenName,
		DischargeReadyDate: r.DischargeReadyDate,
		SubmittedAt:        timestamp(r.SubmittedAt),
		Version:            r.Version,
		Service:            spav1.Service(r.Service),
		DelayDays:          int32(r.DelayDays(now)),
		HoldReason:         spav1.HoldReason(r.Hold),
	}
	if a := r.LiveAssignment(); a != nil {
		out.ProviderOds = a.ProviderODS
	}
	for _, a := range r.Alerts {
		if a.Level != spa.ClockDelayFlag {
			out.ClockLevel = max(out.ClockLevel, spav1.ClockLevel(a.Level))
		}
		if (a.Level == spa.ClockBreach || a.Level == spa.ClockEscalation) && !slices.Contains(out.BreachedClocks, a.Clock) {
			out.BreachedClocks = append(out.BreachedClocks, a.Clock)
		}
	}
	if out.ClockLevel == spav1.ClockLevel_CLOCK_LEVEL_UNSPECIFIED && len(r.Alerts) > 0 {
		out.ClockLevel = spav1.ClockLevel_CLOCK_LEVEL_DELAY_FLAG
	}
	return out
}

func nilIfEmptyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// TimeFromProto converts a time a client sent: nil is the zero time (none
// sent); a Timestamp that is not valid (out of range, or its nanos outside
// 0-999,999,999) is spa.InvalidTime, which validation reports as a field
// violation. Stored events are checked before conversion instead (see
// RecordFromProto), so for them this is plain AsTime.
func TimeFromProto(ts *timestamppb.Timestamp) time.Time {
	switch {
	case ts == nil:
		return time.Time{}
	case ts.CheckValid() != nil:
		return spa.InvalidTime()
	}
	return ts.AsTime()
}

// The clock targets a time.Duration holds, in whole seconds.
const (
	minTargetSeconds = int64(math.MinInt64 / time.Second)
	maxTargetSeconds = int64(math.MaxInt64 / time.Second)
)

// validTimestamps returns an error naming the first Timestamp in m, at any
// depth, that is not valid.
func validTimestamps(m protoreflect.Message) error {
	if ts, ok := m.Interface().(*timestamppb.Timestamp); ok {
		return ts.CheckValid()
	}
	for _, fd := range timestampFields[m.Descriptor().FullName()] {
		if !m.Has(fd) {
			continue
		}
		var err error
		switch v := m.Get(fd); {
		case fd.IsList():
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = validTimestamps(v.List().Get(i).Message())
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = validTimestamps(mv.Message())
				return err == nil
			})
		default:
			err = validTimestamps(v.Message())
		}
		if err != nil {
			return fmt.Errorf("%s: %w", fd.Name(), err)
		}
	}
	return nil
}

// timestampFields lists, for the envelope and each message it can hold,
// the fields that can hold a Timestamp at some depth: the only ones
// validTimestamps needs to look at. A Timestamp added to a persisted
// message is checked without a change here.
var timestampFields = func() map[protoreflect.FullName][]protoreflect.FieldDescriptor {
	out := map[protoreflect.FullName][]protoreflect.FieldDescriptor{}
	reaches := map[protoreflect.FullName]bool{}
	var visit func(md protoreflect.MessageDescriptor) bool
	visit = func(md protoreflect.MessageDescriptor) bool {
		if md.FullName() == "google.protobuf.Timestamp" {
			return true
		}
		if r, seen := reaches[md.FullName()]; seen {
			return r
		}
		// Persisted messages do not nest themselves; one that did would
		// be cut off here, at its second appearance.
		reaches[md.FullName()] = false
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			sub := fd.Message()
			if fd.IsMap() {
				sub = fd.MapValue().Message()
			}
			if sub != nil && visit(sub) {
				out[md.FullName()] = append(out[md.FullName()], fd)
			}
		}
		reaches[md.FullName()] = len(out[md.FullName()]) > 0
		return reaches[md.FullName()]
	}
	visit((&spav1.Envelope{}).ProtoReflect().Descriptor())
	return out
}()

// ListQueryFromProto converts a board request to the domain's query.
func ListQueryFromProto(req *spav1.ListReferralsRequest) spa.ListQuery {
	return spa.ListQuery{
		Status:    spa.Status(req.GetStatus()),
		Pathway:   spa.Pathway(req.GetPathway()),
		SiteODS:   req.GetSiteOds(),
		PageSize:  req.GetPageSize(),
		PageToken: req.GetPageToken(),
	}
}

// ProviderDetailsFromProto converts a provider registration.
func ProviderDetailsFromProto(d *spav1.ProviderDetails) spa.ProviderDetails {
	out := spa.ProviderDetails{
		ODS: d.GetOds(), Name: d.GetName(), Boroughs: nilIfEmpty(d.GetBoroughs()),
		TrustedAssessor: d.GetTrustedAssessor(), AcceptsInfectionPositive: d.GetAcceptsInfectionPositive(),
	}
	for _, s := range d.GetServices() {
		out.Services = append(out.Services, spa.Service(s))
	}
	return out
}

// ProviderDetailsToProto converts a provider registration.
func ProviderDetailsToProto(d spa.ProviderDetails) *spav1.ProviderDetails {
	out := &spav1.ProviderDetails{
		Ods: d.ODS, Name: d.Name, Boroughs: d.Boroughs,
		TrustedAssessor: d.TrustedAssessor, AcceptsInfectionPositive: d.AcceptsInfectionPositive,
	}
	for _, s := range d.Services {
		out.Services = append(out.Services, spav1.Service(s))
	}
	return out
}

// CapacitiesFromProto converts the counts of an UpdateCapacity request
// (available_units is the declared count); empty gives nil.
func CapacitiesFromProto(cs []*spav1.Capacity) []spa.Capacity {
	var out []spa.Capacity
	for _, c := range cs {
		out = append(out, spa.Capacity{Service: spa.Service(c.GetService()), Available: c.GetAvailableUnits(), Open: c.GetOpen(), AsOf: TimeFromProto(c.GetAsOf())})
	}
	return out
}

// capacitiesToProto converts a provider's capacity for the API.
func capacitiesToProto(cs []spa.Capacity) []*spav1.Capacity {
	var out []*spav1.Capacity
	for _, c := range cs {
		out = append(out, &spav1.Capacity{Service: spav1.Service(c.Service), AvailableUnits: c.Available, Open: c.Open, AsOf: timestamp(c.AsOf),
			DeclaredUnits: c.Declared, ReservedUnits: c.Reserved})
	}
	return out
}

// ProviderToProto converts a provider's state for the API.
func ProviderToProto(p spa.Provider) *spav1.Provider {
	return &spav1.Provider{Details: ProviderDetailsToProto(p.Details), Capacity: capacitiesToProto(p.Capacity), Version: p.Version}
}

// DecodeStored decodes a stored event: UnmarshalRecord, and CheckSubject.
// A reader must not guess at an event that fails either.
func DecodeStored(e spa.StoredEvent) (spa.Record, error) {
	rec, err := UnmarshalRecord(e.Sequence, e.Data)
	if err != nil {
		return rec, err
	}
	return rec, CheckSubject(rec, e.Subject)
}

// CheckSubject checks that a decoded event holds an event, and was stored
// on its own aggregate's subject.
func CheckSubject(rec spa.Record, subject string) error {
	if rec.Event == nil {
		return errors.New("codec: no event in the envelope")
	}
	if want := spa.SubjectOf(spa.AggregateOf(rec.Event), rec.AggregateID); want != subject {
		return fmt.Errorf("codec: a %s of %s stored on %s", spa.EventName(rec.Event), want, subject)
	}
	return nil
}

// PoliciesToProto lists policy versions.
func PoliciesToProto(ps spa.Policies) *spav1.ListPoliciesResponse {
	out := &spav1.ListPoliciesResponse{}
	for _, p := range ps {
		out.Versions = append(out.Versions, &spav1.PolicyVersion{Version: p.Version, EffectiveFrom: timestamp(p.From), InfectionOverlay: p.InfectionOverlay,
			IsolationDays: p.IsolationDays, TestValidityHours: int32(p.TestValidity / time.Hour)})
	}
	return out
}
