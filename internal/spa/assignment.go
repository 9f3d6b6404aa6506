package spa

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// TaskStatus is an assignment's state: FHIR R4 Task.status.
type TaskStatus int32

// Task statuses.
const (
	TaskUnspecified TaskStatus = iota
	TaskRequested
	TaskReceived
	TaskAccepted
	TaskRejected
	TaskInProgress
	TaskOnHold
	TaskCompleted
	TaskFailed
	TaskCancelled
	taskStatusEnd
)

var taskNames = map[TaskStatus]string{
	TaskRequested: "requested", TaskReceived: "received", TaskAccepted: "accepted", TaskRejected: "rejected",
	TaskInProgress: "in-progress", TaskOnHold: "on-hold", TaskCompleted: "completed", TaskFailed: "failed", TaskCancelled: "cancelled",
}

// String returns the FHIR code ("in-progress").
func (s TaskStatus) String() string {
	if n, ok := taskNames[s]; ok {
		return n
	}
	return fmt.Sprintf("status(%d)", int32(s))
}

// ended reports whether the assignment no longer holds the referral: it was
// rejected, failed or cancelled. A completed assignment still does.
func (s TaskStatus) ended() bool {
	return s == TaskRejected || s == TaskFailed || s == TaskCancelled
}

// terminal reports whether no transition leaves s.
func (s TaskStatus) terminal() bool { return s.ended() || s == TaskCompleted }

// transitions is the FHIR Task lifecycle: requested -> received ->
// accepted | rejected; accepted -> in-progress -> completed | failed;
// on-hold and back (to where it came from); any non-terminal -> cancelled.
var transitions = map[TaskStatus][]TaskStatus{
	TaskRequested:  {TaskReceived, TaskAccepted, TaskRejected, TaskCancelled},
	TaskReceived:   {TaskAccepted, TaskRejected, TaskCancelled},
	TaskAccepted:   {TaskInProgress, TaskOnHold, TaskFailed, TaskCancelled},
	TaskInProgress: {TaskCompleted, TaskFailed, TaskOnHold, TaskCancelled},
	TaskOnHold:     {TaskFailed, TaskCancelled}, // and back to HeldFrom
}

// Assignment is one offer of a referral to a provider: a FHIR Task owned by
// the provider.
type Assignment struct {
	ID          string
	ProviderODS string
	Service     Service
	Status      TaskStatus
	// HeldFrom is the status an on-hold assignment returns to.
	HeldFrom  TaskStatus
	Reason    string
	OfferedAt time.Time
	UpdatedAt time.Time
	// When it was first accepted and started, and when it ended (rejected,
	// failed or cancelled); for the clocks.
	AcceptedAt time.Time
	StartedAt  time.Time
	EndedAt    time.Time
	// EndedSeq is the log sequence of its end: its provider is not
	// offered the referral again unless it declared capacity since, or
	// the router ended it (EndedBySPA: not the provider's refusal).
	EndedSeq   uint64
	EndedBySPA bool
}

// holdsUnit reports whether the assignment still holds its reserved unit
// of capacity: it was offered and never started.
func (a Assignment) holdsUnit() bool {
	switch a.Status {
	case TaskRequested, TaskReceived, TaskAccepted:
		return true
	case TaskOnHold:
		return a.HeldFrom != TaskInProgress
	}
	return false
}

var assignmentIDPattern = regexp.MustCompile(`^(ref-[a-z2-7]{16})-a[1-9][0-9]{0,3}$`)

// AssignmentIDFor returns the id of a referral's n-th assignment (from 1).
func AssignmentIDFor(referralID string, n int) string { return fmt.Sprintf("%s-a%d", referralID, n) }

// ReferralOfAssignment returns the referral id an assignment id belongs to,
// or "" when id is not an assignment id.
func ReferralOfAssignment(id string) string {
	m := assignmentIDPattern.FindStringSubmatch(id)
	if m == nil {
		return ""
	}
	return m[1]
}

