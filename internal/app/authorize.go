package app

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"spa/internal/authz"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// The object checks of authorisation (internal/authz): which referrals,
// providers and assignments a caller's organisation may touch. The
// transport has already checked the caller's role against the method; a
// Meta without an actor role is the system itself and is not checked.

// authorize checks meta's caller against the aggregate state a command
// was decided on (also when the command is a retry answered from the
// log). A referral not yet submitted is left to the command to report; a
// provider is named by its aggregate id, registered or not.
func authorize(meta Meta, id string, state any) error {
	c, ok := authz.Of(meta.Actor)
	if !ok {
		return nil
	}
	switch s := state.(type) {
	case *spa.Referral:
		if !s.Exists() {
			return nil
		}
		return c.Referral(s.Details.Episode.SiteODS, providersOf(s.Assignments))
	case *spa.Provider:
		return c.ProviderOrg(id)
	}
	return nil
}

// providersOf lists the providers a referral was ever offered or
// assigned to.
func providersOf(as []spa.Assignment) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ProviderODS
	}
	return out
}

// authorizeRead checks meta's caller against a referral as the read
// model returned it, and returns what the caller may see of it: a
// provider sees the referral's details and its own assignments, not
// other providers' offers, nor the history (which holds them).
func authorizeRead(meta Meta, res *spav1.GetReferralResponse) (*spav1.GetReferralResponse, error) {
	c, ok := authz.Of(meta.Actor)
	if !ok {
		return res, nil
	}
	var providers []string
	for _, a := range res.GetReferral().GetAssignments() {
		providers = append(providers, a.GetProviderOds())
	}
	if err := c.Referral(res.GetReferral().GetDetails().GetEpisode().GetSiteOds(), providers); err != nil {
		return nil, err
	}
	if c.Role != authz.Provider {
		return res, nil
	}
	mine := proto.Clone(res).(*spav1.GetReferralResponse)
	mine.History, mine.HistoryTruncated = nil, false
	mine.Referral.Assignments = slices.DeleteFunc(mine.Referral.Assignments, func(a *spav1.Assignment) bool { return a.GetProviderOds() != c.ODS })
	return mine, nil
}

// ownSite fills a discharge team's own site into an empty site filter:
// its board is its site's.
func ownSite(meta Meta, filter string) string {
	if c, ok := authz.Of(meta.Actor); ok && c.Role == authz.DischargeTeam && filter == "" {
		return c.ODS
	}
	return filter
}

// ownProvider fills a provider's own ODS code into an empty provider
// filter.
func ownProvider(meta Meta, ods string) string {
	if c, ok := authz.Of(meta.Actor); ok && c.Role == authz.Provider && ods == "" {
		return c.ODS
	}
	return ods
}

// checkList checks a caller may list what check allows of it; coordinators
// and the system list anything.
func checkList(meta Meta, check func(authz.Caller) error) error {
	if c, ok := authz.Of(meta.Actor); ok && c.Role != authz.Coordinator {
		return check(c)
	}
	return nil
}

// purpose checks that a caller reading patient data says why, with one of
// spa.Purposes (the system itself reads for its own work).
func purpose(meta Meta) error {
	if _, ok := authz.Of(meta.Actor); !ok || slices.Contains(spa.Purposes, meta.Purpose) {
		return nil
	}
	return &spa.Error{Kind: spa.KindInvalid, Message: "a read of patient data must state its purpose", Violations: []spa.Violation{{
		Field: "metadata.spa-purpose", Description: "must be one of " + strings.Join(spa.Purposes, ", ")}}}
}
