package main

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/authz"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/identity"
	"spa/internal/referraltest"
	"spa/internal/spa"
)

// The sites that refer: referraltest's ward, and a rare one (1 referral in
// 97) that the filtered board page looks for.
const (
	mainSite = "RH802"
	rareSite = "RJZ30"
)

var (
	coordinator = identity.Identity{ODS: "SPA", Role: authz.Coordinator, User: "bench"}
	auditor     = identity.Identity{ODS: "SPA", Role: authz.Auditor, User: "bench"}
)

// team is the discharge team of a site.
func team(site string) identity.Identity {
	return identity.Identity{ODS: site, Role: authz.DischargeTeam, User: "bench"}
}

// benchProvider is one provider the bench registers and acts as.
type benchProvider struct {
	ods      string
	services []spav1.Service
	// open: it takes referrals; the idle provider is closed, so that its
	// history stays a few events long.
	open bool
}

// providers serve Bromley (referraltest's borough), each service by at
// least one, with every unit the API allows: a run reserves a unit per
// offer, and a unit taken up stays reserved until the provider counts
// again five minutes later (ADR 16).
var providers = []benchProvider{
	{ods: "BHF01", services: []spav1.Service{spav1.Service_SERVICE_HOME_CARE_REABLEMENT}, open: true},
	{ods: "BHF02", services: []spav1.Service{spav1.Service_SERVICE_HOME_CARE_REABLEMENT}, open: true},
	{ods: "BHF03", services: []spav1.Service{spav1.Service_SERVICE_HOME_CARE_REABLEMENT}, open: true},
	{ods: "BHF04", services: []spav1.Service{spav1.Service_SERVICE_HOME_CARE_REABLEMENT}, open: true},
	{ods: "BSD01", services: []spav1.Service{spav1.Service_SERVICE_STEP_DOWN_BED}, open: true},
	{ods: "BSD02", services: []spav1.Service{spav1.Service_SERVICE_STEP_DOWN_BED}, open: true},
	{ods: "BCH01", services: []spav1.Service{spav1.Service_SERVICE_CARE_HOME_BED}, open: true},
	{ods: "BHO01", services: []spav1.Service{spav1.Service_SERVICE_HOSPICE_BED, spav1.Service_SERVICE_HOSPICE_AT_HOME}, open: true},
	{ods: "BHO02", services: []spav1.Service{spav1.Service_SERVICE_HOSPICE_BED, spav1.Service_SERVICE_HOSPICE_AT_HOME}, open: true},
	idleProvider,
}

// idleProvider is never offered anything: UpdateCapacity on it is the
// cost of a provider with a short history.
var idleProvider = benchProvider{ods: "BID01", services: []spav1.Service{spav1.Service_SERVICE_CARE_HOME_BED}}

func (p benchProvider) identity() identity.Identity {
	return identity.Identity{ODS: p.ods, Role: authz.Provider, User: "bench"}
}

func (p benchProvider) details() *spav1.ProviderDetails {
	return &spav1.ProviderDetails{Ods: p.ods, Name: "Bench provider " + p.ods, Boroughs: []string{"Bromley"}, Services: p.services}
}

// capacity is a count of every service of p as at at.
func (p benchProvider) capacity(at time.Time) []*spav1.Capacity {
	var caps []*spav1.Capacity
	for _, s := range p.services {
		caps = append(caps, &spav1.Capacity{Service: s, AvailableUnits: spa.MaxUnits, Open: p.open, AsOf: timestamppb.New(at)})
	}
	return caps
}

// identities are every identity the bench acts as (with TLS, each needs a
// certificate).
func identities() []identity.Identity {
	ids := []identity.Identity{team(mainSite), team(rareSite), coordinator, auditor}
	for _, p := range providers {
		ids = append(ids, p.identity())
	}
	return ids
}

// pathway is the way a referral goes, in the mix of the planning shares of
// the pathways the SPA coordinates (domain brief): Home First 70%,
// step-down 15%, care home 5%, end of life 10%.
type pathway int

const (
	homeFirst pathway = iota
	stepDown
	careHome
	endOfLife
)

var pathwayNames = [...]string{"home-first", "step-down", "care-home", "end-of-life"}

func (p pathway) String() string { return pathwayNames[p] }

// pathwayOf spreads the mix evenly over every 20 referrals.
func pathwayOf(i int) pathway {
	switch n := i % 20; {
	case n < 14:
		return homeFirst
	case n < 17:
		return stepDown
	case n < 18:
		return careHome
	}
	return endOfLife
}

// referral is the i-th referral the bench makes.
type referral struct {
	i       int
	pathway pathway
	site    string
	// withdrawn: the patient deteriorates after the referral (1 in 101,
	// where the run asks for it), the status the filtered board looks
	// for.
	withdrawn bool
}

func referralOf(i int, withdrawals bool) referral {
	r := referral{i: i, pathway: pathwayOf(i), site: mainSite}
	if i%97 == 0 {
		r.site = rareSite
	}
	r.withdrawn = withdrawals && i%101 == 50
	return r
}

// details are the referral's details, submitted while the patient still
// needs oxygen (ready false: the ward records the criteria to reside
// later) or already ready for discharge today.
func (r referral) details(ready bool, today string) *spav1.ReferralDetails {
	d := referraltest.Details(r.i)
	d.Episode.SiteOds = r.site
	switch r.pathway {
	case stepDown:
		d.Needs.ShortTermBedBasedCare = true
	case careHome:
		d.Needs.OngoingBeddedCare = true
	case endOfLife:
		place := spav1.PlaceOfCare_PLACE_OF_CARE_HOME
		if r.i%3 == 0 {
			place = spav1.PlaceOfCare_PLACE_OF_CARE_HOSPICE
		}
		d.EndOfLife = &spav1.EndOfLife{FastTrack: true, PreferredPlace: place}
	}
	if ready {
		d.DischargeReadyDate = today
	} else {
		d.CriteriaMet = []spav1.CriterionToReside{spav1.CriterionToReside_CRITERION_TO_RESIDE_OXYGEN}
	}
	return d
}
