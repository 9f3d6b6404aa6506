package natsauth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"spa/internal/natsauth"
)

func TestSeedsAreMadeOnceAndKept(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nats")
	first, err := natsauth.EnsureSeeds(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := natsauth.EnsureSeeds(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(natsauth.Identities) {
		t.Fatalf("%d users, want one per identity (%d)", len(first), len(natsauth.Identities))
	}
	for i := range first {
		if first[i].Nkey != again[i].Nkey {
			t.Errorf("%s: key %s after a restart, was %s", natsauth.Identities[i], again[i].Nkey, first[i].Nkey)
		}
		if diff := cmp.Diff(natsauth.Permissions(natsauth.Identities[i]), first[i].Permissions); diff != "" {
			t.Errorf("%s permissions (-want +got):\n%s", natsauth.Identities[i], diff)
		}
		if fi, err := os.Stat(natsauth.SeedFile(dir, natsauth.Identities[i])); err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s seed file: mode %v, want 0600", natsauth.Identities[i], fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dir); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("seed directory: mode %v, want 0700", fi.Mode().Perm())
	}

	if err := os.WriteFile(natsauth.SeedFile(dir, natsauth.Worker), []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.EnsureSeeds(dir); err == nil || !strings.Contains(err.Error(), "not an nkey seed") {
		t.Fatalf("a damaged seed: %v, want it refused", err)
	}
}