// PathwayDecided: the router chose a pathway and the service to find.
type PathwayDecided struct {
	Pathway       Pathway
	Service       Service
	Rule          string
	ReasonCode    string
	Inputs        map[string]string
	IsolationDays int32
}

// ReferralHeld: the referral was put on hold.
type ReferralHeld struct {
	Reason HoldReason
	Rule   string
	Note   string
	Inputs map[string]string
}

// HoldReleased: the hold was lifted.
type HoldReleased struct {
	Reason HoldReason
	Note   string
}

// AwaitingCapacity: no provider had room; the referral waits in the
// no-capacity queue.
type AwaitingCapacity struct {
	Service Service
	Borough string
}

// OfferMade: an assignment was offered to a provider.
type OfferMade struct {
	AssignmentID string
	ProviderODS  string
	Service      Service
	Inputs       map[string]string
}

// AssignmentStatusChanged: an assignment moved to a new status.
type AssignmentStatusChanged struct {
	AssignmentID string
	Status       TaskStatus
	Reason       string
	ProviderODS  string
}

// PatientLeftHospital: the hospital reports the patient left.
type PatientLeftHospital struct {
	LeftAt time.Time
}

// CapacityReserved: one unit of a provider's service was promised to an
// offer (on the provider's subject, atomically with OfferMade).
type CapacityReserved struct {
	Service      Service
	ReferralID   string
	AssignmentID string
	// Tracked: the reservation's taking up (CapacityOccupied) and its end
	// (CapacityReleased, also when care is over) are recorded. Versions
	// before 0.3 recorded neither once care started; their reservations
	// last until the provider's next count, as they did then.
	Tracked bool
}

// CapacityOccupied: the patient took up a reserved unit: care started
// (the assignment went in-progress). A declaration counted after it no
// longer counts the unit free.
type CapacityOccupied struct {
	Service      Service
	ReferralID   string
	AssignmentID string
}

// CapacityReleased: a reserved unit was given back.
type CapacityReleased struct {
	Service      Service
	ReferralID   string
	AssignmentID string
	Reason       string
}

func (PathwayDecided) eventName() string          { return "PathwayDecided" }
func (ReferralHeld) eventName() string            { return "ReferralHeld" }
func (HoldReleased) eventName() string            { return "HoldReleased" }
func (AwaitingCapacity) eventName() string        { return "AwaitingCapacity" }
func (OfferMade) eventName() string               { return "OfferMade" }
func (AssignmentStatusChanged) eventName() string { return "AssignmentStatusChanged" }
func (PatientLeftHospital) eventName() string     { return "PatientLeftHospital" }
func (CapacityReserved) eventName() string        { return "CapacityReserved" }
func (CapacityReleased) eventName() string        { return "CapacityReleased" }
func (CapacityOccupied) eventName() string        { return "CapacityOccupied" }

func (PathwayDecided) aggregate() Aggregate          { return AggregateReferral }
func (ReferralHeld) aggregate() Aggregate            { return AggregateReferral }
func (HoldReleased) aggregate() Aggregate            { return AggregateReferral }
func (AwaitingCapacity) aggregate() Aggregate        { return AggregateReferral }
func (OfferMade) aggregate() Aggregate               { return AggregateReferral }
func (AssignmentStatusChanged) aggregate() Aggregate { return AggregateReferral }
func (PatientLeftHospital) aggregate() Aggregate     { return AggregateReferral }
func (CapacityReserved) aggregate() Aggregate        { return AggregateProvider }
func (CapacityReleased) aggregate() Aggregate        { return AggregateProvider }
func (CapacityOccupied) aggregate() Aggregate        { return AggregateProvider }

// Change is what a command or routing step appends: one event on the
// aggregate it decided on, and optionally one on a provider in the same
// atomic batch.
type Change struct {
	Event Event
	// ProviderODS names the provider whose subject gets Provider.
	ProviderODS string
	Provider    Event
	// GuardProvider: the provider event may be appended only if the
	// provider is still at the version it was decided on (a reservation);
	// a release needs no guard.
	GuardProvider bool
}

