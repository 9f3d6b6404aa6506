package audit

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"spa/internal/codec"
	"spa/internal/spa"
)

// chain builds n events alternating between two subjects, linked as the
// event store links them.
func chain(t *testing.T, n int) []spa.StoredEvent {
	t.Helper()
	var out []spa.StoredEvent
	last := map[string][]byte{}
	for i := range n {
		id := []string{"ref-aaaaaaaaaaaaaaaa", "ref-bbbbbbbbbbbbbbbb"}[i%2]
		rec := spa.Record{EventID: string(rune('a' + i)), AggregateID: id, OccurredAt: time.Unix(int64(i), 0), PrevHash: last[id],
			Event: spa.InfectionTestRecorded{Test: spa.InfectionTest{Type: spa.TestTypePCR, TakenAt: time.Unix(int64(i), 0), Result: spa.TestResultNegative}}}
		data, err := codec.MarshalRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(data)
		last[id] = h[:]
		out = append(out, spa.StoredEvent{Sequence: uint64(i + 1), Subject: "spa.referral." + id, Data: data, Hash: h[:]})
	}
	return out
}

func check(events []spa.StoredEvent) *Break {
	var c Chains
	for _, e := range events {
		if b := c.Check(e); b != nil {
			return b
		}
	}
	return nil
}

func TestChains(t *testing.T) {
	t.Parallel()
	if b := check(chain(t, 10)); b != nil {
		t.Fatalf("clean log: %v", b)
	}
	tests := []struct {
		name   string
		alter  func(es []spa.StoredEvent)
		seq    uint64
		reason string
	}{
		{"one byte of an event", func(es []spa.StoredEvent) { es[4].Data[len(es[4].Data)-3] ^= 1 }, 5, "do not match the hash"},
		{"an event and its recorded hash", func(es []spa.StoredEvent) {
			es[4].Data[len(es[4].Data)-3] ^= 1
			h := sha256.Sum256(es[4].Data)
			es[4].Hash = h[:]
		}, 7, "previous event on its subject (sequence 5)"},
		{"an event removed", func(es []spa.StoredEvent) { es[6] = es[5]; es[6].Sequence = 7 }, 7, "previous event"},
		{"the last event of a subject", func(es []spa.StoredEvent) { es[9].Data[2] ^= 0x40 }, 10, "do not match the hash"},
		{"an event's recorded hash", func(es []spa.StoredEvent) { es[3].Hash = nil }, 4, "no recorded hash"},
		{"an event taken out, the chains still linked", func(es []spa.StoredEvent) {
			// Sequence 9 is the last of its subject: only the sequence
			// shows it is gone.
			es[8] = es[9]
		}, 10, "sequence 9 is missing"},
		{"an event repeated", func(es []spa.StoredEvent) { es[5] = es[4] }, 5, "appears twice"},
		{"the log's first events", func(es []spa.StoredEvent) { es[0].Sequence, es[1].Sequence = 3, 4 }, 3, "sequences 1-2 are missing"},
	}
	for _, tt := range tests {
		es := chain(t, 10)
		tt.alter(es)
		b := check(es)
		if b == nil || b.Sequence != tt.seq || !strings.Contains(b.Reason, tt.reason) {
			t.Errorf("%s: break %v, want sequence %d (%s)", tt.name, b, tt.seq, tt.reason)
		}
	}
}

// TestPartialExport: a filtered export (one referral's events) verifies
// with Partial, its chains checked; as a whole log it misses sequences.
func TestPartialExport(t *testing.T) {
	t.Parallel()
	var one []spa.StoredEvent
	for _, e := range chain(t, 10) {
		if strings.HasSuffix(e.Subject, "bbbbbbbbbbbbbbbb") {
			one = append(one, e)
		}
	}
	if b := check(one); b == nil || !strings.Contains(b.Reason, "sequence 1 is missing") {
		t.Fatalf("as a whole log: %v", b)
	}
	partial := Chains{Partial: true}
	for _, e := range one {
		if b := partial.Check(e); b != nil {
			t.Fatalf("partial: %v", b)
		}
	}
	one[2].Data[len(one[2].Data)-3] ^= 1
	partial = Chains{Partial: true}
	var broke *Break
	for _, e := range one {
		if broke = partial.Check(e); broke != nil {
			break
		}
	}
	if broke == nil || broke.Sequence != 6 {
		t.Fatalf("partial, an altered byte: %v", broke)
	}
}
