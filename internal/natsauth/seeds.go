package natsauth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"spa/internal/secret"
)

// SeedFile is where the embedded server keeps id's nkey seed under dir
// (the data directory's nats/ folder).
func SeedFile(dir string, id Identity) string { return filepath.Join(dir, string(id)+".nk") }

// EnsureSeeds returns the nkey users of every identity, with their
// permissions, from the seed files in dir, creating dir (mode 0700) and
// any seed that does not exist yet (mode 0600). Existing seeds are kept:
// clients given them keep working across restarts. A seed file that is
// not a user seed is an error, never replaced.
func EnsureSeeds(dir string) ([]*server.NkeyUser, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats identities: %w", err)
	}
	users := make([]*server.NkeyUser, 0, len(Identities))
	for _, id := range Identities {
		kp, err := ensureSeed(SeedFile(dir, id))
		if err != nil {
			return nil, fmt.Errorf("nats identity %s: %w", id, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("nats identity %s: %w", id, err)
		}
		users = append(users, &server.NkeyUser{Nkey: pub, Permissions: Permissions(id)})
	}
	return users, nil
}

func ensureSeed(path string) (nkeys.KeyPair, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createSeed(path)
	}
	if err != nil {
		return nil, err
	}
	if err := secret.Check(path, "nats identity seed"); err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(data))
	if err != nil {
		return nil, fmt.Errorf("%s: not an nkey seed: %w", path, err)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("%s: not a user seed", path)
	}
	return kp, nil
}

// createSeed writes a new user seed to path, which must not exist: two
// processes starting at once cannot both write one (the data directory's
// lock keeps them apart anyway).
func createSeed(path string) (nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(append(seed, '\n'))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return kp, nil
}
