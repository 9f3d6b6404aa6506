package codec

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// year10000 is one second past the last instant a Timestamp can hold.
const year10000 = 253402300800

func TestTimeFromProto(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 9, 30, 0, 123, time.UTC)
	tests := []struct {
		name string
		ts   *timestamppb.Timestamp
		want time.Time
	}{
		{"none sent", nil, time.Time{}},
		{"valid", timestamppb.New(at), at},
		{"the first instant", &timestamppb.Timestamp{Seconds: -62135596800}, time.Time{}},
		{"the last instant", &timestamppb.Timestamp{Seconds: year10000 - 1, Nanos: 999999999}, time.Unix(year10000-1, 999999999).UTC()},
		{"nanos too large", &timestamppb.Timestamp{Seconds: at.Unix(), Nanos: 1e9}, spa.InvalidTime()},
		{"negative nanos", &timestamppb.Timestamp{Seconds: at.Unix(), Nanos: -1}, spa.InvalidTime()},
		{"year 10000", &timestamppb.Timestamp{Seconds: year10000}, spa.InvalidTime()},
		{"before year 1", &timestamppb.Timestamp{Seconds: -62135596801}, spa.InvalidTime()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := TimeFromProto(tt.ts); !got.Equal(tt.want) {
				t.Errorf("TimeFromProto(%v) = %v, want %v", tt.ts, got, tt.want)
			}
		})
	}
}

// TestStoredInvalidValuesAreErrors: an envelope holding a timestamp that
// is no instant, or a clock target no time.Duration holds, does not decode.
func TestStoredInvalidValuesAreErrors(t *testing.T) {
	t.Parallel()
	at := timestamppb.New(time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC))
	bad := &timestamppb.Timestamp{Seconds: at.GetSeconds(), Nanos: 1e9}
	valid := func(payload func(*spav1.Envelope)) *spav1.Envelope {
		env := &spav1.Envelope{EventId: "e1", SchemaVersion: SchemaVersion, AggregateId: "ref-7btv6dkkq64y5tep", OccurredAt: at, RecordedAt: at,
			Payload: &spav1.Envelope_PatientLeftHospital{PatientLeftHospital: &spav1.PatientLeftHospital{LeftAt: at}}}
		payload(env)
		return env
	}
	tests := []struct {
		name string
		env  *spav1.Envelope
	}{
		{"occurred at, nanos too large", valid(func(e *spav1.Envelope) { e.OccurredAt = bad })},
		{"recorded in year 10000", valid(func(e *spav1.Envelope) { e.RecordedAt = &timestamppb.Timestamp{Seconds: year10000} })},
		{"patient left, negative nanos", valid(func(e *spav1.Envelope) {
			e.Payload = &spav1.Envelope_PatientLeftHospital{PatientLeftHospital: &spav1.PatientLeftHospital{LeftAt: &timestamppb.Timestamp{Nanos: -1}}}
		})},
		{"a referral's test", valid(func(e *spav1.Envelope) {
			e.Payload = &spav1.Envelope_ReferralSubmitted{ReferralSubmitted: &spav1.ReferralSubmitted{
				Details: &spav1.StoredReferralDetails{InfectionTest: &spav1.StoredInfectionTest{TakenAt: bad}}}}
		})},
		{"a test result", valid(func(e *spav1.Envelope) {
			e.Payload = &spav1.Envelope_InfectionTestRecorded{InfectionTestRecorded: &spav1.InfectionTestRecorded{Test: &spav1.StoredInfectionTest{TakenAt: bad}}}
		})},
		{"the second capacity count", valid(func(e *spav1.Envelope) {
			e.Payload = &spav1.Envelope_CapacityUpdated{CapacityUpdated: &spav1.CapacityUpdated{Counts: []*spav1.CapacityDeclaration{{AsOf: at}, {AsOf: bad}}}}
		})},
		{"a clock's start", valid(func(e *spav1.Envelope) {
			e.Payload = &spav1.Envelope_ClockAlerted{ClockAlerted: &spav1.ClockAlerted{StartedAt: bad}}
		})},
		{"a clock target too long", valid(func(e *spav1.Envelope) {
			e.Payload = &spav1.Envelope_ClockAlerted{ClockAlerted: &spav1.ClockAlerted{StartedAt: at, TargetSeconds: math.MaxInt64}}
		})},
		{"a clock target too negative", valid(func(e *spav1.Envelope) {
			e.Payload = &spav1.Envelope_ClockAlerted{ClockAlerted: &spav1.ClockAlerted{StartedAt: at, TargetSeconds: math.MinInt64 / int64(time.Second) * 2}}
		})},
	}
	if _, err := RecordFromProto(1, valid(func(*spav1.Envelope) {})); err != nil {
		t.Fatalf("the valid envelope: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := deterministic.Marshal(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := UnmarshalRecord(7, data); err == nil {
				t.Fatalf("decoded as %+v", rec)
			}
		})
	}
}

// FuzzUnmarshalRecord decodes arbitrary bytes as a stored event. It must
// never panic; UnmarshalRecord refuses what UnmarshalEnvelope refuses; and
// a record that decodes encodes again, to bytes that decode to the same
// record and encode to themselves.
func FuzzUnmarshalRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, seq uint64, data []byte) {
		_, envErr := UnmarshalEnvelope(data)
		rec, err := UnmarshalRecord(seq, data)
		if envErr != nil && err == nil {
			t.Fatalf("the envelope does not decode (%v), but the record does: %+v", envErr, rec)
		}
		if err != nil {
			return
		}
		again, err := MarshalRecord(rec)
		if err != nil {
			t.Fatalf("decoded %+v, which does not encode: %v", rec, err)
		}
		rec2, err := UnmarshalRecord(seq, again)
		if err != nil {
			t.Fatalf("decoded %+v, encoded it, and that does not decode: %v", rec, err)
		}
		if diff := cmp.Diff(rec, rec2); diff != "" {
			t.Fatalf("decode, encode, decode changed the record (-first +second):\n%s", diff)
		}
		if third, err := MarshalRecord(rec2); err != nil || !bytes.Equal(third, again) {
			t.Fatalf("the encoding is not a fixed point: %v", err)
		}
	})
}
