package spa

import (
	"encoding/binary"
	"math"
	"strconv"
)

// Default page sizes: the board's, and every other list's.
const (
	DefaultPageSize     = 50
	DefaultListPageSize = 100
)

// ValidateGet checks a GetReferral query.
func ValidateGet(referralID string) error {
	var vs violations
	checkReferralID(&vs, referralID)
	return vs.err()
}

// ListQuery is a board query; zero filters match everything.
type ListQuery struct {
	Status    Status
	Pathway   Pathway
	SiteODS   string
	PageSize  int32
	PageToken string
}

// Validate checks a board query and returns the page size to use (the
// default when zero, at most MaxPageSize) and the board position to start
// after.
func (q ListQuery) Validate() (size int, after uint64, err error) {
	var vs violations
	checkEnum(&vs, "status", q.Status, statusEnd, false)
	checkEnum(&vs, "pathway", q.Pathway, pathwayEnd, false)
	if q.SiteODS != "" && !IsODSCode(q.SiteODS) {
		vs.add("site_ods", "must be an ODS code: 1-9 upper-case letters or digits")
	}
	size = pageSize(&vs, q.PageSize, DefaultPageSize)
	after = parseSeqPageToken(&vs, q.PageToken, q.key())
	return size, after, vs.err()
}

// NextPageToken returns the token of the page after board position next
// ("" when next is 0: no next page).
func (q ListQuery) NextPageToken(next uint64) string { return seqPageToken(q.key(), next) }

func (q ListQuery) key() string {
	return "referrals/" + strconv.Itoa(int(q.Status)) + "/" + strconv.Itoa(int(q.Pathway)) + "/" + q.SiteODS
}

// ProviderQuery is a provider directory query; zero filters match
// everything.
type ProviderQuery struct {
	Borough   string
	Service   Service
	PageSize  int32
	PageToken string
}

// Validate checks a provider directory query and returns the page size
// and the ODS code to start after ("" from the first).
func (q ProviderQuery) Validate() (size int, after string, err error) {
	var vs violations
	checkText(&vs, "borough", q.Borough, false, MaxShortTextLen)
	checkEnum(&vs, "service", q.Service, serviceEnd, false)
	size = pageSize(&vs, q.PageSize, DefaultListPageSize)
	after = string(parsePageToken(&vs, q.PageToken, q.key()))
	return size, after, vs.err()
}

// NextPageToken returns the token of the page after ODS code next ("":
// no next page).
func (q ProviderQuery) NextPageToken(next string) string { return PageToken(q.key(), []byte(next)) }

func (q ProviderQuery) key() string {
	return "providers/" + q.Borough + "/" + strconv.Itoa(int(q.Service))
}

// AssignmentQuery is a provider's assignment list query.
type AssignmentQuery struct {
	ProviderODS string
	Status      TaskStatus
	PageSize    int32
	PageToken   string
}

// Validate checks an assignment list query and returns the page size and
// the position (newest offer first) to start after.
func (q AssignmentQuery) Validate() (size int, after uint64, err error) {
	var vs violations
	checkODS(&vs, "provider_ods", q.ProviderODS)
	checkEnum(&vs, "status", q.Status, taskStatusEnd, false)
	size = pageSize(&vs, q.PageSize, DefaultListPageSize)
	after = parseSeqPageToken(&vs, q.PageToken, q.key())
	return size, after, vs.err()
}

// NextPageToken returns the token of the page after position next.
func (q AssignmentQuery) NextPageToken(next uint64) string { return seqPageToken(q.key(), next) }

func (q AssignmentQuery) key() string {
	return "assignments/" + q.ProviderODS + "/" + strconv.Itoa(int(q.Status))
}

// AccessQuery lists who read a referral's data.
type AccessQuery struct {
	// One of ReferralID and NHSNumber.
	ReferralID string
	NHSNumber  string
	PageSize   int32
	PageToken  string
}

// Validate checks an access log query and returns the page size and the
// access log position to start after.
func (q AccessQuery) Validate() (size int, after AccessPosition, err error) {
	var vs violations
	switch {
	case q.ReferralID != "" && q.NHSNumber != "":
		vs.add("nhs_number", "give referral_id or nhs_number, not both")
	case q.NHSNumber != "":
		if why := CheckNHSNumber(q.NHSNumber); why != "" {
			vs.add("nhs_number", "%s", why)
		}
	default:
		checkReferralID(&vs, q.ReferralID)
	}
	size = pageSize(&vs, q.PageSize, DefaultListPageSize)
	after = parseAccessPageToken(&vs, q.PageToken, q.key())
	return size, after, vs.err()
}

// NextPageToken returns the token of the page after position next (""
// for the zero position: no next page).
func (q AccessQuery) NextPageToken(next AccessPosition) string {
	if next == (AccessPosition{}) {
		return ""
	}
	return PageToken(q.key(), binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, next.Sequence), next.Index))
}

// parseAccessPageToken returns the position an access log page token
// stands for. A token of 8 bytes (made before one access record could
// name several referrals) is a sequence: after the whole of that record.
func parseAccessPageToken(vs *violations, token, query string) AccessPosition {
	c := parsePageToken(vs, token, query)
	switch len(c) {
	case 0:
		return AccessPosition{}
	case 8:
		return AccessPosition{Sequence: binary.BigEndian.Uint64(c), Index: math.MaxUint32}
	case 12:
		return AccessPosition{Sequence: binary.BigEndian.Uint64(c), Index: binary.BigEndian.Uint32(c[8:])}
	}
	vs.add("page_token", "is not a token from a previous page")
	return AccessPosition{}
}

func (q AccessQuery) key() string {
	if q.NHSNumber != "" {
		return "access/patient/" + q.NHSNumber
	}
	return "access/" + q.ReferralID
}
