package spa

import (
	"slices"
	"strings"
	"time"
)

// AdmittedFrom is where the patient lived before this admission.
type AdmittedFrom int32

// Where a patient was admitted from.
const (
	AdmittedFromUnspecified AdmittedFrom = iota
	AdmittedFromHome
	AdmittedFromCareHome
	AdmittedFromOther
	admittedFromEnd
)

// Pathway is a discharge pathway.
type Pathway int32

// The discharge pathways.
const (
	PathwayUnspecified Pathway = iota
	PathwayP0Home
	PathwayP1HomeFirst
	PathwayP2StepDown
	PathwayP3CareHome
	PathwayEndOfLife
	pathwayEnd
)

// Criterion is one of the national criteria to reside.
type Criterion int32

// The criteria to reside.
const (
	CriterionUnspecified Criterion = iota
	CriterionITUHDU
	CriterionOxygen
	CriterionIVFluids
	CriterionNEWS2Above3
	CriterionReducedConsciousness
	CriterionIVAnalgesia
	CriterionAcuteFunctionalImpairment
	CriterionLastHoursOfLife
	CriterionIVMedication
	CriterionInterventionWithin48h
	criterionEnd
)

// Mobility is how the patient moves and transfers.
type Mobility int32

// Mobility levels.
const (
	MobilityUnspecified Mobility = iota
	MobilityIndependent
	MobilityWalkingAid
	MobilityAssisted
	MobilityHoist
	MobilityBedBound
	mobilityEnd
)

// TestType is the kind of infection test.
type TestType int32

// Infection test types.
const (
	TestTypeUnspecified TestType = iota
	TestTypePCR
	TestTypeLateralFlow
	testTypeEnd
)

// TestResult is an infection test's outcome.
type TestResult int32

// Infection test results.
const (
	TestResultUnspecified TestResult = iota
	TestResultNegative
	TestResultPositive
	testResultEnd
)

// PlaceOfCare is an end-of-life patient's preferred place of care.
type PlaceOfCare int32

// Places of care.
const (
	PlaceOfCareUnspecified PlaceOfCare = iota
	PlaceOfCareHome
	PlaceOfCareHospice
	PlaceOfCareNursingHome
	placeOfCareEnd
)

// Status is where a referral stands on the board.
type Status int32

// Referral statuses.
const (
	StatusUnspecified Status = iota
	StatusNotReady
	StatusReady
	StatusWithdrawn
	StatusHeld
	StatusPathwayDecided
	StatusAwaitingCapacity
	StatusOffered
	StatusAccepted
	StatusInProgress
	StatusCompleted
	StatusWardLed
	statusEnd
)

// HoldReason says why a referral is on hold.
type HoldReason int32

// Hold reasons.
const (
	HoldReasonUnspecified HoldReason = iota
	HoldReasonMentalCapacity
	HoldReasonSafeguarding
	HoldReasonHousing
	HoldReasonChoiceDispute
	HoldReasonFundingDispute
	HoldReasonAwaitingTest
	holdReasonEnd
)

// WithdrawalReason says why a referral was withdrawn.
type WithdrawalReason int32

// Withdrawal reasons.
const (
	WithdrawalReasonUnspecified WithdrawalReason = iota
	WithdrawalReasonDeteriorated
	WithdrawalReasonDied
	WithdrawalReasonSelfDischarged
	WithdrawalReasonNoLongerNeeded
	WithdrawalReasonEnteredInError
	withdrawalReasonEnd
)

// Patient identifies the person.
type Patient struct {
	NHSNumber     string
	GivenName     string
	FamilyName    string
	BirthDate     string
	Postcode      string
	Borough       string
	GPPracticeODS string
}

// Episode is the hospital stay.
type Episode struct {
	SiteODS               string
	Ward                  string
	AdmissionDate         string
	ExpectedDischargeDate string
}