// TransitionAssignment is a provider's (or the SPA's) move of an
// assignment to a new status.
type TransitionAssignment struct {
	AssignmentID string
	To           TaskStatus
	Reason       string
}

// DecideTransition decides an assignment transition by the FHIR Task
// lifecycle. A move its current status does not allow is refused with
// KindFailedPrecondition naming that status. Leaving a status that holds a
// unit of capacity for rejected, failed or cancelled releases the unit in
// the same change.
func DecideTransition(r Referral, c TransitionAssignment, _ time.Time) (Change, error) {
	var vs violations
	if c.AssignmentID == "" {
		vs.add("assignment_id", "is required")
	} else if ReferralOfAssignment(c.AssignmentID) == "" {
		vs.add("assignment_id", "is not an assignment id (a referral id, -a and a number)")
	}
	checkEnum(&vs, "status", c.To, taskStatusEnd, true)
	if c.To == TaskRequested {
		vs.add("status", "requested is set by the SPA when it offers")
	}
	needsReason := c.To == TaskRejected || c.To == TaskFailed || c.To == TaskCancelled
	checkText(&vs, "reason", c.Reason, needsReason, MaxFreeTextLen)
	if err := vs.err(); err != nil {
		return Change{}, err
	}
	a := r.Assignment(c.AssignmentID)
	if a == nil {
		return Change{}, Errorf(KindNotFound, "assignment %s not found", c.AssignmentID)
	}
	if a.Status == c.To && a.Reason == c.Reason {
		// There already, for the same reason: a retry (also one without a
		// request id) changes nothing.
		return Change{}, nil
	}
	allowed := transitions[a.Status]
	if a.Status == TaskOnHold {
		allowed = append([]TaskStatus{a.HeldFrom}, allowed...)
	}
	if !containsStatus(allowed, c.To) {
		return Change{}, Errorf(KindFailedPrecondition, "assignment %s is %s; it cannot become %s", a.ID, a.Status, c.To)
	}
	ch := Change{Event: AssignmentStatusChanged{AssignmentID: a.ID, Status: c.To, Reason: c.Reason, ProviderODS: a.ProviderODS}}
	switch {
	case c.To.ended() && a.holdsUnit():
		// Given back before care started. A unit taken up stays reserved
		// until the provider's next count leaves it out, even once care
		// is over: only the provider knows when the bed is free again.
		ch.ProviderODS = a.ProviderODS
		ch.Provider = CapacityReleased{Service: a.Service, ReferralID: r.ID, AssignmentID: a.ID, Reason: strings.TrimSuffix(c.To.String()+": "+c.Reason, ": ")}
	case c.To == TaskOnHold && a.Status == TaskInProgress:
		// The patient is away (e.g. readmitted) and the bed is held: a
		// count of the empty bed must not leave it out.
		ch.ProviderODS = a.ProviderODS
		ch.Provider = CapacityReserved{Service: a.Service, ReferralID: r.ID, AssignmentID: a.ID, Tracked: true}
	case a.Status == TaskOnHold && a.HeldFrom == TaskInProgress && (c.To == TaskInProgress || c.To.ended()):
		// Back in the bed, or care over: a later count may leave it out.
		ch.ProviderODS = a.ProviderODS
		ch.Provider = CapacityOccupied{Service: a.Service, ReferralID: r.ID, AssignmentID: a.ID}
	case c.To == TaskInProgress && a.holdsUnit():
		ch.ProviderODS = a.ProviderODS
		ch.Provider = CapacityOccupied{Service: a.Service, ReferralID: r.ID, AssignmentID: a.ID}
	}
	return ch, nil
}

func containsStatus(ss []TaskStatus, s TaskStatus) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// HoldReferral is a coordinator's hold.
type HoldReferral struct {
	ReferralID string
	Reason     HoldReason
	Note       string
}

