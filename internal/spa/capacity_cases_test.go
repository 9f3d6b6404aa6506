package spa

import (
	"testing"
	"time"
)

// applyAt applies events to p, each recorded (and occurring) at its time.
func applyAt(p *Provider, steps ...struct {
	at time.Time
	e  Event
}) {
	for _, s := range steps {
		p.Apply(Record{Sequence: p.Version + 1, OccurredAt: s.at, RecordedAt: s.at, Event: s.e})
	}
}

type ev = struct {
	at time.Time
	e  Event
}

func bedCount(units int32, asOf time.Time) Capacity {
	return Capacity{Service: ServiceCareHomeBed, Available: units, Open: true, AsOf: asOf}
}

// TestServiceAddedBackKeepsItsLastCount: a service dropped and added back
// keeps the as-of of its last count, so a late retry of an older count
// (made before a patient took a bed up) is refused, not applied.
func TestServiceAddedBackKeepsItsLastCount(t *testing.T) {
	t.Parallel()
	t0 := now.Add(-3 * time.Hour)
	d := careHome()
	dropped := d
	dropped.Services = []Service{ServiceDesignatedStepDownBed}
	var p Provider
	applyAt(&p,
		ev{t0, ProviderRegistered{Details: d}},
		ev{t0, CapacityUpdated{Capacity: []Capacity{bedCount(1, t0)}}}, // 1 bed free
		ev{t0.Add(time.Minute), reserveBed("a1")},
		ev{t0.Add(time.Hour), CapacityOccupied{Service: ServiceCareHomeBed, AssignmentID: "a1"}},           // a1 in the bed
		ev{t0.Add(2 * time.Hour), CapacityUpdated{Capacity: []Capacity{bedCount(0, t0.Add(2*time.Hour))}}}, // no bed free
		ev{t0.Add(2*time.Hour + time.Minute), ProviderRegistered{Details: dropped}},
		ev{t0.Add(2*time.Hour + 2*time.Minute), ProviderRegistered{Details: d}},
	)
	// A delayed retry of the first count (as of t0: "1 free", true before a1 arrived).
	stale := UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{bedCount(1, t0)}}
	e, err := DecideUpdateCapacity(p, stale, now)
	if err == nil && e != nil {
		p.Apply(Record{Sequence: p.Version + 1, RecordedAt: now, OccurredAt: now, Event: e})
		c, _ := p.CapacityFor(ServiceCareHomeBed)
		t.Fatalf("a count older than the last one was accepted after re-registration: %+v (a1 is in the only bed)", c)
	}
}

// TestEarlierReservationTakenUpIsTracked: a reservation made by a version
// before 0.3 whose taking up this version records is tracked from then
// on: a count made before the arrival does not drop it.
func TestEarlierReservationTakenUpIsTracked(t *testing.T) {
	t.Parallel()
	t0 := now.Add(-3 * time.Hour)
	var p Provider
	applyAt(&p,
		ev{t0, ProviderRegistered{Details: careHome()}},
		ev{t0, CapacityUpdated{Capacity: []Capacity{bedCount(1, t0)}}},
		ev{t0.Add(time.Minute), CapacityReserved{Service: ServiceCareHomeBed, AssignmentID: "old"}},
		ev{t0.Add(time.Hour), CapacityOccupied{Service: ServiceCareHomeBed, AssignmentID: "old"}},
		// counted (bed empty) 10 minutes before the arrival, recorded after it
		ev{t0.Add(time.Hour + time.Minute), CapacityUpdated{Capacity: []Capacity{bedCount(1, t0.Add(50*time.Minute))}}},
	)
	if c, _ := p.CapacityFor(ServiceCareHomeBed); c.Available != 0 {
		t.Fatalf("count from before the arrival freed the legacy patient's bed: %+v", c)
	}
}