// Needs are the care needs on discharge.
type Needs struct {
	Mobility              Mobility
	CarersPerTransfer     int32
	CareCallsPerDay       int32
	SafeAloneOvernight    bool
	Equipment             []string
	ShortTermBedBasedCare bool
	OngoingBeddedCare     bool
	// UrgentCommunityResponse asks for a visit at home within 2 hours of
	// the referral (in the SPA's operating hours).
	UrgentCommunityResponse bool
}

// Risks flags known risks.
type Risks struct {
	Falls               bool
	PressureUlcers      bool
	Safeguarding        bool
	LacksMentalCapacity bool
}

// InfectionTest is one test result.
type InfectionTest struct {
	Type    TestType
	TakenAt time.Time
	Result  TestResult
}

// EndOfLife records a fast-track decision.
type EndOfLife struct {
	FastTrack      bool
	PreferredPlace PlaceOfCare
}

// Consent records consent and preferences.
type Consent struct {
	ShareWithProviders bool
	Preferences        string
}

// Contact is the hospital lead for the discharge.
type Contact struct {
	Name  string
	Role  string
	Phone string
}

// Details is everything a discharge team states when referring.
type Details struct {
	Patient            Patient
	Episode            Episode
	AdmittedFrom       AdmittedFrom
	Needs              Needs
	Risks              Risks
	InfectionTest      *InfectionTest
	EndOfLife          EndOfLife
	Consent            Consent
	HospitalLead       Contact
	CriteriaMet        []Criterion
	DischargeReadyDate string
	ProposedPathway    Pathway
}

// Event is a fact. Each concrete type maps to one persisted protobuf
// message and belongs to one kind of aggregate.
type Event interface {
	eventName() string
	aggregate() Aggregate
}

// Aggregate is a kind of aggregate; each has its own subjects
// (spa.<aggregate>.<id>).
type Aggregate string

// The aggregates.
const (
	AggregateReferral Aggregate = "referral"
	AggregateProvider Aggregate = "provider"
)

// ValidAggregateID reports whether id is a well-formed id of an aggregate
// of kind agg: a referral id, or a provider's ODS code.
func ValidAggregateID(agg Aggregate, id string) bool {
	switch agg {
	case AggregateReferral:
		return IsReferralID(id)
	case AggregateProvider:
		return IsODSCode(id)
	case AggregatePolicy:
		for _, p := range policyRuleIDs {
			if p == id {
				return true
			}
		}
	}
	return false
}

// AggregateOf returns the kind of aggregate an event belongs to.
func AggregateOf(e Event) Aggregate { return e.aggregate() }

// SubjectOf returns the subject an aggregate's events are stored on,
// spa.<aggregate>.<id>. Persisted: never change it.
func SubjectOf(agg Aggregate, id string) string { return "spa." + string(agg) + "." + id }

// AggregateOfSubject returns the aggregate and id whose events a subject
// holds.
func AggregateOfSubject(subject string) (Aggregate, string, bool) {
	for _, agg := range []Aggregate{AggregateReferral, AggregateProvider, AggregatePolicy} {
		if id, ok := strings.CutPrefix(subject, SubjectOf(agg, "")); ok && id != "" {
			return agg, id, true
		}
	}
	return "", "", false
}

// ReferralSubmitted: a discharge team referred a patient.
type ReferralSubmitted struct {
	RequestID          string
	Details            Details
	DischargeReadyDate string
}

// CriteriaToResideRecorded: the ward reassessed the criteria to reside.
type CriteriaToResideRecorded struct {
	CriteriaMet        []Criterion
	AssessedOn         string
	DischargeReadyDate string
}

// InfectionTestRecorded: a test result was reported.
type InfectionTestRecorded struct {
	Test InfectionTest
}

// ReferralWithdrawn: the hospital withdrew the referral.
type ReferralWithdrawn struct {
	Reason WithdrawalReason
	Note   string
}

