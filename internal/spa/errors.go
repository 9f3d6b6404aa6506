package spa

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies a domain error so that one place (the gRPC transport) can
// map it to a status code.
type Kind int

// The kinds of domain error.
const (
	// KindInternal is any error that is not a domain *Error.
	KindInternal Kind = iota
	// KindInvalid: the request is malformed; Violations name each bad field.
	KindInvalid
	// KindNotFound: the referral does not exist.
	KindNotFound
	// KindAlreadyExists: the idempotency key was used for something else.
	KindAlreadyExists
	// KindFailedPrecondition: the aggregate's state forbids the command.
	KindFailedPrecondition
	// KindAborted: a concurrent change won the race; the caller may retry.
	KindAborted
	// KindUnavailable: a dependency (store, read model) cannot answer now.
	KindUnavailable
	// KindDeadlineExceeded: the caller's deadline passed while waiting.
	KindDeadlineExceeded
	// KindOutOfRange: the request names a position beyond what exists (a
	// consistency token beyond the log's end).
	KindOutOfRange
	// KindTooLarge: the answer would be larger than the transport allows.
	KindTooLarge
	// KindPermissionDenied: the caller's role or organisation may not do
	// this, or not to this object.
	KindPermissionDenied
	// KindUnauthenticated: the caller has no verified identity.
	KindUnauthenticated
)

// Violation names one bad field, by its path in the API request
// ("referral.patient.nhs_number", "criteria_met[1]").
type Violation struct {
	Field       string
	Description string
}

// Error is a domain error with a kind. Its message is safe to show to
// clients: it never contains internal error text.
type Error struct {
	Kind       Kind
	Message    string
	Violations []Violation
	// Cause is the underlying failure, for logs and errors.Is; it is
	// never sent to clients.
	Cause error
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

func (e *Error) Error() string {
	if len(e.Violations) == 0 {
		return e.Message
	}
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return e.Message + ": " + strings.Join(parts, "; ")
}

// Errorf returns an *Error of the given kind.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err, KindInternal when err is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// violations collects field violations so a request is answered with every
// bad field at once.
type violations []Violation

func (vs *violations) add(field, format string, args ...any) {
	*vs = append(*vs, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func fieldIndex(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// err returns nil when nothing was collected, else a KindInvalid *Error.
func (vs violations) err() error {
	if len(vs) == 0 {
		return nil
	}
	return &Error{Kind: KindInvalid, Message: "invalid request", Violations: vs}
}

// ErrConcurrentChange is returned (wrapped) by an event store when the
// aggregate changed between load and append: the command was decided on a
// stale state and must be decided again.
var ErrConcurrentChange = &Error{Kind: KindAborted, Message: "the referral was changed concurrently; retry the call"}