// TestUnchangedCountNotAppliedAgain: a count sent again unchanged with
// another service's new count is not in the event, so it is not applied
// again at the later recorded time (where a count not trusted when it was
// recorded would now leave out a patient who arrived after it).
func TestUnchangedCountNotAppliedAgain(t *testing.T) {
	t.Parallel()
	r1 := now.Add(-6 * time.Minute)
	asOf := r1.Add(10 * time.Minute) // occurred_at r1+5m, as_of occurred_at+5m: both accepted
	var p Provider
	applyAt(&p,
		ev{r1.Add(-time.Hour), ProviderRegistered{Details: careHome()}},
		ev{r1.Add(-time.Hour), CapacityUpdated{Capacity: []Capacity{bedCount(1, r1.Add(-time.Hour))}}},
		ev{r1.Add(-30 * time.Minute), reserveBed("a1")},
	)
	first := UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{bedCount(1, asOf)}}
	e, err := DecideUpdateCapacity(p, first, r1.Add(5*time.Minute)) // business time = occurred_at
	if err != nil || e == nil {
		t.Fatalf("first count: %v %v", e, err)
	}
	p.Apply(Record{Sequence: p.Version + 1, OccurredAt: r1.Add(5 * time.Minute), RecordedAt: r1, Event: e})
	// a1 arrives after that count was recorded.
	p.Apply(Record{Sequence: p.Version + 1, RecordedAt: r1.Add(time.Minute), Event: CapacityOccupied{Service: ServiceCareHomeBed, AssignmentID: "a1"}})
	// Later: the step-down beds are declared, the care-home count sent again as it was.
	second := UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{
		bedCount(1, asOf), {Service: ServiceDesignatedStepDownBed, Available: 2, Open: true, AsOf: now}}}
	e, err = DecideUpdateCapacity(p, second, now)
	if err != nil || e == nil {
		t.Fatalf("second count: %v %v", e, err)
	}
	p.Apply(Record{Sequence: p.Version + 1, OccurredAt: now, RecordedAt: now, Event: e})
	if c, _ := p.CapacityFor(ServiceCareHomeBed); c.Available != 0 {
		t.Fatalf("a count recorded before a1 arrived now leaves a1's bed out: %+v, reservations %+v", c, p.Reservations)
	}
}

// TestBedHeldForPatientOnHoldInCare: a patient in care goes on hold
// (readmitted) and the bed is held for them: the home counting the empty
// bed free does not free it, and it is taken up again when they return.
func TestBedHeldForPatientOnHoldInCare(t *testing.T) {
	t.Parallel()
	t0 := now.Add(-5 * time.Hour)
	r := Referral{ID: "ref-aaaaaaaaaaaaaaaa", Assignments: []Assignment{{ID: "ref-aaaaaaaaaaaaaaaa-a1", ProviderODS: "VLAXL",
		Service: ServiceCareHomeBed, Status: TaskAccepted}}}
	var p Provider
	applyAt(&p,
		ev{t0, ProviderRegistered{Details: careHome()}},
		ev{t0, CapacityUpdated{Capacity: []Capacity{bedCount(1, t0)}}},
		ev{t0.Add(time.Minute), reserveBed("ref-aaaaaaaaaaaaaaaa-a1")},
	)
	move := func(at time.Time, to TaskStatus) {
		ch, err := DecideTransition(r, TransitionAssignment{AssignmentID: "ref-aaaaaaaaaaaaaaaa-a1", To: to, Reason: "x"}, at)
		if err != nil {
			t.Fatalf("%s: %v", to, err)
		}
		r.Apply(Record{Sequence: uint64(len(r.Assignments) + 10), OccurredAt: at, RecordedAt: at, AggregateID: r.ID, Event: ch.Event})
		if ch.Provider != nil {
			applyAt(&p, ev{at, ch.Provider})
		}
	}
	r.Details = validDetails()
	move(t0.Add(time.Hour), TaskInProgress)
	move(t0.Add(2*time.Hour), TaskOnHold)                                                                           // readmitted to hospital, bed held
	applyAt(&p, ev{t0.Add(3 * time.Hour), CapacityUpdated{Capacity: []Capacity{bedCount(1, t0.Add(3*time.Hour))}}}) // held bed is empty
	move(t0.Add(4*time.Hour), TaskInProgress)                                                                       // back in the bed
	if c, _ := p.CapacityFor(ServiceCareHomeBed); c.Available != 0 {
		t.Fatalf("the bed of a patient in care (held, then back) is offered: %+v", c)
	}
}
