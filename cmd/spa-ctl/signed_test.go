package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/signing"
	"spa/internal/spa"
)

// TestSignedAudit: the attack of issue 9 and what defeats it. An
// untouched log and its export verify against the server's public key
// and its checkpoints; an export with its tail cut off, a checkpoint
// altered after signing, and an event forged with a correct hash-chain
// link by someone with raw NATS access but not the key are each reported.
func TestSignedAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs spa-server")
	}
	t.Parallel()
	dataDir := t.TempDir()
	addr, natsURL, adminNkey := startServerIn(t, dataDir)
	auditorNkey := filepath.Join(dataDir, "nats", "auditor.nk")
	pub := filepath.Join(dataDir, signing.PublicKeyFile)
	if _, _, err := run(t, addr, "demo"); err != nil {
		t.Fatalf("demo: %v", err)
	}

	out, _, err := run(t, addr, "checkpoint", "--nats-url", natsURL, "--nats-nkey", adminNkey)
	m := regexp.MustCompile(`sequence (\d+)\n`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("checkpoint: %v\n%s", err, out)
	}
	covered, _ := strconv.Atoi(m[1])

	// The live log, against the live checkpoints.
	out, _, err = run(t, addr, "--as", "SPA/auditor", "verify", "--public-key", pub, "--nats-url", natsURL, "--nats-nkey", auditorNkey)
	if err != nil || !strings.Contains(out, "every event signed by a key given") || !strings.Contains(out, "signed checkpoints") {
		t.Fatalf("verify the live log: %v\n%s", err, out)
	}
	// Without a key, verify says what it did not check.
	if out, _, err := run(t, addr, "--as", "SPA/auditor", "verify"); err != nil || !strings.Contains(out, "authorship NOT checked") {
		t.Fatalf("verify without a key: %v\n%s", err, out)
	}

	// An auditor's copies: the checkpoints and an export.
	dir := t.TempDir()
	cps := filepath.Join(dir, "checkpoints.jsonl")
	if out, _, err := run(t, addr, "checkpoints", "--nats-url", natsURL, "--nats-nkey", auditorNkey, "--out", cps); err != nil || !strings.Contains(out, "new, added to") {
		t.Fatalf("checkpoints: %v\n%s", err, out)
	}
	dump, _, err := run(t, addr, "--as", "SPA/auditor", "replay", "--data")
	if err != nil {
		t.Fatal(err)
	}
	export := write(t, dir, "export.jsonl", dump)
	if out, _, err := run(t, addr, "--as", "SPA/auditor", "verify", "--public-key", pub, "--checkpoints", cps, "--file", export); err != nil || !strings.Contains(out, "every event signed") {
		t.Fatalf("verify the export: %v\n%s", err, out)
	}

	// The export with its tail cut off, before the checkpoint's sequence.
	lines := strings.SplitAfter(strings.TrimSpace(dump), "\n")
	cut := write(t, dir, "cut.jsonl", strings.Join(lines[:covered-3], ""))
	_, _, err = run(t, addr, "--as", "SPA/auditor", "verify", "--public-key", pub, "--checkpoints", cps, "--file", cut)
	if err == nil || !strings.Contains(err.Error(), "tail was cut off") || !strings.Contains(err.Error(), fmt.Sprintf("covers up to sequence %d", covered)) {
		t.Fatalf("verify a cut export: %v, want its cut tail reported", err)
	}
	// Without checkpoints the cut cannot show, and verify says so.
	if out, _, err := run(t, addr, "--as", "SPA/auditor", "verify", "--public-key", pub, "--file", cut); err != nil || !strings.Contains(out, "no checkpoint given") {
		t.Fatalf("verify a cut export without checkpoints: %v\n%s", err, out)
	}

	// A checkpoint altered after it was signed.
	kept, err := os.ReadFile(cps)
	if err != nil {
		t.Fatal(err)
	}
	altered := write(t, dir, "altered.jsonl", strings.Replace(string(kept), fmt.Sprintf("sequence %d", covered), fmt.Sprintf("sequence %d", covered-1), 1))
	_, _, err = run(t, addr, "--as", "SPA/auditor", "verify", "--public-key", pub, "--checkpoints", altered, "--file", export)
	if err == nil || !strings.Contains(err.Error(), "no valid signature") {
		t.Fatalf("verify with an altered checkpoint: %v", err)
	}

	// A forged withdrawal, correctly hash-chained, published by an insider
	// with the API server's NATS credentials (the bus lets it append:
	// ADR 27) but not the signing key: SPA's own store code, unsigned.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	creds, err := natsauth.Client{Identity: natsauth.Server, NkeyFile: filepath.Join(dataDir, "nats", "server.nk")}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := jetstream.DialNow(natsURL, "forger", creds...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	forger, err := jetstream.Open(ctx, nc, jetstream.Requirements{})
	if err != nil {
		t.Fatal(err)
	}
	victim := regexp.MustCompile(`ref-[a-z2-7]{16}`).FindString(dump)
	var seq uint64
	for seq == 0 { // the router may append to the referral meanwhile
		_, last, err := forger.Load(ctx, spa.AggregateReferral, victim)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		seq, err = forger.Append(ctx, spa.Record{EventID: fmt.Sprintf("forged-withdrawal-%d", last), AggregateID: victim, OccurredAt: now, RecordedAt: now,
			Actor: spa.Actor{ODS: "RJZ30", Role: "discharge-coordinator"},
			Event: spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonNoLongerNeeded, Note: "forged"}}, last)
		if err != nil && !errors.Is(err, spa.ErrConcurrentChange) {
			t.Fatal(err)
		}
	}
	// Integrity alone does not catch it; authorship does.
	if out, _, err := run(t, addr, "--as", "SPA/auditor", "verify"); err != nil {
		t.Fatalf("verify without a key: %v\n%s", err, out)
	}
	_, _, err = run(t, addr, "--as", "SPA/auditor", "verify", "--public-key", pub, "--nats-url", natsURL, "--nats-nkey", auditorNkey)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("broken at sequence %d ", seq)) || !strings.Contains(err.Error(), "forged") {
		t.Fatalf("verify after a forgery: %v, want the forged event at sequence %d", err, seq)
	}
}

// TestSigningKey: spa-ctl signing-key writes a pair and never overwrites
// one.
func TestSigningKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, _, err := run(t, "127.0.0.1:1", "signing-key", "--out", dir, "--name", "spa-trust")
	if err != nil || !strings.Contains(out, "spa-trust+") {
		t.Fatalf("signing-key: %v\n%s", err, out)
	}
	if _, err := signing.LoadKey(filepath.Join(dir, signing.KeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "127.0.0.1:1", "signing-key", "--out", dir); err == nil {
		t.Error("an existing key overwritten")
	}
	if _, _, err := run(t, "127.0.0.1:1", "signing-key"); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Errorf("no --out: %v", err)
	}
	if _, stderr, err := run(t, "127.0.0.1:1", "verify", "--public-key", "nonsense"); err == nil || !strings.Contains(stderr, "neither a file nor a public key") {
		t.Errorf("a bad public key: %v %s", err, stderr)
	}
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
