// Package secret checks the files that hold private keys: a key file
// others may read is refused, since whoever reads it can act as its owner
// (sign events, join the bus, present a certificate).
package secret

import (
	"fmt"
	"os"
)

// Check returns an error unless path exists and only its owner may read
// or write it. what names the key in the error ("signing key").
func Check(path, what string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s: readable by others (mode %s): chmod 600 it", what, path, perm)
	}
	return nil
}
