package spa

import (
	"strings"
	"testing"
	"time"
)

func careHome() ProviderDetails {
	return ProviderDetails{ODS: "VLAXL", Name: "Elmwood Care Home", Boroughs: []string{"Bexley", "Bromley"},
		Services: []Service{ServiceCareHomeBed, ServiceDesignatedStepDownBed}, AcceptsInfectionPositive: true}
}

func registering(mutate func(d *ProviderDetails)) RegisterProvider {
	c := RegisterProvider{Details: careHome()}
	mutate(&c.Details)
	c.Normalise()
	return c
}

func TestDecideRegisterProvider(t *testing.T) {
	t.Parallel()
	registered := ProviderRegistered{Details: registering(func(*ProviderDetails) {}).Details}
	tests := []decideCase[RegisterProvider]{
		{name: "registered, lists sorted", cmd: registering(func(d *ProviderDetails) {
			d.Boroughs, d.Services = []string{" Bromley", "bexley"}, []Service{ServiceDesignatedStepDownBed, ServiceCareHomeBed}
			d.ODS = "vlaxl"
		}), want: ProviderRegistered{Details: ProviderDetails{ODS: "VLAXL", Name: "Elmwood Care Home", Boroughs: []string{"bexley", "Bromley"},
			Services: []Service{ServiceDesignatedStepDownBed, ServiceCareHomeBed}, AcceptsInfectionPositive: true}}},
		{name: "the same again appends nothing", given: []Event{registered}, cmd: registering(func(*ProviderDetails) {}), want: nil},
		{name: "changed details are registered", given: []Event{registered},
			cmd:  registering(func(d *ProviderDetails) { d.TrustedAssessor = true }),
			want: ProviderRegistered{Details: func() ProviderDetails { d := registered.Details; d.TrustedAssessor = true; return d }()}},
		{name: "nothing", cmd: RegisterProvider{}, wantKind: KindInvalid,
			wantFields: []string{"provider.ods", "provider.name", "provider.boroughs", "provider.services"}},
		{name: "bad lists", cmd: registering(func(d *ProviderDetails) {
			d.ODS, d.Boroughs, d.Services = "VLA-XL", []string{"Bromley", "BROMLEY", ""}, []Service{ServiceCareHomeBed, ServiceCareHomeBed, 99}
		}), wantKind: KindInvalid, wantFields: []string{"provider.ods", "provider.boroughs[0]", "provider.boroughs[2]", "provider.services[1]", "provider.services[2]"}},
		{name: "too many boroughs, long name", cmd: registering(func(d *ProviderDetails) {
			d.Name, d.Boroughs = strings.Repeat("n", 101), make([]string, 21)
		}), wantKind: KindInvalid, wantFields: []string{"provider.name", "provider.boroughs"}},
	}
	runDecide(t, tests, DecideRegisterProvider)
}

func TestDecideUpdateCapacity(t *testing.T) {
	t.Parallel()
	registered := ProviderRegistered{Details: registering(func(*ProviderDetails) {}).Details}
	asOf := now.Add(-time.Hour)
	beds := Capacity{Service: ServiceCareHomeBed, Available: 3, Open: true, AsOf: asOf}
	tests := []decideCase[UpdateCapacity]{
		{name: "recorded, sorted by service, in UTC", given: []Event{registered},
			cmd: UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{
				{Service: ServiceDesignatedStepDownBed, Available: 1, Open: true, AsOf: asOf.In(time.FixedZone("BST", 3600))}, beds}},
			want: CapacityUpdated{Capacity: []Capacity{{Service: ServiceDesignatedStepDownBed, Available: 1, Open: true, AsOf: asOf}, beds}}},
		{name: "closed to admissions", given: []Event{registered},
			cmd:  UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{{Service: ServiceCareHomeBed, AsOf: asOf}}},
			want: CapacityUpdated{Capacity: []Capacity{{Service: ServiceCareHomeBed, AsOf: asOf}}}},
		{name: "an older count is refused", given: []Event{registered, CapacityUpdated{Capacity: []Capacity{beds}}},
			cmd:      UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{{Service: ServiceCareHomeBed, Available: 5, AsOf: asOf.Add(-time.Minute)}}},
			wantKind: KindFailedPrecondition},
		{name: "a service not offered", given: []Event{registered},
			cmd:      UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{{Service: ServiceHospiceBed, Available: 1, AsOf: asOf}}},
			wantKind: KindFailedPrecondition},
		{name: "unknown provider", cmd: UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{beds}}, wantKind: KindNotFound},
		{name: "nothing", cmd: UpdateCapacity{}, wantKind: KindInvalid, wantFields: []string{"provider_ods", "capacity"}},
		{name: "bad counts", given: []Event{registered}, cmd: UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{
			{Service: ServiceCareHomeBed, Available: -1, AsOf: now.Add(time.Hour)},
			{Service: ServiceCareHomeBed, Available: MaxUnits + 1},
			{Available: 1, AsOf: time.Date(2018, 5, 1, 0, 0, 0, 0, time.UTC)},
		}}, wantKind: KindInvalid, wantFields: []string{
			"capacity[0].available_units", "capacity[0].as_of",
			"capacity[1].service", "capacity[1].available_units", "capacity[1].as_of",
			"capacity[2].service", "capacity[2].as_of"}},
	}
	runDecide(t, tests, DecideUpdateCapacity)
}

