package spa

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// shape describes a type as JSON stores it: its fields' names and types,
// nested.
func shape(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeFor[time.Time]() {
			return "time"
		}
		var fs []string
		for f := range t.Fields() {
			fs = append(fs, f.Name+" "+string(f.Tag)+" "+shape(f.Type))
		}
		return "{" + strings.Join(fs, "; ") + "}"
	case reflect.Slice:
		return "[]" + shape(t.Elem())
	case reflect.Map:
		return "map[" + shape(t.Key()) + "]" + shape(t.Elem())
	}
	return t.Kind().String()
}

// TestProviderStateVersion: snapshots hold a Provider as JSON under
// ProviderStateVersion (ADR 32). When Provider changes shape, a snapshot
// of the old shape would decode as a wrong state: change the version
// (and then this test's shape). Change it too when Provider.Apply's rules
// change, which no test can see.
func TestProviderStateVersion(t *testing.T) {
	const version = "provider-1"
	const want = "{Details  {ODS  string; Name  string; Boroughs  []string; Services  []int32; TrustedAssessor  bool; AcceptsInfectionPositive  bool}; " +
		"Capacity  []{Service  int32; Available  int32; Declared  int32; Reserved  int32; Open  bool; AsOf  time; DeclaredSeq  uint64}; " +
		"Reservations  []{Service  int32; AssignmentID  string; OccupiedAt  time; Untracked  bool}; " +
		"Counted json:\",omitempty\" map[int32]time; Version  uint64}"
	if got := shape(reflect.TypeFor[Provider]()); got != want || ProviderStateVersion != version {
		t.Fatalf("Provider's shape or ProviderStateVersion changed: change the version, then this test (-want +got):\n%s", cmp.Diff(want, got))
	}
}

// TestProviderStateRoundTrip: a provider's state read back from its JSON
// is the state (times in UTC, as Apply makes them).
func TestProviderStateRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	var p Provider
	for i, e := range []Event{
		ProviderRegistered{Details: careHome()},
		CapacityUpdated{Capacity: []Capacity{{Service: ServiceCareHomeBed, Available: 3, Open: true, AsOf: at}}},
		CapacityReserved{Service: ServiceCareHomeBed, AssignmentID: "a1", Tracked: true},
		CapacityReserved{Service: ServiceCareHomeBed, AssignmentID: "a2", Tracked: true},
		CapacityOccupied{Service: ServiceCareHomeBed, AssignmentID: "a1"},
		CapacityReserved{Service: ServiceDesignatedStepDownBed, AssignmentID: "a3"},
	} {
		p.Apply(Record{Sequence: uint64(10 + i), RecordedAt: at.Add(time.Duration(i) * time.Minute), Event: e})
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Provider
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, back); diff != "" {
		t.Fatalf("state (-folded +read back):\n%s", diff)
	}
}
