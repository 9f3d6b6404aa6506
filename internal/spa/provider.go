package spa

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Service is a kind of care a provider offers, with its own capacity.
type Service int32

// The services.
const (
	ServiceUnspecified Service = iota
	ServiceHomeCareReablement
	ServiceUrgentCommunityResponse
	ServiceStepDownBed
	ServiceDesignatedStepDownBed
	ServiceCareHomeBed
	ServiceHospiceBed
	ServiceHospiceAtHome
	serviceEnd
)

// Limits on provider registrations and capacity.
const (
	// MaxBoroughs is the most boroughs provider.boroughs may list.
	MaxBoroughs = 20
	// MaxServices is the most services provider.services may list: each
	// service once (7 today).
	MaxServices = int(serviceEnd) - 1
	// MaxCapacityEntries is the most counts an UpdateCapacity request's
	// capacity may list: one per service (7 today).
	MaxCapacityEntries = MaxServices
	// MaxUnits is the most units one capacity count may declare.
	MaxUnits = 10000
)

// ProviderDetails is what a provider registers.
type ProviderDetails struct {
	ODS                      string
	Name                     string
	Boroughs                 []string
	Services                 []Service
	TrustedAssessor          bool
	AcceptsInfectionPositive bool
}

// Offers reports whether the provider offers service s.
func (d ProviderDetails) Offers(s Service) bool { return slices.Contains(d.Services, s) }

// Serves reports whether the provider serves borough b (case-insensitive).
func (d ProviderDetails) Serves(b string) bool {
	return slices.ContainsFunc(d.Boroughs, func(x string) bool { return strings.EqualFold(x, b) })
}

// Capacity is a provider's capacity for one service.
//
// A provider declares vacancies: Declared is the count of free units it
// last made (as of AsOf). Reserved is the units promised to live offers
// that the count still holds free: every reservation not given back,
// except one whose patient took the unit up before the count was made
// (the count left that unit out already). Available, what the SPA can
// still offer, is Declared less Reserved, never below zero: re-declaring
// the same figure, or declaring in any order with reservations, releases
// and retries, never frees a unit promised to a patient.
//
// In an UpdateCapacity command and a CapacityUpdated event, Available is
// the declared count.
type Capacity struct {
	Service   Service
	Available int32
	Declared  int32
	Reserved  int32
	Open      bool
	AsOf      time.Time
	// DeclaredSeq is the log sequence of the declaration (state only): a
	// provider that declined a referral is offered it again only after
	// declaring again.
	DeclaredSeq uint64
}

// Reservation is a unit promised to an offer and not given back.
type Reservation struct {
	Service      Service
	AssignmentID string
	// OccupiedAt is when the SPA recorded that the patient took the unit
	// up (the log's clock, never a client-stated time); zero until then.
	OccupiedAt time.Time
	// Untracked: made by a version before 0.3 (see CapacityReserved): the
	// next count of its service ends it.
	Untracked bool
}

// covered reports whether a count made as of asOf, recorded at recorded,
// already leaves the unit out: the patient took it up before the count's
// as-of by more than the clock skew allowed between a provider's clock
// and the SPA's (a unit taken up just before a count is still held
// reserved: it may be offered late, never twice). The as-of is trusted
// only within that skew of the SPA's clock: a count stated further ahead
// (a client's business time may itself run ahead) leaves nothing out.
func (r Reservation) covered(asOf, recorded time.Time) bool {
	if r.OccupiedAt.IsZero() || asOf.After(recorded.Add(clockSkew)) {
		return false
	}
	return !r.OccupiedAt.Add(clockSkew).After(asOf)
}

// ProviderRegistered: a provider registered or replaced its details.
type ProviderRegistered struct {
	Details ProviderDetails
}

// CapacityUpdated: a provider declared capacity for some services.
type CapacityUpdated struct {
	Capacity []Capacity
}

func (ProviderRegistered) eventName() string    { return "ProviderRegistered" }
func (CapacityUpdated) eventName() string       { return "CapacityUpdated" }
func (ProviderRegistered) aggregate() Aggregate { return AggregateProvider }
func (CapacityUpdated) aggregate() Aggregate    { return AggregateProvider }

// Provider is a provider's state, rebuilt from its events.
type Provider struct {
	Details ProviderDetails
	// Capacity has one entry per offered service, in service order; a
	// service never counted has zero units and is closed.
	Capacity []Capacity
	// Reservations are the units promised to offers and not given back
	// that a declaration may still count free, in the order made.
	Reservations []Reservation
	// Counted is the as-of of the last count of every service ever
	// counted, kept when a service is dropped: a service added back
	// refuses counts older than it.
	Counted map[Service]time.Time `json:",omitempty"`
	Version uint64
}

