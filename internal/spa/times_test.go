package spa

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// violationsOf returns err's violations as "field: description" lines.
func violationsOf(err error) []string {
	var de *Error
	if !errors.As(err, &de) {
		return nil
	}
	out := make([]string, len(de.Violations))
	for i, v := range de.Violations {
		out[i] = v.Field + ": " + v.Description
	}
	return out
}

func TestTimesThatAreNoInstantsAreViolations(t *testing.T) {
	t.Parallel()
	ready := Replay(history(submittedEvent("2026-11-20")))
	var provider Provider
	provider.Apply(Record{Sequence: 1, AggregateID: "VLAXL", Event: ProviderRegistered{Details: careHome()}})
	const invalid = "must be a valid timestamp (years 1-9999, nanos 0-999999999)"
	bad := map[string]time.Time{
		"not an instant":  InvalidTime(),
		"after year 9999": time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		"before year 1":   time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for name, at := range bad {
		tests := []struct {
			name   string
			decide func() error
			want   []string
		}{
			{"test taken", func() error {
				_, err := DecideRecordTest(ready, RecordInfectionTest{ReferralID: referralID, Test: InfectionTest{Type: TestTypePCR, TakenAt: at, Result: TestResultNegative}}, now)
				return err
			}, []string{"test.taken_at: " + invalid}},
			{"test taken, in a submission", func() error {
				c := submitting(func(c *SubmitReferral) {
					c.Details.InfectionTest = &InfectionTest{Type: TestTypePCR, TakenAt: at, Result: TestResultNegative}
				})
				_, err := DecideSubmit(Referral{}, c, now)
				return err
			}, []string{"referral.infection_test.taken_at: " + invalid}},
			{"capacity counted", func() error {
				_, err := DecideUpdateCapacity(provider, UpdateCapacity{ProviderODS: "VLAXL", Capacity: []Capacity{
					{Service: ServiceCareHomeBed, AsOf: now}, {Service: ServiceDesignatedStepDownBed, AsOf: at}}}, now)
				return err
			}, []string{"capacity[1].as_of: " + invalid}},
			{"patient left", func() error {
				_, err := DecidePatientLeft(ready, RecordPatientLeft{ReferralID: referralID, LeftAt: at}, now)
				return err
			}, []string{"left_at: " + invalid}},
			{"replay time range", func() error {
				return EventFilter{FromTime: at, ToTime: at}.Validate()
			}, []string{"from_time: " + invalid, "to_time: " + invalid}},
			{"business time", func() error {
				_, err := BusinessTime(at, now)
				return err
			}, []string{"occurred_at: " + invalid}},
		}
		for _, tt := range tests {
			t.Run(name+", "+tt.name, func(t *testing.T) {
				t.Parallel()
				err := tt.decide()
				if KindOf(err) != KindInvalid {
					t.Fatalf("error = %v, want KindInvalid", err)
				}
				if diff := cmp.Diff(tt.want, violationsOf(err)); diff != "" {
					t.Fatalf("violations (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestBusinessTime(t *testing.T) {
	t.Parallel()
	earlier := time.Date(2026, 11, 20, 9, 0, 0, 0, time.FixedZone("BST", 3600))
	tests := []struct {
		name     string
		occurred time.Time
		want     time.Time
		wantErr  []string
	}{
		{"none stated: now", time.Time{}, now, nil},
		{"earlier, in UTC", earlier, earlier.UTC(), nil},
		{"a clock a little fast", now.Add(time.Minute), now.Add(time.Minute), nil},
		{"future", now.Add(time.Hour), now, []string{"occurred_at: must not be in the future"}},
		{"before 2019", time.Date(2018, 12, 31, 0, 0, 0, 0, time.UTC), now, []string{"occurred_at: must not be before 2019"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := BusinessTime(tt.occurred, now)
			if !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Errorf("time = %v, want %v in UTC", got, tt.want)
			}
			if diff := cmp.Diff(tt.wantErr, violationsOf(err)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJoinInvalid(t *testing.T) {
	t.Parallel()
	invalid := func(fields ...string) error {
		var vs violations
		for _, f := range fields {
			vs.add(f, "is bad")
		}
		return vs.err()
	}
	notFound := Errorf(KindNotFound, "referral not found")
	tests := []struct {
		name       string
		errs       []error
		wantKind   Kind
		wantFields []string
		wantNil    bool
	}{
		{name: "nothing wrong", errs: []error{nil, nil}, wantNil: true},
		{name: "another kind alone", errs: []error{notFound, nil}, wantKind: KindNotFound},
		{name: "invalid input comes first", errs: []error{notFound, invalid("occurred_at")}, wantKind: KindInvalid, wantFields: []string{"occurred_at"}},
		{name: "every bad field, in order", errs: []error{invalid("referral_id", "test.type"), nil, invalid("occurred_at")},
			wantKind: KindInvalid, wantFields: []string{"referral_id", "test.type", "occurred_at"}},
		{name: "wrapped", errs: []error{fmt.Errorf("deciding: %w", invalid("a")), invalid("b")}, wantKind: KindInvalid, wantFields: []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := JoinInvalid(tt.errs...)
			if tt.wantNil {
				if err != nil {
					t.Fatalf("error = %v, want nil", err)
				}
				return
			}
			if KindOf(err) != tt.wantKind {
				t.Fatalf("error = %v, want kind %d", err, tt.wantKind)
			}
			var fields []string
			for _, v := range violationsOf(err) {
				fields = append(fields, strings.SplitN(v, ":", 2)[0])
			}
			if diff := cmp.Diff(tt.wantFields, fields); diff != "" {
				t.Errorf("violated fields (-want +got):\n%s", diff)
			}
		})
	}
}

// TestListMaxima checks each list a client sends at its documented
// maximum (no violation of the list itself) and one past it (one
// violation naming the list, and none of its items).
func TestListMaxima(t *testing.T) {
	t.Parallel()
	ready := Replay(history(submittedEvent("2026-11-20")))
	var provider Provider
	provider.Apply(Record{Sequence: 1, AggregateID: "VLAXL", Event: ProviderRegistered{Details: careHome()}})
	tests := []struct {
		field string
		max   int
		check func(n int) error
	}{
		{"referral.needs.equipment", MaxEquipment, func(n int) error {
			c := submitting(func(c *SubmitReferral) {
				c.Details.Needs.Equipment = nil
				for i := range n {
					c.Details.Needs.Equipment = append(c.Details.Needs.Equipment, fmt.Sprint("item ", i))
				}
			})
			_, err := DecideSubmit(Referral{}, c, now)
			return err
		}},
		{"criteria_met", MaxCriteria, func(n int) error {
			c := RecordCriteriaToReside{ReferralID: referralID, AssessedOn: "2026-11-22"}
			for i := range n {
				c.CriteriaMet = append(c.CriteriaMet, Criterion(i%MaxCriteria+1))
			}
			_, err := DecideRecordCriteria(ready, c, now)
			return err
		}},
		{"provider.boroughs", MaxBoroughs, func(n int) error {
			c := registering(func(d *ProviderDetails) {
				d.Boroughs = nil
				for i := range n {
					d.Boroughs = append(d.Boroughs, fmt.Sprint("Borough ", i))
				}
			})
			_, err := DecideRegisterProvider(Provider{}, c, now)
			return err
		}},
		{"provider.services", MaxServices, func(n int) error {
			c := registering(func(d *ProviderDetails) {
				d.Services = nil
				for i := range n {
					d.Services = append(d.Services, Service(i%MaxServices+1))
				}
			})
			_, err := DecideRegisterProvider(Provider{}, c, now)
			return err
		}},
		{"capacity", MaxCapacityEntries, func(n int) error {
			c := UpdateCapacity{ProviderODS: "VLAXL"}
			for i := range n {
				c.Capacity = append(c.Capacity, Capacity{Service: Service(i%MaxServices + 1), AsOf: now})
			}
			_, err := DecideUpdateCapacity(provider, c, now)
			return err
		}},
		{"event_types", MaxEventTypes, func(n int) error {
			var f EventFilter
			for i := range n {
				f.Types = append(f.Types, []string{"ReferralSubmitted", "OfferMade"}[i%2])
			}
			return f.Validate()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			t.Parallel()
			for _, v := range violationsOf(tt.check(tt.max)) {
				if strings.HasPrefix(v, tt.field+":") || strings.HasPrefix(v, tt.field+"[") {
					t.Errorf("%d items: %s", tt.max, v)
				}
			}
			var listed []string
			for _, v := range violationsOf(tt.check(tt.max + 1)) {
				if strings.HasPrefix(v, tt.field) {
					listed = append(listed, strings.SplitN(v, ":", 2)[0])
				}
			}
			if diff := cmp.Diff([]string{tt.field}, listed); diff != "" {
				t.Errorf("%d items: violations of the list (-want +got):\n%s", tt.max+1, diff)
			}
		})
	}
	if len(eventTypes) > MaxEventTypes {
		t.Errorf("MaxEventTypes is %d, but there are %d event types: a filter naming every type is refused", MaxEventTypes, len(eventTypes))
	}
}
