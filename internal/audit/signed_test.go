package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"spa/internal/codec"
	"spa/internal/signing"
	"spa/internal/spa"
)

func testKey(t *testing.T, name string) *signing.Key {
	t.Helper()
	private, _, err := signing.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := signing.ParseKey(private)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signedChain is chain with every event signed by k.
func signedChain(t *testing.T, k *signing.Key, n int) []spa.StoredEvent {
	t.Helper()
	es := chain(t, n)
	for i := range es {
		sig, err := k.SignEvent(es[i].Subject, es[i].Hash)
		if err != nil {
			t.Fatal(err)
		}
		es[i].Signature = sig
	}
	return es
}

// checkpointOf signs a checkpoint of es up to sequence seq.
func checkpointOf(t *testing.T, k *signing.Key, es []spa.StoredEvent, seq uint64) []byte {
	t.Helper()
	var h signing.LogHash
	for _, e := range es[:seq] {
		own := sha256.Sum256(e.Data)
		h.Add(e.Sequence, e.Subject, own[:])
	}
	note, err := k.SignCheckpoint(signing.Checkpoint{LogHash: h, Signed: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return note
}

func checkSigned(t *testing.T, keys signing.Verifiers, checkpoints [][]byte, es []spa.StoredEvent) (*Break, Report) {
	t.Helper()
	s, err := NewSigned(keys, checkpoints, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if b := s.Check(e); b != nil {
			return b, s.Report()
		}
	}
	return s.Finish(), s.Report()
}

// appendEvent appends an event to es on subject, linked to the last one
// there and with its own hash recorded, as anyone with raw NATS access
// could publish it; sign, if not nil, signs it.
func appendEvent(t *testing.T, es []spa.StoredEvent, id string, sign *signing.Key) []spa.StoredEvent {
	t.Helper()
	subject := "spa.referral." + id
	var prev []byte
	for _, e := range es {
		if e.Subject == subject {
			prev = e.Hash
		}
	}
	rec := spa.Record{EventID: "forged", AggregateID: id, OccurredAt: time.Unix(99, 0), PrevHash: prev,
		Event: spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonNoLongerNeeded, Note: "forged"}}
	data, err := codec.MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	e := spa.StoredEvent{Sequence: uint64(len(es) + 1), Subject: subject, Data: data, Hash: h[:]}
	if sign != nil {
		if e.Signature, err = sign.SignEvent(subject, h[:]); err != nil {
			t.Fatal(err)
		}
	}
	return append(es, e)
}

func TestSigned(t *testing.T) {
	t.Parallel()
	k, attacker := testKey(t, "spa-test"), testKey(t, "spa-attacker")
	keys := k.Verifiers()
	es := signedChain(t, k, 10)
	cps := [][]byte{checkpointOf(t, k, es, 4), checkpointOf(t, k, es, 10)}

	b, r := checkSigned(t, keys, cps, es)
	if b != nil || !r.Authorship || r.Checkpoints != 2 || r.Covered != 10 || r.Events != 10 {
		t.Fatalf("untouched log: %v %+v", b, r)
	}

	tests := []struct {
		name   string
		events func() []spa.StoredEvent
		seq    uint64
		reason string
	}{
		{"a forged event, correctly chained, after the last checkpoint", func() []spa.StoredEvent {
			return appendEvent(t, signedChain(t, k, 10), "ref-aaaaaaaaaaaaaaaa", nil)
		}, 11, "forged"},
		{"a forged event signed with another key", func() []spa.StoredEvent {
			return appendEvent(t, signedChain(t, k, 10), "ref-bbbbbbbbbbbbbbbb", attacker)
		}, 11, "not signed by a key given"},
		{"a signature moved to another event", func() []spa.StoredEvent {
			es := signedChain(t, k, 10)
			es[5].Signature = es[4].Signature
			return es
		}, 6, "does not verify"},
		{"the tail cut off", func() []spa.StoredEvent { return signedChain(t, k, 10)[:7] }, 7, "tail was cut off"},
		{"every event after the first checkpoint cut off", func() []spa.StoredEvent { return signedChain(t, k, 10)[:4] }, 4, "covers up to sequence 10"},
		{"nothing at all", func() []spa.StoredEvent { return nil }, 0, "the log is empty"},
	}
	for _, tt := range tests {
		b, _ := checkSigned(t, keys, cps, tt.events())
		if b == nil || b.Sequence != tt.seq || !strings.Contains(b.Reason, tt.reason) {
			t.Errorf("%s: break %v, want sequence %d (%s)", tt.name, b, tt.seq, tt.reason)
		}
	}

	// A checkpoint signed over another log (the key's holder signed a
	// rewrite): the log differs from it at its sequence.
	other := signedChain(t, k, 10)
	other[2], other[3] = other[3], other[2]
	other[2].Sequence, other[3].Sequence = 3, 4
	b, _ = checkSigned(t, keys, [][]byte{checkpointOf(t, k, other, 4)}, es)
	if b == nil || b.Sequence != 4 || !strings.Contains(b.Reason, "differs from the checkpoint") {
		t.Errorf("a checkpoint of another log: %v", b)
	}

	// Without keys, signatures are not checked and the report says so.
	b, r = checkSigned(t, signing.Verifiers{}, nil, appendEvent(t, signedChain(t, k, 10), "ref-aaaaaaaaaaaaaaaa", nil))
	if b != nil || r.Authorship {
		t.Errorf("integrity only: %v %+v", b, r)
	}
}

func TestSignedCheckpointsRefused(t *testing.T) {
	t.Parallel()
	k, attacker := testKey(t, "spa-test"), testKey(t, "spa-attacker")
	es := signedChain(t, k, 6)
	good := checkpointOf(t, k, es, 6)
	tampered := bytes.Replace(good, []byte("sequence 6"), []byte("sequence 5"), 1)
	var h signing.LogHash
	h.Add(6, "spa.referral.x", []byte("x"))
	conflicting, err := k.SignCheckpoint(signing.Checkpoint{LogHash: h, Signed: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name        string
		keys        signing.Verifiers
		checkpoints [][]byte
		partial     bool
		want        string
		sig         bool
	}{
		{"a checkpoint altered after signing", k.Verifiers(), [][]byte{tampered}, false, "invalid signature", true},
		{"a checkpoint signed by another key", k.Verifiers(), [][]byte{checkpointOf(t, attacker, es, 6)}, false, "signed by spa-attacker", true},
		{"two checkpoints of one sequence that disagree", k.Verifiers(), [][]byte{good, conflicting}, false, "disagree", false},
		{"checkpoints without keys", signing.Verifiers{}, [][]byte{good}, false, "--public-key", false},
		{"checkpoints with a partial export", k.Verifiers(), [][]byte{good}, true, "partial", false},
	} {
		_, err := NewSigned(tt.keys, tt.checkpoints, tt.partial)
		if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, signing.ErrCheckpointSignature) != tt.sig {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