// Exists reports whether the provider registered.
func (p *Provider) Exists() bool { return p.Details.ODS != "" }

// CapacityFor returns the capacity of service s, and whether it is offered.
func (p *Provider) CapacityFor(s Service) (Capacity, bool) {
	i := p.capacityIndex(s)
	if i < 0 {
		return Capacity{}, false
	}
	return p.Capacity[i], true
}

func (p *Provider) capacityIndex(s Service) int {
	return slices.IndexFunc(p.Capacity, func(c Capacity) bool { return c.Service == s })
}

// Apply evolves the state by one recorded event.
func (p *Provider) Apply(rec Record) {
	p.Version = rec.Sequence
	switch e := rec.Event.(type) {
	case ProviderRegistered:
		p.Details = e.Details
		// Keep the counts of services still offered; add new ones closed.
		caps := make([]Capacity, 0, len(e.Details.Services))
		for _, s := range e.Details.Services {
			c, ok := p.CapacityFor(s)
			if !ok {
				c = Capacity{Service: s, AsOf: p.Counted[s]}
			}
			caps = append(caps, c)
		}
		p.Capacity = caps
	case CapacityUpdated:
		for _, c := range e.Capacity {
			if i := p.capacityIndex(c.Service); i >= 0 {
				p.Capacity[i] = Capacity{Service: c.Service, Declared: c.Available, Open: c.Open, AsOf: c.AsOf, DeclaredSeq: rec.Sequence}
				if p.Counted == nil {
					p.Counted = map[Service]time.Time{}
				}
				p.Counted[c.Service] = c.AsOf
			}
			// A reservation this count leaves out never counts again:
			// counts only move forward in time. One taken up after this
			// count holds its unit until a later count leaves it out.
			p.Reservations = slices.DeleteFunc(p.Reservations, func(r Reservation) bool {
				return r.Service == c.Service && (r.Untracked || r.covered(c.AsOf, rec.RecordedAt))
			})
		}
	case CapacityReserved:
		if i := p.reservation(e.AssignmentID); i >= 0 {
			p.Reservations[i].OccupiedAt = time.Time{} // held again: no count leaves it out
		} else {
			p.Reservations = append(p.Reservations, Reservation{Service: e.Service, AssignmentID: e.AssignmentID, Untracked: !e.Tracked})
		}
	case CapacityOccupied:
		if i := p.reservation(e.AssignmentID); i >= 0 && p.Reservations[i].OccupiedAt.IsZero() {
			p.Reservations[i].OccupiedAt = rec.RecordedAt.UTC()
			p.Reservations[i].Untracked = false // its taking up is recorded: tracked from here on
		}
	case CapacityReleased:
		if i := p.reservation(e.AssignmentID); i >= 0 {
			p.Reservations = slices.Delete(p.Reservations, i, i+1)
		}
	}
	if len(p.Reservations) == 0 {
		p.Reservations = nil
	}
	for i := range p.Capacity {
		c := &p.Capacity[i]
		c.Reserved = 0
		for _, r := range p.Reservations {
			if r.Service == c.Service {
				c.Reserved++
			}
		}
		c.Available = max(0, c.Declared-c.Reserved)
	}
}

func (p *Provider) reservation(assignmentID string) int {
	return slices.IndexFunc(p.Reservations, func(r Reservation) bool { return r.AssignmentID == assignmentID })
}

// RegisterProvider registers a provider or replaces its details.
type RegisterProvider struct {
	Details ProviderDetails
}

