// Package datadir makes sure one process at a time uses a data directory:
// two embedded nats-servers writing the same store, or two workers the
// same read model, would lose acknowledged events.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gofrs/flock"
)

// LockFile is the lock's file name in a data directory.
const LockFile = "spa.lock"

// ErrInUse is returned by Lock when another process holds the directory.
var ErrInUse = errors.New("in use by another SPA process (stop it first, or give this one its own --data-dir)")

// Lock creates dir if needed and takes its lock, without waiting; unlock
// releases it. The lock is the operating system's: it goes with the
// process, however that ends.
func Lock(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	l := flock.New(filepath.Join(dir, LockFile))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("data dir %s: lock: %w", dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("data dir %s: %w", dir, ErrInUse)
	}
	return func() { l.Unlock() }, nil
}
