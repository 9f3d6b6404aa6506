package app

import (
	"slices"
	"strings"

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
	var out []string
	for _, a := range as {
		if !slices.Contains(out, a.ProviderODS) {
			out = append(out, a.ProviderODS)
		}
	}
	return out
}

// authorizeRead checks meta's caller against a referral as the read
// model returned it.
func authorizeRead(meta Meta, res *spav1.GetReferralResponse) error {
	c, ok := authz.Of(meta.Actor)
	if !ok {
		return nil
	}
	var providers []string
	for _, a := range res.GetReferral().GetAssignments() {
		if !slices.Contains(providers, a.GetProviderOds()) {
			providers = append(providers, a.GetProviderOds())
		}
	}
	return c.Referral(res.GetReferral().GetDetails().GetEpisode().GetSiteOds(), providers)
}

// site returns the site a caller may list referrals of: its own for a
// discharge team (the filter may name it, or none), the filter as given
// for a coordinator.
func site(meta Meta, filter string) (string, error) {
	c, ok := authz.Of(meta.Actor)
	if !ok || c.Role != authz.DischargeTeam {
		return filter, nil
	}
	if filter == "" {
		filter = c.ODS
	}
	return filter, c.Site(filter)
}

// provider returns the provider a caller may read the assignments of: its
// own for a provider (the request may name it, or none).
func provider(meta Meta, ods string) (string, error) {
	c, ok := authz.Of(meta.Actor)
	if !ok || c.Role != authz.Provider {
		return ods, nil
	}
	if ods == "" {
		ods = c.ODS
	}
	return ods, c.ProviderOrg(ods)
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
