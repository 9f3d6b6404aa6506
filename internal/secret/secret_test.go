package secret_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"spa/internal/secret"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	for mode, ok := range map[os.FileMode]bool{0o600: true, 0o400: true, 0o640: false, 0o644: false, 0o604: false} {
		path := filepath.Join(dir, mode.String())
		if err := os.WriteFile(path, []byte("k"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		err := secret.Check(path, "test key")
		if ok != (err == nil) || (!ok && !strings.Contains(err.Error(), "chmod 600")) {
			t.Errorf("mode %s: %v", mode, err)
		}
	}
	if err := secret.Check(filepath.Join(dir, "none"), "test key"); err == nil {
		t.Error("a missing file passed")
	}
}