func (ReferralSubmitted) eventName() string        { return "ReferralSubmitted" }
func (CriteriaToResideRecorded) eventName() string { return "CriteriaToResideRecorded" }
func (InfectionTestRecorded) eventName() string    { return "InfectionTestRecorded" }
func (ReferralWithdrawn) eventName() string        { return "ReferralWithdrawn" }

func (ReferralSubmitted) aggregate() Aggregate        { return AggregateReferral }
func (CriteriaToResideRecorded) aggregate() Aggregate { return AggregateReferral }
func (InfectionTestRecorded) aggregate() Aggregate    { return AggregateReferral }
func (ReferralWithdrawn) aggregate() Aggregate        { return AggregateReferral }

// EventName returns the persisted name of an event's type.
func EventName(e Event) string { return e.eventName() }

// Actor is who caused an event.
type Actor struct {
	ODS  string
	Role string
	User string
}

// Record is an event with its envelope: what the log stores.
type Record struct {
	// Sequence is the stream sequence; zero until appended.
	Sequence      uint64
	EventID       string
	AggregateID   string
	OccurredAt    time.Time
	RecordedAt    time.Time
	Actor         Actor
	CausationID   string
	CorrelationID string
	PolicyVersion string
	// Request is the client's request id and request hash of the command
	// that appended the event, when it sent one.
	Request Request
	// PrevHash is the SHA-256 of the stored bytes of the previous event on
	// the same subject (nil for the first); the event store sets it.
	PrevHash []byte
	Event    Event
}

// Referral is the state of one referral, rebuilt from its events.
type Referral struct {
	ID string
	// Status is derived from the rest of the state after every event.
	Status    Status
	Pathway   Pathway
	RequestID string
	Details   Details
	// Submitted are the details as submitted: what a retried submission
	// is compared with, whatever was amended since.
	Submitted          Details
	CriteriaMet        []Criterion
	DischargeReadyDate string
	LatestTest         *InfectionTest
	WithdrawalReason   WithdrawalReason
	Withdrawn          bool
	SubmittedAt        time.Time
	UpdatedAt          time.Time
	// FactsAt is the latest occurred-at of the events other than clock
	// alerts: the event time routing decides at. A fact dated earlier (a
	// delayed record) never moves it back, so routing never decides in a
	// past it has already moved beyond.
	FactsAt time.Time
	// SubmittedSequence is the sequence of the ReferralSubmitted event.
	SubmittedSequence uint64
	// Version is the sequence of the last event applied.
	Version uint64

	// Routing: the decided pathway's service, rule and policy version;
	// Amended: details were amended since the decision.
	Decided       bool
	Amended       bool
	Service       Service
	DecisionRule  string
	PolicyVersion string
	// Hold is the reason of the current hold; zero when not held.
	// HoldRule is the routing rule that placed it ("" for a person's).
	Hold     HoldReason
	HoldRule string
	// ReleasedHolds lists reasons whose hold was lifted; a rule does not
	// put the same hold back.
	ReleasedHolds    []HoldReason
	AwaitingCapacity bool
	// Waits are its stays in the no-capacity queue (the last one open
	// while it waits); each runs the awaiting-capacity clock.
	Waits          []Interval
	Assignments    []Assignment
	LeftHospitalAt time.Time

	// Clocks: when the pathway was decided, when the referral was
	// withdrawn, the holds (which pause clocks), whether the infection
	// overlay applied, and the alerts raised.
	DecidedAt      time.Time
	WithdrawnAt    time.Time
	Holds          []Interval
	OverlayApplied bool
	Alerts         []Alert
}

// Exists reports whether the referral was submitted.
func (r *Referral) Exists() bool { return r.SubmittedSequence != 0 }