func TestProviderApply(t *testing.T) {
	t.Parallel()
	d := careHome()
	beds := Capacity{Service: ServiceCareHomeBed, Available: 2, Open: true, AsOf: now}
	var p Provider
	for _, rec := range history(ProviderRegistered{Details: d}, CapacityUpdated{Capacity: []Capacity{beds}}) {
		p.Apply(rec)
	}
	beds.Declared, beds.DeclaredSeq = 2, 2
	if got, _ := p.CapacityFor(ServiceCareHomeBed); got != beds {
		t.Fatalf("care home beds %+v, want %+v", got, beds)
	}
	// Dropping a service drops its count; keeping one keeps it.
	d.Services = []Service{ServiceCareHomeBed, ServiceStepDownBed}
	p.Apply(Record{Sequence: 3, Event: ProviderRegistered{Details: d}})
	if got, _ := p.CapacityFor(ServiceCareHomeBed); got != beds {
		t.Fatalf("kept service lost its count: %+v", got)
	}
	if _, ok := p.CapacityFor(ServiceDesignatedStepDownBed); ok {
		t.Fatal("dropped service still has capacity")
	}
	if got, ok := p.CapacityFor(ServiceStepDownBed); !ok || got.Open || got.Available != 0 {
		t.Fatalf("new service %+v, %v; want closed with no units", got, ok)
	}
	if p.Version != 3 || !p.Details.Serves("BROMLEY") || p.Details.Serves("Lewisham") {
		t.Fatalf("provider %+v", p)
	}
}

