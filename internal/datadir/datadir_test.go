package datadir_test

import (
	"errors"
	"testing"

	"spa/internal/datadir"
)

// TestLock: a directory locked once cannot be locked again until it is
// released.
func TestLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unlock, err := datadir.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := datadir.Lock(dir); !errors.Is(err, datadir.ErrInUse) {
		t.Fatalf("second lock: %v, want ErrInUse", err)
	}
	unlock()
	again, err := datadir.Lock(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}
