package spa

import (
	"errors"
	"time"
)

// clockSkew is how far in the future a client's time may be, to allow for
// clocks that run a little fast.
const clockSkew = 5 * time.Minute

// InvalidTime returns the time that stands for one a client sent that is
// no instant at all: a protobuf Timestamp outside the years 1-9999, or with
// nanos outside 0-999,999,999. The transport passes it on in the time's
// place; it lies outside the years 1-9999 itself, so validation reports
// the field as a violation instead of using it.
func InvalidTime() time.Time { return time.Date(0, time.January, 1, 0, 0, 0, 0, time.UTC) }

// validInstant reports whether t lies in the years 1-9999 (UTC): the range
// of a protobuf Timestamp, which every time the log stores must fit.
func validInstant(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// checkInstant checks a time a client sent: the zero time means none was
// sent, which is a violation when required. It returns whether t was sent
// and is a valid instant.
func checkInstant(vs *violations, field string, t time.Time, required bool) bool {
	switch {
	case t.IsZero():
		if required {
			vs.add(field, "is required")
		}
		return false
	case !validInstant(t):
		vs.add(field, "must be a valid timestamp (years 1-9999, nanos 0-999999999)")
		return false
	}
	return true
}

// checkRecentTime checks a time a client sent of something that happened
// in the SPA's time: a valid instant, not in the future (beyond clockSkew)
// and not before 2019.
func checkRecentTime(vs *violations, field string, t, now time.Time, required bool) {
	if !checkInstant(vs, field, t, required) {
		return
	}
	switch {
	case t.After(now.Add(clockSkew)):
		vs.add(field, "must not be in the future")
	case t.Year() < 2019:
		vs.add(field, "must not be before 2019")
	}
}

// BusinessTime returns the time a command is decided at, which its events
// record as their occurred-at: occurred (the request's occurred_at), in
// UTC, when the client stated one, else now. An occurred_at that is not a
// valid instant, is in the future or is before 2019 is a KindInvalid
// *Error naming it; now is returned with it, so that the rest of the
// request can still be checked and every bad field reported at once (see
// JoinInvalid).
func BusinessTime(occurred, now time.Time) (time.Time, error) {
	var vs violations
	checkRecentTime(&vs, "occurred_at", occurred, now, false)
	if err := vs.err(); err != nil || occurred.IsZero() {
		return now, err
	}
	return occurred.UTC(), nil
}

// JoinInvalid combines the outcomes of checking parts of one request, so
// that its sender hears of every bad field at once: when any of errs is
// KindInvalid the result is one KindInvalid *Error with all their
// violations, in the order given; otherwise it is the first non-nil error.
func JoinInvalid(errs ...error) error {
	var (
		invalid []*Error
		other   error
	)
	for _, err := range errs {
		var e *Error
		switch {
		case errors.As(err, &e) && e.Kind == KindInvalid:
			invalid = append(invalid, e)
		case err != nil && other == nil:
			other = err
		}
	}
	switch len(invalid) {
	case 0:
		return other
	case 1:
		return invalid[0]
	}
	joined := &Error{Kind: KindInvalid, Message: "invalid request"}
	for _, e := range invalid {
		joined.Violations = append(joined.Violations, e.Violations...)
	}
	return joined
}
