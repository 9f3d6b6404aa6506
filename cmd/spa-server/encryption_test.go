package main

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/referraltest"
	spaserver "spa/internal/server"
)

// TestEncryptionAtRest stores a referral with the embedded server's files
// encrypted: the patient's name is in no JetStream file, a start without
// the key or with another key fails and says why, and the key can be
// rotated.
func TestEncryptionAtRest(t *testing.T) {
	t.Parallel()
	const name = "Quillfeather"
	keyFile := func(key string) string {
		f := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(f, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	oldKey, newKey := keyFile(strings.Repeat("k", 44)), keyFile(strings.Repeat("n", 44))
	// storesName submits a referral of a patient called name to a new
	// server on dir and reports whether name is in its JetStream files.
	storesName := func(dir string, args ...string) (string, bool) {
		s := startServer(t, append([]string{"--data-dir", dir, "--scheduler=false"}, args...)...)
		details := referraltest.Details(1)
		details.Patient.FamilyName = name
		sub, err := s.client.SubmitReferral(callCtx(t), &spav1.SubmitReferralRequest{RequestId: "3c1e9a7d-encrypted", Referral: details})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
		return sub.GetReferralId(), inFiles(t, filepath.Join(dir, "jetstream"), name)
	}
	if _, found := storesName(t.TempDir()); !found {
		t.Fatal("without a key the name is not in the JetStream files either: this test cannot tell")
	}
	dir := t.TempDir()
	id, found := storesName(dir, "--nats-encryption-key-file", oldKey)
	if found {
		t.Fatal("the patient's name is in the encrypted JetStream files")
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "are encrypted: start with their key"},
		{[]string{"--nats-encryption-key-file", newKey}, "could not be opened"},
	} {
		err := spaserver.Run(context.Background(), append([]string{"--listen", "127.0.0.1:0", "--data-dir", dir}, c.args...),
			func(string) string { return "" }, slog.New(slog.DiscardHandler), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("start with %v: %v, want %q", c.args, err, c.want)
		}
	}

	// Rotate: start once with both keys, then with the new one alone.
	for _, args := range [][]string{
		{"--nats-encryption-key-file", newKey, "--nats-encryption-previous-key-file", oldKey},
		{"--nats-encryption-key-file", newKey},
	} {
		s := startServer(t, append([]string{"--data-dir", dir, "--scheduler=false"}, args...)...)
		got, err := s.client.GetReferral(callCtx(t), &spav1.GetReferralRequest{ReferralId: id})
		if err != nil || got.GetReferral().GetDetails().GetPatient().GetFamilyName() != name {
			t.Fatalf("after rotating (%v): %v, %v", args, got, err)
		}
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if inFiles(t, filepath.Join(dir, "jetstream"), name) {
		t.Error("the patient's name is in the JetStream files after rotating")
	}
}

// inFiles reports whether s is in any file under dir.
func inFiles(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found = found || strings.Contains(string(data), s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
