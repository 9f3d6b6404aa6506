package spa

import "time"

// StoredEvent is one event as the log holds it.
type StoredEvent struct {
	Sequence uint64
	Subject  string
	// Time is when the log stored it.
	Time time.Time
	Type string
	// Provider is the provider it is addressed to or about, if any.
	Provider string
	// Data is the stored bytes (the encoded envelope).
	Data []byte
	// Hash is the SHA-256 of Data recorded when it was appended.
	Hash []byte
	// Signature is the appending process's signature of Subject and Hash
	// (the Spa-Sig header), empty when unsigned.
	Signature string
}

// MaxEventTypes is the most names an event filter's event_types may list.
// It is well above the number of event types (20 today; a test keeps it
// above), so that a filter naming every type stays valid as types are
// added.
const MaxEventTypes = 32

// EventFilter selects stored events; zero fields match everything.
type EventFilter struct {
	ReferralID string
	// Provider: events on the provider's subject and events addressed to
	// it.
	Provider         string
	Types            []string
	FromSeq, ToSeq   uint64
	FromTime, ToTime time.Time
}

// Validate checks a filter: known event types, at most MaxEventTypes of
// them; from_sequence not after to_sequence; from_time and to_time valid
// instants, from_time before to_time. Every bad field is named at once.
func (f EventFilter) Validate() error {
	var vs violations
	if f.ReferralID != "" && !IsReferralID(f.ReferralID) {
		vs.add("referral_id", "is not a referral id (ref- and 16 characters)")
	}
	if f.Provider != "" && !IsODSCode(f.Provider) {
		vs.add("provider_ods", "must be an ODS code: 1-9 upper-case letters or digits")
	}
	if len(f.Types) > MaxEventTypes {
		vs.add("event_types", "must list at most %d event types", MaxEventTypes)
	} else {
		for i, t := range f.Types {
			if _, ok := eventTypes[t]; !ok {
				vs.add(fieldIndex("event_types", i), "is not an event type")
			}
		}
	}
	if f.ToSeq > 0 && f.FromSeq > f.ToSeq {
		vs.add("to_sequence", "must not be before from_sequence")
	}
	from := checkInstant(&vs, "from_time", f.FromTime, false)
	to := checkInstant(&vs, "to_time", f.ToTime, false)
	if from && to && !f.FromTime.Before(f.ToTime) {
		vs.add("to_time", "must be after from_time")
	}
	return vs.err()
}

// eventTypes are the persisted event type names.
var eventTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, e := range []Event{
		ReferralSubmitted{}, CriteriaToResideRecorded{}, InfectionTestRecorded{}, ReferralWithdrawn{},
		ProviderRegistered{}, CapacityUpdated{}, PathwayDecided{}, ReferralHeld{}, HoldReleased{},
		AwaitingCapacity{}, OfferMade{}, AssignmentStatusChanged{}, PatientLeftHospital{},
		CapacityReserved{}, CapacityReleased{}, CapacityOccupied{}, ClockAlerted{}, ReferralAmended{}, PolicySwitched{}, NothingChanged{},
	} {
		m[EventName(e)] = true
	}
	return m
}()

// NothingChanged: a command with a request id decided nothing. Recorded so
// that its retry is answered as it was, however the state has moved on
// since; it changes no state but the aggregate's version.
type NothingChanged struct {
	Aggregate Aggregate
}

func (NothingChanged) eventName() string      { return "NothingChanged" }
func (e NothingChanged) aggregate() Aggregate { return e.Aggregate }

// Access is one read of patient data as the access log keeps it: who,
// why, by which call, when, and whether it was refused.
type Access struct {
	Actor         Actor
	Purpose       string
	Method        string
	At            time.Time
	CorrelationID string
	// RequestID names the call (x-request-id).
	RequestID string
	// Refused: the caller was not allowed to read (PERMISSION_DENIED); an
	// attempt is recorded as well as a read.
	Refused bool
}

// Accessed is a referral whose data a call read, and its patient's NHS
// number ("" when it could not be known).
type Accessed struct {
	ReferralID string
	NHSNumber  string
}

// AccessPosition is a place in the access log: the sequence of an access
// record and, as one record names every referral its call read, the
// index of one of them. Positions order the records as the log does.
type AccessPosition struct {
	Sequence uint64
	Index    uint32
}

// Before reports whether p comes before o.
func (p AccessPosition) Before(o AccessPosition) bool {
	return p.Sequence < o.Sequence || p.Sequence == o.Sequence && p.Index < o.Index
}

// AccessRecord is one referral's read as the access log lists it: the
// call that read it, the referral and its patient, and where it is in the
// log.
type AccessRecord struct {
	Position AccessPosition
	Access   Access
	Accessed Accessed
}

// The purposes of use a caller states when it reads patient data.
var Purposes = []string{"direct-care", "care-coordination", "safeguarding", "audit", "subject-access-request", "legal"}
