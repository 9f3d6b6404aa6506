// Package authz decides who may do what: which roles may call each method
// of the API, and which objects a caller's organisation may read or
// change. It holds policy only; the transport (internal/rpc) and the use
// cases (internal/app) enforce it.
package authz

import (
	"fmt"
	"slices"

	"spa/internal/spa"
)

// Role is what a caller does for its organisation. A caller's role comes
// from its verified certificate (internal/identity).
type Role string

// The roles.
const (
	// DischargeTeam is a hospital ward's discharge team; its organisation
	// is the referring site's ODS code.
	DischargeTeam Role = "discharge-team"
	// Provider is a community provider; its organisation is the provider's
	// ODS code.
	Provider Role = "provider"
	// Coordinator is the SPA's own staff: the board, capacity, holds.
	Coordinator Role = "coordinator"
	// Auditor replays the log and reads the access log.
	Auditor Role = "auditor"
	// Admin manages providers and routing policies.
	Admin Role = "admin"
)

// Roles lists every role, in a fixed order.
var Roles = []Role{DischargeTeam, Provider, Coordinator, Auditor, Admin}

// Valid reports whether r is a role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Service and method names of the API, as gRPC names them.
const (
	referrals   = "/spa.v1.ReferralService/"
	providers   = "/spa.v1.ProviderService/"
	assignments = "/spa.v1.AssignmentService/"
	audit       = "/spa.v1.AuditService/"
	policies    = "/spa.v1.PolicyService/"
)

// methods maps every method of the API to the roles that may call it.
// A method not listed is refused to everyone. Which objects a role may
// touch within a method is decided by the object checks below.
var methods = map[string][]Role{
	referrals + "SubmitReferral":         {DischargeTeam},
	referrals + "RecordCriteriaToReside": {DischargeTeam},
	referrals + "AmendReferral":          {DischargeTeam},
	referrals + "RecordInfectionTest":    {DischargeTeam},
	referrals + "RecordPatientLeft":      {DischargeTeam},
	referrals + "WithdrawReferral":       {DischargeTeam, Coordinator},
	referrals + "HoldReferral":           {DischargeTeam, Coordinator},
	referrals + "ReleaseHold":            {DischargeTeam, Coordinator},
	referrals + "GetReferral":            {DischargeTeam, Provider, Coordinator},
	referrals + "ListReferrals":          {DischargeTeam, Coordinator},

	providers + "RegisterProvider": {Provider, Admin},
	providers + "UpdateCapacity":   {Provider, Admin},
	providers + "ListProviders":    {Provider, Coordinator, Admin},

	assignments + "AcceptOffer":            {Provider},
	assignments + "DeclineOffer":           {Provider},
	assignments + "StartCare":              {Provider},
	assignments + "CompleteAssignment":     {Provider},
	assignments + "UpdateAssignmentStatus": {Provider},
	assignments + "ListAssignments":        {Provider, Coordinator},
	assignments + "WatchAssignments":       {Provider, Coordinator},

	audit + "ReplayEvents": {Auditor},
	audit + "ListAccess":   {Auditor},

	policies + "SwitchPolicy": {Admin},
	policies + "ListPolicies": {DischargeTeam, Provider, Coordinator, Auditor, Admin},
}

// Methods lists the methods in the table, sorted.
func Methods() []string {
	out := make([]string, 0, len(methods))
	for m := range methods {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Method returns nil when role may call method, and a KindPermissionDenied
// error otherwise (also for a method the table does not list).
func Method(role Role, method string) error {
	if slices.Contains(methods[method], role) {
		return nil
	}
	return denied(fmt.Sprintf("the %s role may not call %s", roleName(role), method))
}

// Caller is who calls: their organisation and role, as verified.
type Caller struct {
	ODS  string
	Role Role
}

// Of returns the caller an actor names. An actor without a role is the
// system itself (the router, the scheduler, a test): object checks do not
// apply to it, and the transport never lets a call through without one.
func Of(a spa.Actor) (Caller, bool) {
	if a.Role == "" {
		return Caller{}, false
	}
	return Caller{ODS: a.ODS, Role: Role(a.Role)}, true
}

// Referral returns nil when c may read or change a referral from site
// (the referring site's ODS code) offered or assigned to providers; a
// KindPermissionDenied error otherwise. A discharge team acts on its own
// site's referrals, a provider on those offered or assigned to it, a
// coordinator on every referral; nobody else on any.
func (c Caller) Referral(site string, providers []string) error {
	switch {
	case c.Role == Coordinator:
		return nil
	case c.Role == DischargeTeam && site == c.ODS:
		return nil
	case c.Role == Provider && slices.Contains(providers, c.ODS):
		return nil
	}
	return denied(fmt.Sprintf("%s %s may not act on this referral", roleName(c.Role), c.ODS))
}

// Site returns nil when c may submit or list referrals of site.
func (c Caller) Site(site string) error {
	if c.Role == Coordinator || (c.Role == DischargeTeam && site == c.ODS) {
		return nil
	}
	return denied(fmt.Sprintf("%s %s may not act for site %q", roleName(c.Role), c.ODS, site))
}

// ProviderOrg returns nil when c may read or change provider ods's
// registration, capacity or assignments: a provider its own; an admin and
// a coordinator any.
func (c Caller) ProviderOrg(ods string) error {
	if c.Role == Admin || c.Role == Coordinator || (c.Role == Provider && ods == c.ODS) {
		return nil
	}
	return denied(fmt.Sprintf("%s %s may not act for provider %q", roleName(c.Role), c.ODS, ods))
}

// Assignment returns nil when c may answer an assignment addressed to
// provider: only that provider may.
func (c Caller) Assignment(provider string) error {
	if c.Role == Provider && provider == c.ODS {
		return nil
	}
	return denied(fmt.Sprintf("%s %s may not answer an assignment addressed to another provider", roleName(c.Role), c.ODS))
}

func roleName(r Role) string {
	if r == "" {
		return "no"
	}
	return string(r)
}

func denied(msg string) error {
	return &spa.Error{Kind: spa.KindPermissionDenied, Message: "permission denied: " + msg}
}