// TestVacancies: a provider declares vacancies; available is the declared
// count less the live reservations the count still holds free. A unit is
// never promised twice, whatever the order of declarations, reservations,
// arrivals, releases and retries.
func TestVacancies(t *testing.T) {
	t.Parallel()
	t0 := now.Add(-6 * time.Hour)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		at time.Duration // recorded
		e  Event
	}
	// stated is an event whose client-stated business time differs
	// from when it was recorded.
	type stated struct {
		Event
		at time.Duration
	}
	declare := func(units int32, asOf time.Duration) Event {
		return CapacityUpdated{Capacity: []Capacity{{Service: ServiceCareHomeBed, Available: units, Open: true, AsOf: at(asOf)}}}
	}
	reserve := func(a string) Event {
		return CapacityReserved{Service: ServiceCareHomeBed, AssignmentID: a, Tracked: true}
	}
	occupy := func(a string) Event { return CapacityOccupied{Service: ServiceCareHomeBed, AssignmentID: a} }
	release := func(a string) Event { return CapacityReleased{Service: ServiceCareHomeBed, AssignmentID: a} }
	tests := []struct {
		name                          string
		steps                         []step
		declared, reserved, available int32
	}{
		{"declared, nothing promised", []step{{0, declare(2, 0)}}, 2, 0, 2},
		{"a reservation takes a unit", []step{{0, declare(1, 0)}, {time.Minute, reserve("a1")}}, 1, 1, 0},
		{"the same figure declared again while the patient is on the way", []step{
			{0, declare(1, 0)}, {time.Minute, reserve("a1")}, {time.Hour, declare(1, time.Hour)}}, 1, 1, 0},
		{"a declaration retried", []step{
			{0, declare(1, 0)}, {time.Minute, reserve("a1")}, {2 * time.Minute, declare(1, 0)}}, 1, 1, 0},
		{"a count made before the reservation, recorded after it", []step{
			{0, declare(3, 0)}, {time.Hour, reserve("a1")}, {2 * time.Hour, declare(1, 30*time.Minute)}}, 1, 1, 0},
		{"a released unit is free again", []step{
			{0, declare(1, 0)}, {time.Minute, reserve("a1")}, {time.Hour, release("a1")}}, 1, 0, 1},
		{"the patient arrived; a later count leaves the bed out", []step{
			{0, declare(2, 0)}, {time.Minute, reserve("a1")}, {time.Hour, occupy("a1")}, {2 * time.Hour, declare(1, 2*time.Hour)}}, 1, 0, 1},
		{"the patient arrived; a count from before the arrival still holds the bed", []step{
			{0, declare(2, 0)}, {time.Minute, reserve("a1")}, {time.Hour, occupy("a1")}, {2 * time.Hour, declare(2, 50*time.Minute)}}, 2, 1, 1},
		{"an arrival within the clock skew of a count is still held", []step{
			{0, declare(2, 0)}, {time.Minute, reserve("a1")}, {time.Hour, occupy("a1")}, {2 * time.Hour, declare(1, time.Hour+time.Minute)}}, 1, 1, 0},
		{"arrived, not yet counted again", []step{
			{0, declare(2, 0)}, {time.Minute, reserve("a1")}, {time.Hour, occupy("a1")}}, 2, 1, 1},
		{"more promised than now declared: none available, never negative", []step{
			{0, declare(2, 0)}, {time.Minute, reserve("a1")}, {2 * time.Minute, reserve("a2")}, {time.Hour, declare(1, time.Hour)}}, 1, 2, 0},
		{"a reservation applied twice counts once", []step{
			{0, declare(2, 0)}, {time.Minute, reserve("a1")}, {time.Minute, reserve("a1")}}, 2, 1, 1},
		{"care over, not yet counted again: the unit stays taken", []step{
			{0, declare(1, 0)}, {time.Minute, reserve("a1")}, {time.Hour, occupy("a1")}, {2 * time.Hour, declare(1, 50*time.Minute)}}, 1, 1, 0},
		{"an arrival stated as earlier than recorded counts from when it was recorded", []step{
			{0, declare(2, 0)}, {time.Minute, reserve("a1")}, {3 * time.Hour, stated{occupy("a1"), 30 * time.Minute}},
			{4 * time.Hour, declare(2, 2*time.Hour)}}, 2, 1, 1},
		{"a count stated ahead of the SPA's clock does not leave out a later arrival", []step{
			{0, declare(1, 0)}, {time.Minute, reserve("a1")}, {time.Hour, declare(1, 3*time.Hour)},
			{2 * time.Hour, occupy("a1")}, {2*time.Hour + time.Minute, declare(1, 3*time.Hour)}}, 1, 1, 0},
		{"an as-of further ahead of the SPA's clock than the skew leaves nothing out", []step{
			{0, declare(1, 0)}, {time.Minute, reserve("a1")}, {time.Hour, occupy("a1")},
			{time.Hour + time.Minute, declare(1, 5*time.Hour)}}, 1, 1, 0},
		{"an earlier version's reservation holds its unit until the next count", []step{
			{0, declare(1, 0)}, {time.Minute, CapacityReserved{Service: ServiceCareHomeBed, AssignmentID: "old"}}}, 1, 1, 0},
		{"an earlier version's reservation ends at the next count, as it did then", []step{
			{0, declare(1, 0)}, {time.Minute, CapacityReserved{Service: ServiceCareHomeBed, AssignmentID: "old"}}, {time.Hour, declare(1, time.Hour)}}, 1, 0, 1},
		{"a release of a unit a count already left out frees nothing", []step{
			{0, declare(2, 0)}, {time.Minute, reserve("a1")}, {time.Hour, occupy("a1")}, {2 * time.Hour, declare(1, 2*time.Hour)},
			{3 * time.Hour, release("a1")}}, 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var p Provider
			p.Apply(Record{Sequence: 1, OccurredAt: t0, Event: ProviderRegistered{Details: careHome()}})
			for i, s := range tt.steps {
				e, occurred := s.e, at(s.at)
				if st, ok := e.(stated); ok {
					e, occurred = st.Event, at(st.at)
				}
				p.Apply(Record{Sequence: uint64(i + 2), OccurredAt: occurred, RecordedAt: at(s.at), Event: e})
			}
			c, _ := p.CapacityFor(ServiceCareHomeBed)
			if c.Declared != tt.declared || c.Reserved != tt.reserved || c.Available != tt.available {
				t.Fatalf("declared %d, reserved %d, available %d; want %d, %d, %d (reservations %+v)",
					c.Declared, c.Reserved, c.Available, tt.declared, tt.reserved, tt.available, p.Reservations)
			}
		})
	}
}

// TestDeclarationRetried: the same counts sent again decide nothing; a
// count that differs in units, open flag or time is a new declaration.
func TestDeclarationRetried(t *testing.T) {
	t.Parallel()
	beds := Capacity{Service: ServiceCareHomeBed, Available: 1, Open: true, AsOf: now.Add(-time.Minute)}
	var p Provider
	for _, rec := range history(ProviderRegistered{Details: careHome()}, CapacityUpdated{Capacity: []Capacity{beds}}, reserveBed("a1")) {
		p.Apply(rec)
	}
	cmd := func(c Capacity) UpdateCapacity { return UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{c}} }
	if e, err := DecideUpdateCapacity(p, cmd(beds), now); e != nil || err != nil {
		t.Fatalf("a retried declaration: %v, %v; want nothing", e, err)
	}
	for _, c := range []Capacity{
		{Service: ServiceCareHomeBed, Available: 2, Open: true, AsOf: beds.AsOf},
		{Service: ServiceCareHomeBed, Available: 1, Open: false, AsOf: beds.AsOf},
		{Service: ServiceCareHomeBed, Available: 1, Open: true, AsOf: now},
	} {
		if e, err := DecideUpdateCapacity(p, cmd(c), now); e == nil || err != nil {
			t.Fatalf("declaration %+v: %v, %v; want an event", c, e, err)
		}
	}
}

func reserveBed(a string) CapacityReserved {
	return CapacityReserved{Service: ServiceCareHomeBed, AssignmentID: a, Tracked: true}
}
