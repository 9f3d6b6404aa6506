package jetstream_test

import (
	"os"
	"path/filepath"
	"testing"

	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
)

// TestEmbeddedStartsAfterAKillAtStart: nats-server tests its store
// directory by writing a file (_test_*) and removing it; a process killed
// in between leaves the file among the accounts' directories, and the next
// start must not take it for one.
func TestEmbeddedStartsAfterAKillAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := emb.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Store(t, nc, jetstream.Setup{})
	nc.Close()
	emb.Shutdown()
	stores, err := filepath.Glob(filepath.Join(dir, "jetstream", "jetstream"))
	if err != nil || len(stores) != 1 {
		t.Fatalf("store directory: %v, %v", stores, err)
	}
	if err := os.WriteFile(filepath.Join(stores[0], "_test_501407454"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	emb, err = jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatalf("start after a kill left the test file: %v", err)
	}
	emb.Shutdown()
}