// DecideHold decides a coordinator's hold: the referral must be open, not
// held already, and not yet in care.
func DecideHold(r Referral, c HoldReferral, _ time.Time) (Event, error) {
	var vs violations
	checkReferralID(&vs, c.ReferralID)
	checkEnum(&vs, "reason", c.Reason, holdReasonEnd, true)
	checkText(&vs, "note", c.Note, false, MaxFreeTextLen)
	if err := vs.err(); err != nil {
		return nil, err
	}
	if err := checkOpen(r, c.ReferralID); err != nil {
		return nil, err
	}
	if r.Hold != HoldReasonUnspecified {
		return nil, Errorf(KindFailedPrecondition, "referral %s is already on hold", r.ID)
	}
	if a := r.LiveAssignment(); a != nil && !a.holdsUnit() {
		return nil, Errorf(KindFailedPrecondition, "referral %s is %s with %s", r.ID, a.Status, a.ProviderODS)
	}
	return ReferralHeld{Reason: c.Reason, Note: c.Note}, nil
}

// ReleaseHold lifts a hold.
type ReleaseHold struct {
	ReferralID string
	Note       string
}

// DecideReleaseHold decides lifting a hold; a referral not on hold is
// refused with KindFailedPrecondition.
func DecideReleaseHold(r Referral, c ReleaseHold, _ time.Time) (Event, error) {
	var vs violations
	checkReferralID(&vs, c.ReferralID)
	checkText(&vs, "note", c.Note, false, MaxFreeTextLen)
	if err := vs.err(); err != nil {
		return nil, err
	}
	if err := checkOpen(r, c.ReferralID); err != nil {
		return nil, err
	}
	if r.Hold == HoldReasonUnspecified {
		return nil, Errorf(KindFailedPrecondition, "referral %s is not on hold", r.ID)
	}
	return HoldReleased{Reason: r.Hold, Note: c.Note}, nil
}

// RecordPatientLeft records that the patient left hospital.
type RecordPatientLeft struct {
	ReferralID string
	LeftAt     time.Time
}

// DecidePatientLeft decides the hospital's report that the patient left;
// reported once, not before submission, not in the future.
func DecidePatientLeft(r Referral, c RecordPatientLeft, now time.Time) (Event, error) {
	var vs violations
	checkReferralID(&vs, c.ReferralID)
	if checkInstant(&vs, "left_at", c.LeftAt, false) && c.LeftAt.After(now.Add(clockSkew)) {
		vs.add("left_at", "must not be in the future")
	}
	left := c.LeftAt
	if left.IsZero() {
		left = now
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	if !r.Exists() {
		return nil, Errorf(KindNotFound, "referral %s not found", c.ReferralID)
	}
	if !r.LeftHospitalAt.IsZero() {
		return nil, Errorf(KindFailedPrecondition, "referral %s: the patient left hospital at %s", r.ID, r.LeftHospitalAt.UTC().Format(time.RFC3339))
	}
	if left.Before(r.SubmittedAt) && LocalDate(left) < r.Details.Episode.AdmissionDate {
		vs.add("left_at", "must not be before the admission date")
		return nil, vs.err()
	}
	return PatientLeftHospital{LeftAt: left.UTC()}, nil
}

// Append is one event to append and the check it is appended under.
type Append struct {
	Record Record
	// Expected is the sequence the aggregate's last event must have when
	// Guard is set (0: the aggregate must have no events). In a batch,
	// an append to an aggregate an earlier append of the batch is on
	// follows that one: the earlier one's guard covers both.
	Expected uint64
	Guard    bool
}

// ProviderOf returns the provider an event is addressed to or about, or ""
// for none: the provider of an offer or an assignment's change, or the
// provider whose own event it is (rec.AggregateID for provider events).
func ProviderOf(rec Record) string {
	switch e := rec.Event.(type) {
	case OfferMade:
		return e.ProviderODS
	case AssignmentStatusChanged:
		return e.ProviderODS
	case ReferralAmended:
		return e.ProviderODS
	case NothingChanged:
		return ""
	}
	if AggregateOf(rec.Event) == AggregateProvider {
		return rec.AggregateID
	}
	return ""
}
