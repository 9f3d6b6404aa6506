package spa

import "strconv"

// Board page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
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
// default when zero) and the board position to start after.
func (q ListQuery) Validate() (size int, after uint64, err error) {
	var vs violations
	checkEnum(&vs, "status", q.Status, statusEnd, false)
	checkEnum(&vs, "pathway", q.Pathway, pathwayEnd, false)
	if q.SiteODS != "" && !IsODSCode(q.SiteODS) {
		vs.add("site_ods", "must be an ODS code: 1-9 upper-case letters or digits")
	}
	size = int(q.PageSize)
	if size == 0 {
		size = DefaultPageSize
	}
	if size < 1 || size > MaxPageSize {
		vs.add("page_size", "must be 0-%d", MaxPageSize)
	}
	if q.PageToken != "" {
		var perr error
		if after, perr = strconv.ParseUint(q.PageToken, 10, 64); perr != nil {
			vs.add("page_token", "is not a token from a previous page")
		}
	}
	return size, after, vs.err()
}

// PageToken returns the token for the page after board position next, or
// "" when there is no next page.
func PageToken(next uint64) string {
	if next == 0 {
		return ""
	}
	return strconv.FormatUint(next, 10)
}

// ValidateProviderQuery checks a provider directory query.
func ValidateProviderQuery(borough string, service Service) error {
	var vs violations
	checkText(&vs, "borough", borough, false, MaxShortTextLen)
	checkEnum(&vs, "service", service, serviceEnd, false)
	return vs.err()
}

// ValidateAssignmentQuery checks a provider's assignment list query.
func ValidateAssignmentQuery(providerODS string, status TaskStatus) error {
	var vs violations
	checkODS(&vs, "provider_ods", providerODS)
	checkEnum(&vs, "status", status, taskStatusEnd, false)
	return vs.err()
}
