package signing

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newKey(t *testing.T, name string) *Key {
	t.Helper()
	private, _, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey(private)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEventSignatures(t *testing.T) {
	t.Parallel()
	k, other := newKey(t, "spa-a"), newKey(t, "spa-b")
	both, err := ParseVerifiers(k.PublicKey(), other.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("event bytes"))
	sig, err := k.SignEvent("spa.referral.ref-a", h[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := both.VerifyEvent("spa.referral.ref-a", h[:], sig); err != nil {
		t.Fatalf("a signed event: %v", err)
	}
	h2 := sha256.Sum256([]byte("other bytes"))
	mangled := []byte(sig)
	mangled[len(mangled)-5] ^= 0x01
	for _, tt := range []struct {
		name    string
		subject string
		hash    []byte
		sig     string
		keys    Verifiers
		want    error
	}{
		{"no signature", "spa.referral.ref-a", h[:], "", both, ErrUnsigned},
		{"other bytes", "spa.referral.ref-a", h2[:], sig, both, ErrForged},
		{"another subject", "spa.referral.ref-b", h[:], sig, both, ErrForged},
		{"a mangled signature", "spa.referral.ref-a", h[:], string(mangled), both, ErrForged},
		{"garbage", "spa.referral.ref-a", h[:], "spa-a !!!", both, ErrForged},
		{"a key not given", "spa.referral.ref-a", h[:], sig, other.Verifiers(), ErrUnknownKey},
		{"no keys", "spa.referral.ref-a", h[:], sig, Verifiers{}, ErrUnknownKey},
	} {
		if err := tt.keys.VerifyEvent(tt.subject, tt.hash, tt.sig); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestCheckpoints(t *testing.T) {
	t.Parallel()
	k, other := newKey(t, "spa-a"), newKey(t, "spa-b")
	var lh LogHash
	lh.Add(1, "spa.referral.ref-a", []byte("h1"))
	lh.Add(2, "spa.provider.P1", []byte("h2"))
	c := Checkpoint{LogHash: lh, Signed: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	msg, err := k.SignCheckpoint(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenCheckpoint(msg, k.Verifiers())
	if err != nil || got != c {
		t.Fatalf("open: %+v %v, want %+v", got, err, c)
	}
	if _, err := OpenCheckpoint(msg, other.Verifiers()); !errors.Is(err, ErrCheckpointSignature) || !strings.Contains(err.Error(), "signed by spa-a+") {
		t.Errorf("another key: %v", err)
	}
	altered := bytes.Replace(msg, []byte("sequence 2"), []byte("sequence 3"), 1)
	if _, err := OpenCheckpoint(altered, k.Verifiers()); !errors.Is(err, ErrCheckpointSignature) {
		t.Errorf("altered text: %v", err)
	}
	if _, err := OpenCheckpoint([]byte("sequence 2\n"), k.Verifiers()); err == nil || errors.Is(err, ErrCheckpointSignature) {
		t.Errorf("not a note: %v", err)
	}

	// The same events give the same hash; one moved, missing or changed
	// does not.
	same := LogHash{}
	same.Add(1, "spa.referral.ref-a", []byte("h1"))
	same.Add(2, "spa.provider.P1", []byte("h2"))
	if same != lh {
		t.Fatal("same events, different hash")
	}
	for _, events := range [][]struct {
		seq  uint64
		subj string
	}{
		{{1, "spa.provider.P1"}, {2, "spa.referral.ref-a"}},
		{{2, "spa.provider.P1"}},
		{{1, "spa.referral.ref-a"}, {3, "spa.provider.P1"}},
	} {
		var h LogHash
		for _, e := range events {
			h.Add(e.seq, e.subj, []byte("h"+string(rune('0'+e.seq))))
		}
		if h.Sum == lh.Sum {
			t.Errorf("%v: same hash as the log", events)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, created, err := LoadOrCreate(dir, "spa-test")
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	again, created, err := LoadOrCreate(dir, "spa-test")
	if err != nil || created || again.PublicKey() != k.PublicKey() {
		t.Fatalf("load: %v %v", created, err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, PublicKeyFile))
	if err != nil || strings.TrimSpace(string(pub)) != k.PublicKey() {
		t.Fatalf("public key file %q (%v), key %q", pub, err, k.PublicKey())
	}
	if _, err := WriteKeyPair(dir, "spa-test"); err == nil {
		t.Error("a key overwritten")
	}
	if err := os.Chmod(filepath.Join(dir, KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(filepath.Join(dir, KeyFile)); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("a key others may read: %v", err)
	}
	for _, bad := range []string{"", "PRIVATE+KEY+x+00000000+AAAA", k.PublicKey()} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	if _, err := ParseVerifiers("not-a-key"); err == nil {
		t.Error("ParseVerifiers accepted a bad key")
	}
	if _, _, err := GenerateKey("has space"); err == nil {
		t.Error("a name with a space accepted")
	}
}

// BenchmarkSignEvent is the cost signing adds to every append.
func BenchmarkSignEvent(b *testing.B) {
	k := benchKey(b)
	h := sha256.Sum256([]byte("event bytes"))
	for b.Loop() {
		if _, err := k.SignEvent("spa.referral.ref-aaaaaaaaaaaaaaaa", h[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyEvent is the cost per event of a checkpoint and of
// verify.
func BenchmarkVerifyEvent(b *testing.B) {
	k := benchKey(b)
	h := sha256.Sum256([]byte("event bytes"))
	sig, err := k.SignEvent("spa.referral.ref-aaaaaaaaaaaaaaaa", h[:])
	if err != nil {
		b.Fatal(err)
	}
	v := k.Verifiers()
	for b.Loop() {
		if err := v.VerifyEvent("spa.referral.ref-aaaaaaaaaaaaaaaa", h[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// benchKey is a new key for a benchmark.
func benchKey(b *testing.B) *Key {
	b.Helper()
	private, _, err := GenerateKey("spa-bench")
	if err != nil {
		b.Fatal(err)
	}
	k, err := ParseKey(private)
	if err != nil {
		b.Fatal(err)
	}
	return k
}