// Apply evolves the state by one recorded event. Events are facts: Apply
// never fails, and applying the same sequence twice is the caller's bug.
func (r *Referral) Apply(rec Record) {
	r.Version = rec.Sequence
	if _, noted := rec.Event.(NothingChanged); noted {
		return
	}
	r.UpdatedAt = rec.OccurredAt
	if _, alert := rec.Event.(ClockAlerted); !alert && rec.OccurredAt.After(r.FactsAt) {
		r.FactsAt = rec.OccurredAt
	}
	switch e := rec.Event.(type) {
	case ReferralSubmitted:
		r.ID = rec.AggregateID
		r.RequestID = e.RequestID
		r.Details, r.Submitted = e.Details, e.Details
		r.Pathway = e.Details.ProposedPathway
		r.CriteriaMet = slices.Clone(e.Details.CriteriaMet)
		r.LatestTest = e.Details.InfectionTest
		r.SubmittedAt = rec.OccurredAt
		r.SubmittedSequence = rec.Sequence
		r.DischargeReadyDate = e.DischargeReadyDate
	case ReferralAmended:
		r.Details = e.Details
		// Only what the routing rules read makes the router ask them
		// again.
		r.Amended = r.Amended || slices.ContainsFunc(e.Paths, func(p string) bool { return slices.Contains(RoutingPaths, p) })
	case CriteriaToResideRecorded:
		r.CriteriaMet = slices.Clone(e.CriteriaMet)
		r.DischargeReadyDate = e.DischargeReadyDate
		if r.DischargeReadyDate == "" {
			// Not ready: out of the no-capacity queue until it is again
			// (the router queues it again then).
			r.leaveQueue(rec.OccurredAt)
		}
	case InfectionTestRecorded:
		t := e.Test
		r.LatestTest = &t
	case ReferralWithdrawn:
		r.Withdrawn = true
		r.WithdrawalReason = e.Reason
		r.WithdrawnAt = rec.OccurredAt
	case PathwayDecided:
		// A decision again (after an amendment) starts the search for a
		// provider again.
		r.leaveQueue(rec.OccurredAt)
		r.Amended = false
		r.Decided = true
		r.Pathway, r.Service, r.DecisionRule = e.Pathway, e.Service, e.Rule
		r.PolicyVersion = rec.PolicyVersion
		r.DecidedAt = rec.OccurredAt
		r.OverlayApplied = e.Inputs["care_home_bound"] == "true"
	case ReferralHeld:
		r.Hold, r.HoldRule = e.Reason, e.Rule
		r.Holds = append(r.Holds, Interval{From: rec.OccurredAt})
		if e.Rule != "" {
			r.DecisionRule, r.PolicyVersion = e.Rule, rec.PolicyVersion
			// The rules held it on the details as amended.
			r.Amended = false
		}
	case HoldReleased:
		r.Hold, r.HoldRule = HoldReasonUnspecified, ""
		if n := len(r.Holds); n > 0 && r.Holds[n-1].To.IsZero() {
			r.Holds[n-1].To = rec.OccurredAt
		}
		// A housing hold the router released (an amendment made it moot)
		// says nothing of housing found.
		moot := e.Reason == HoldReasonHousing && rec.Actor.Role == ActorRouter
		if !moot && !slices.Contains(r.ReleasedHolds, e.Reason) {
			r.ReleasedHolds = append(r.ReleasedHolds, e.Reason)
		}
	case AwaitingCapacity:
		if !r.AwaitingCapacity {
			r.Waits = append(r.Waits, Interval{From: rec.OccurredAt})
		}
		r.AwaitingCapacity = true
	case OfferMade:
		r.leaveQueue(rec.OccurredAt)
		r.Assignments = append(r.Assignments, Assignment{ID: e.AssignmentID, ProviderODS: e.ProviderODS, Service: e.Service,
			Status: TaskRequested, OfferedAt: rec.OccurredAt, UpdatedAt: rec.OccurredAt})
	case AssignmentStatusChanged:
		if a := r.Assignment(e.AssignmentID); a != nil {
			if e.Status == TaskOnHold {
				a.HeldFrom = a.Status
			}
			a.Status, a.Reason, a.UpdatedAt = e.Status, e.Reason, rec.OccurredAt
			switch {
			case e.Status == TaskAccepted && a.AcceptedAt.IsZero():
				a.AcceptedAt = rec.OccurredAt
			case e.Status == TaskInProgress && a.StartedAt.IsZero():
				a.StartedAt = rec.OccurredAt
			case e.Status.ended():
				a.EndedAt, a.EndedSeq, a.EndedBySPA = rec.OccurredAt, rec.Sequence, rec.Actor.Role == ActorRouter
			}
		}
	case PatientLeftHospital:
		r.LeftHospitalAt = e.LeftAt
	case ClockAlerted:
		r.Alerts = append(r.Alerts, Alert{Clock: e.Clock, Level: e.Level, DelayDays: e.DelayDays, StartedAt: e.StartedAt, At: rec.OccurredAt, EscalateTo: e.EscalateTo})
	}
	r.Status = r.status()
}