// Normalise trims text, upper-cases the ODS code and sorts the boroughs and
// services, so that the same registration always compares equal.
func (c *RegisterProvider) Normalise() {
	d := &c.Details
	d.ODS = strings.ToUpper(strings.TrimSpace(d.ODS))
	d.Name = strings.TrimSpace(d.Name)
	for i, b := range d.Boroughs {
		d.Boroughs[i] = strings.TrimSpace(b)
	}
	slices.SortFunc(d.Boroughs, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	slices.Sort(d.Services)
	if len(d.Boroughs) == 0 {
		d.Boroughs = nil
	}
	if len(d.Services) == 0 {
		d.Services = nil
	}
}

// DecideRegisterProvider decides a registration: nil event and nil error
// when the same details are registered already.
func DecideRegisterProvider(p Provider, c RegisterProvider, _ time.Time) (Event, error) {
	var vs violations
	d := c.Details
	checkODS(&vs, "provider.ods", d.ODS)
	checkText(&vs, "provider.name", d.Name, true, MaxNameLen)
	switch {
	case len(d.Boroughs) == 0:
		vs.add("provider.boroughs", "must list at least one borough")
	case len(d.Boroughs) > MaxBoroughs:
		vs.add("provider.boroughs", "must list at most %d boroughs", MaxBoroughs)
	default:
		for i, b := range d.Boroughs {
			f := fmt.Sprintf("provider.boroughs[%d]", i)
			checkText(&vs, f, b, true, MaxShortTextLen)
			if i > 0 && strings.EqualFold(b, d.Boroughs[i-1]) {
				vs.add(f, "is listed twice")
			}
		}
	}
	switch {
	case len(d.Services) == 0:
		vs.add("provider.services", "must list at least one service")
	case len(d.Services) > MaxServices:
		vs.add("provider.services", "must list each service at most once (at most %d)", MaxServices)
	default:
		for i, s := range d.Services {
			f := fmt.Sprintf("provider.services[%d]", i)
			checkEnum(&vs, f, s, serviceEnd, true)
			if i > 0 && s == d.Services[i-1] {
				vs.add(f, "is listed twice")
			}
		}
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	if p.Exists() && sameJSON(p.Details, d) {
		return nil, nil
	}
	return ProviderRegistered{Details: d}, nil
}

// UpdateCapacity records a provider's capacity for some of its services.
type UpdateCapacity struct {
	ProviderODS string
	Capacity    []Capacity
}

// DecideUpdateCapacity decides a declaration of vacancies. A service the
// provider does not offer, or a count older than the one recorded, is
// refused with KindFailedPrecondition; counts all recorded already as sent
// (a retry) decide nothing.
func DecideUpdateCapacity(p Provider, c UpdateCapacity, now time.Time) (Event, error) {
	var vs violations
	checkODS(&vs, "provider_ods", c.ProviderODS)
	switch {
	case len(c.Capacity) == 0:
		vs.add("capacity", "must list at least one service")
	case len(c.Capacity) > MaxCapacityEntries:
		vs.add("capacity", "must list each service at most once (at most %d)", MaxCapacityEntries)
	default:
		seen := map[Service]bool{}
		for i, cp := range c.Capacity {
			f := fmt.Sprintf("capacity[%d].", i)
			checkEnum(&vs, f+"service", cp.Service, serviceEnd, true)
			if seen[cp.Service] {
				vs.add(f+"service", "is listed twice")
			}
			seen[cp.Service] = true
			if cp.Available < 0 || cp.Available > MaxUnits {
				vs.add(f+"available_units", "must be 0-%d", MaxUnits)
			}
			checkRecentTime(&vs, f+"as_of", cp.AsOf, now, true)
		}
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	if !p.Exists() {
		return nil, Errorf(KindNotFound, "provider %s not found", c.ProviderODS)
	}
	// Only the counts that change go in the event: one sent again as it
	// was must not be applied again at a later recorded time.
	caps := make([]Capacity, 0, len(c.Capacity))
	for _, cp := range c.Capacity {
		cur, ok := p.CapacityFor(cp.Service)
		if !ok {
			return nil, Errorf(KindFailedPrecondition, "provider %s does not offer service %d", c.ProviderODS, cp.Service)
		}
		if cp.AsOf.Before(cur.AsOf) {
			return nil, Errorf(KindFailedPrecondition, "a newer count of service %d (as of %s) is already recorded", cp.Service, cur.AsOf.UTC().Format(time.RFC3339))
		}
		cp.AsOf = cp.AsOf.UTC()
		if cur.Declared != cp.Available || cur.Open != cp.Open || !cur.AsOf.Equal(cp.AsOf) {
			caps = append(caps, Capacity{Service: cp.Service, Available: cp.Available, Open: cp.Open, AsOf: cp.AsOf})
		}
	}
	if len(caps) == 0 {
		return nil, nil
	}
	slices.SortFunc(caps, func(a, b Capacity) int { return int(a.Service - b.Service) })
	return CapacityUpdated{Capacity: caps}, nil
}

func checkODS(vs *violations, field, s string) {
	if s == "" {
		vs.add(field, "is required")
	} else if !IsODSCode(s) {
		vs.add(field, "must be an ODS code: 1-9 upper-case letters or digits")
	}
}
