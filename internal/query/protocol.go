// Package query is the protocol between the API servers and the workers'
// read models over NATS request/reply, and the client spa-server and
// spa-ctl use: queries of the board and of the access log's index
// (protobuf, in a queue group: any worker may answer) and each worker's
// own status and rebuild requests (JSON, on subjects of its own).
package query

import (
	"time"

	"spa/internal/projection"
)

// Version is the workers' version, reported by their services.
const Version = "0.2.0"

// The read-model query protocol: NATS request/reply in a queue group, so
// any worker that owns a read model may answer. Requests and replies are the
// API's protobuf messages; errors use the micro error headers with the codes
// below.
const (
	ServiceName        = "spa-readmodel"
	SubjectGet         = "spa.readmodel.referral.get"
	SubjectList        = "spa.readmodel.referral.list"
	SubjectProviders   = "spa.readmodel.provider.list"
	SubjectAssignments = "spa.readmodel.assignment.list"
	SubjectStatus      = "spa.readmodel.status"
	SubjectDigest      = "spa.readmodel.digest"
	// SubjectFeed lists the sequences of a provider's feed (FeedRequest,
	// answered with a FeedPage; JSON).
	SubjectFeed = "spa.readmodel.feed"
	// HeaderWaitUntil carries the instant (Unix nanoseconds) a query may
	// wait for its consistency token until.
	HeaderWaitUntil = "Spa-Wait-Until"
)

// The access index query protocol (ADR 33): a ListAccessRequest in the
// access indexes' queue group, answered with a ListAccessResponse, errors
// as above. HeaderMinAccess carries the access log sequence the answer
// must include (the log's last sequence when the call began): the index
// waits until it has applied it, within HeaderWaitUntil.
const (
	AccessServiceName = "spa-access"
	SubjectAccess     = "spa.readmodel.access.list"
	HeaderMinAccess   = "Spa-Min-Access-Sequence"
)

// Error codes, in the micro error header.
const (
	CodeInvalid     = "400"
	CodeNotFound    = "404"
	CodeConflict    = "409"
	CodeTooLarge    = "413"
	CodeOutOfRange  = "416"
	CodeInternal    = "500"
	CodeUnavailable = "503"
	CodeDeadline    = "504"
)

// Status is a read model's answer on SubjectStatus and SubjectDigest.
type Status struct {
	Applied uint64 `json:"applied"`
	Digest  string `json:"digest,omitempty"`
}

// FeedRequest asks for the sequences of the referral events addressed to
// a provider after sequence After, at most Limit (1 to MaxFeedPage) of
// them, once the model has applied MinSequence.
type FeedRequest struct {
	Provider    string `json:"provider"`
	After       uint64 `json:"after,omitempty"`
	Limit       int    `json:"limit"`
	MinSequence uint64 `json:"min_sequence,omitempty"`
}

// FeedPage answers a FeedRequest: the sequences, oldest first, and the
// sequence the model had applied when it listed them. Every event
// addressed to the provider after After up to Applied is listed, unless
// the page is full.
type FeedPage struct {
	Sequences []uint64 `json:"sequences"`
	Applied   uint64   `json:"applied"`
}

// MaxFeedPage is the most sequences a FeedPage holds.
const MaxFeedPage = 1000

// The control protocol: every worker answers on subjects of its own (no
// queue group), from the moment it starts, whether or not its read model
// serves queries. Replies are JSON.
const (
	ControlServiceName = "spa-worker"
	// SubjectStatuses reaches every worker: each answers with its
	// WorkerStatus.
	SubjectStatuses = "spa.worker.status"
	// subjectWorker is the prefix of one worker's own subjects:
	// spa.worker.<id>.status and spa.worker.<id>.rebuild.
	subjectWorker = "spa.worker."
)

// SubjectWorkerStatus is the subject of one worker's status.
func SubjectWorkerStatus(id string) string { return subjectWorker + id + ".status" }

// SubjectWorkerDigest is the subject of one worker's read model digest (a
// Status).
func SubjectWorkerDigest(id string) string { return subjectWorker + id + ".digest" }

// SubjectWorkerRebuild is the subject of one worker's rebuild requests
// (a RebuildRequest; the answer is its WorkerStatus).
func SubjectWorkerRebuild(id string) string { return subjectWorker + id + ".rebuild" }

// WorkerStatus is what a worker says of itself.
type WorkerStatus struct {
	Worker  string `json:"worker"`
	Version string `json:"version"`
	// Applied is the read model's applied sequence.
	Applied uint64 `json:"applied"`
	// Serving: the read model answers queries (it has caught up and has
	// not halted).
	Serving bool `json:"serving"`
	// Halt, when set, says where and why the projection stopped.
	Halt *projection.Halt `json:"halt,omitempty"`
	// Rebuild is the running or the last rebuild, if any.
	Rebuild *RebuildStatus `json:"rebuild,omitempty"`
}

// RebuildStatus reports a rebuild.
type RebuildStatus struct {
	// State is running, swapped, failed or cancelled.
	State string `json:"state"`
	// Phase, while running: replaying, checking or swapping.
	Phase string `json:"phase,omitempty"`
	// Applied is the sequence the new file has reached, of Target.
	Applied  uint64    `json:"applied"`
	Target   uint64    `json:"target"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// ComparedAt, Live and Rebuilt: the digests compared, and where.
	ComparedAt uint64 `json:"compared_at,omitempty"`
	Live       string `json:"live_digest,omitempty"`
	Rebuilt    string `json:"rebuilt_digest,omitempty"`
	// SwapMillis is how long queries and the projection waited for the
	// swap.
	SwapMillis float64 `json:"swap_ms,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// Rebuild states.
const (
	RebuildRunning   = "running"
	RebuildSwapped   = "swapped"
	RebuildFailed    = "failed"
	RebuildCancelled = "cancelled"
)

// RebuildRequest asks a worker to start or cancel a rebuild of its read
// model.
type RebuildRequest struct {
	// Action is "start" or "cancel".
	Action string `json:"action"`
}