// leaveQueue takes the referral out of the no-capacity queue at t, ending
// its wait.
func (r *Referral) leaveQueue(t time.Time) {
	if n := len(r.Waits); r.AwaitingCapacity && n > 0 {
		r.Waits[n-1].To = t
	}
	r.AwaitingCapacity = false
}

// status derives where the referral stands from the rest of its state.
func (r *Referral) status() Status {
	if !r.Exists() {
		return StatusUnspecified
	}
	if r.Withdrawn {
		return StatusWithdrawn
	}
	if a := r.LiveAssignment(); a != nil {
		switch a.Status {
		case TaskAccepted:
			return StatusAccepted
		case TaskInProgress:
			return StatusInProgress
		case TaskCompleted:
			return StatusCompleted
		case TaskOnHold:
			if a.HeldFrom == TaskRequested || a.HeldFrom == TaskReceived {
				return StatusOffered
			}
			return map[TaskStatus]Status{TaskAccepted: StatusAccepted, TaskInProgress: StatusInProgress}[a.HeldFrom]
		default:
			return StatusOffered
		}
	}
	switch {
	case r.DischargeReadyDate == "":
		// Criteria to reside met (again): nothing moves until a new date.
		return StatusNotReady
	case r.Hold != HoldReasonUnspecified:
		return StatusHeld
	case r.Decided && r.Pathway == PathwayP0Home:
		return StatusWardLed
	case r.AwaitingCapacity:
		return StatusAwaitingCapacity
	case r.Decided:
		return StatusPathwayDecided
	}
	return StatusReady
}

// Assignment returns the referral's assignment with that id, or nil.
func (r *Referral) Assignment(id string) *Assignment {
	for i := range r.Assignments {
		if r.Assignments[i].ID == id {
			return &r.Assignments[i]
		}
	}
	return nil
}

// LiveAssignment returns the assignment that is neither rejected, failed
// nor cancelled (at most one is), or nil.
func (r *Referral) LiveAssignment() *Assignment {
	for i := range r.Assignments {
		if !r.Assignments[i].Status.ended() {
			return &r.Assignments[i]
		}
	}
	return nil
}

// DelayDays returns whole days from the Discharge Ready Date to leaving
// hospital, or to the UK date of now while the patient is still in; 0
// without a Discharge Ready Date.
func (r *Referral) DelayDays(now time.Time) int {
	if r.DischargeReadyDate == "" {
		return 0
	}
	drd, err := time.Parse(DateLayout, r.DischargeReadyDate)
	if err != nil {
		return 0
	}
	end := now
	if !r.LeftHospitalAt.IsZero() {
		end = r.LeftHospitalAt
	}
	to, _ := time.Parse(DateLayout, LocalDate(end))
	return max(0, int(to.Sub(drd).Hours()/24))
}

// Replay rebuilds a referral from its records, oldest first.
func Replay(recs []Record) Referral {
	var r Referral
	for _, rec := range recs {
		r.Apply(rec)
	}
	return r
}
