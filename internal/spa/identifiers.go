package spa

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // The UK calendar must be known on hosts without zoneinfo.
	"unicode"
	"unicode/utf8"
)

// CheckNHSNumber reports why s (10 digits, spaces already removed) is not a
// valid NHS number, or "" when it is: the Modulus 11 check digit (weights 10
// down to 2 on the first nine digits; 11 - sum mod 11, 11 -> 0, 10 invalid)
// must equal the tenth digit, and all-identical digits are refused.
func CheckNHSNumber(s string) string {
	if len(s) != 10 {
		return "must be 10 digits"
	}
	sum := 0
	for i := 0; i < 10; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return "must be 10 digits"
		}
		if i < 9 {
			sum += int(c-'0') * (10 - i)
		}
	}
	if strings.Count(s, s[:1]) == 10 {
		return "must not be all the same digit"
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	if check == 10 || check != int(s[9]-'0') {
		return "fails the Modulus 11 check digit"
	}
	return ""
}

// FormatNHSNumber returns the display form "943 476 5919".
func FormatNHSNumber(s string) string {
	if len(s) != 10 {
		return s
	}
	return s[:3] + " " + s[3:6] + " " + s[6:]
}

var (
	odsPattern       = regexp.MustCompile(`^[A-Z0-9]{1,9}$`)
	postcodePattern  = regexp.MustCompile(`^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$`)
	requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{8,64}$`)
	referralIDPrefix = "ref-"
	referralIDLen    = len(referralIDPrefix) + 16
	idEncoding       = base32.StdEncoding.WithPadding(base32.NoPadding)
)

// IsODSCode reports whether s is an ODS organisation code: 1-9 upper-case
// letters or digits.
func IsODSCode(s string) bool { return odsPattern.MatchString(s) }

// normalisePostcode upper-cases a UK postcode and puts one space before the
// inward code ("br13jh" -> "BR1 3JH").
func normalisePostcode(s string) string {
	s = strings.ToUpper(strings.Join(strings.Fields(s), ""))
	if len(s) < 5 {
		return s
	}
	return s[:len(s)-3] + " " + s[len(s)-3:]
}

// ReferralIDFor derives the referral id from a client's request id, so that a
// retried submission lands on the same subject however late it comes.
func ReferralIDFor(requestID string) string {
	sum := sha256.Sum256([]byte(requestID))
	return referralIDPrefix + strings.ToLower(idEncoding.EncodeToString(sum[:10]))
}

// IsReferralID reports whether s has the shape of a referral id.
func IsReferralID(s string) bool {
	if len(s) != referralIDLen || !strings.HasPrefix(s, referralIDPrefix) {
		return false
	}
	_, err := idEncoding.DecodeString(strings.ToUpper(s[len(referralIDPrefix):]))
	return err == nil
}

// DateLayout is the ISO 8601 calendar date layout used for every date.
const DateLayout = "2006-01-02"

var london = sync.OnceValue(func() *time.Location {
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		panic("time/tzdata is linked in, so Europe/London must load: " + err.Error())
	}
	return loc
})

// LocalDate returns the UK calendar date of t, as an ISO date.
func LocalDate(t time.Time) string { return t.In(london()).Format(DateLayout) }

// checkText validates a free-text field: at most max characters, valid UTF-8,
// no control characters other than newline and tab.
// CheckLabel checks a short label a caller sends outside the request body
// (a user name, a correlation id): valid UTF-8, at most MaxShortTextLen
// bytes, no control characters at all (it is written to logs and
// records). It returns "" or why not.
func CheckLabel(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case len(s) > MaxShortTextLen:
		return fmt.Sprintf("must be at most %d bytes", MaxShortTextLen)
	case strings.ContainsFunc(s, unicode.IsControl):
		return "must not contain control characters"
	}
	return ""
}

// ValidRequestID reports whether id has the form of a request id.
func ValidRequestID(id string) bool { return requestIDPattern.MatchString(id) }

func checkText(vs *violations, field, s string, required bool, max int) {
	switch {
	case s == "" && required:
		vs.add(field, "is required")
	case !utf8.ValidString(s):
		vs.add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		vs.add(field, "must be at most %d characters", max)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f }):
		vs.add(field, "must not contain control characters")
	}
}

// checkDate validates an ISO date field and returns it parsed (zero when bad
// or empty); future dates (after today's UK date) are refused.
func checkDate(vs *violations, field, s string, required bool, today string) time.Time {
	if s == "" {
		if required {
			vs.add(field, "is required")
		}
		return time.Time{}
	}
	d, err := time.Parse(DateLayout, s)
	if err != nil {
		vs.add(field, "must be an ISO date like 2026-01-31")
		return time.Time{}
	}
	if s > today {
		vs.add(field, "must not be in the future")
		return time.Time{}
	}
	if d.Year() < 1890 {
		vs.add(field, "must not be before 1890")
		return time.Time{}
	}
	return d
}

// ParseLocalDate parses an ISO date as the start of that UK day.
func ParseLocalDate(s string) (time.Time, error) {
	return time.ParseInLocation(DateLayout, s, london())
}

// Request identifies a client's command for retries (AIP-155): the
// client's request id, and the SHA-256 of what it asked (method and body
// without the id).
type Request struct {
	ID   string
	Hash []byte
}

// CheckRequestID reports a request id that is set and not 8-64
// characters of A-Z a-z 0-9 . _ - as a KindInvalid field violation.
func CheckRequestID(id string) error {
	var vs violations
	if id != "" && !requestIDPattern.MatchString(id) {
		vs.add("request_id", requestIDRule)
	}
	return vs.err()
}

const requestIDRule = "must be 8-64 characters of A-Z a-z 0-9 . _ - (use a UUID)"
