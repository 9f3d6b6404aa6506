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
