// Package signing proves who wrote the event log (ADR 26): the processes
// that append sign each event they append with an Ed25519 key, and sign
// checkpoints (a sequence and a hash over every event up to it) in the
// signed-note format of golang.org/x/mod/sumdb/note. An auditor holds
// only the public keys. It does no I/O beyond reading and writing key
// files.
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"spa/internal/secret"
)

// Key file names in a directory (spa-ctl signing-key --out DIR, and the
// all-in-one server's data directory).
const (
	KeyFile       = "signing.key"
	PublicKeyFile = "signing.pub"
)

// Key signs events and checkpoints. Safe for concurrent use.
type Key struct {
	signer note.Signer
	public string
	verify Verifiers
}

// GenerateKey returns a new key pair named name (letters, digits, '-',
// '.', '_'; the name is in every signature): the private key as a note
// signer key ("PRIVATE+KEY+name+hash+base64") and the public key as a
// note verifier key ("name+hash+base64").
func GenerateKey(name string) (private, public string, err error) {
	if !validName(name) {
		return "", "", fmt.Errorf("signing key name %q: use letters, digits, '-', '.' or '_'", name)
	}
	return note.GenerateKey(rand.Reader, name)
}

func validName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// ParseKey reads a private key as GenerateKey writes it.
func ParseKey(private string) (*Key, error) {
	private = strings.TrimSpace(private)
	signer, err := note.NewSigner(private)
	if err != nil {
		return nil, fmt.Errorf("not a signing key (want PRIVATE+KEY+name+hash+base64, as spa-ctl signing-key writes): %w", err)
	}
	// The last field is the algorithm byte and the seed; NewSigner has
	// checked the shape and the hash.
	fields := strings.SplitN(private, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(fields[len(fields)-1])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		return nil, errors.New("not an Ed25519 signing key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	public, err := note.NewEd25519VerifierKey(signer.Name(), pub)
	if err != nil {
		return nil, err
	}
	v, err := ParseVerifiers(public)
	if err != nil {
		return nil, err
	}
	return &Key{signer: signer, public: public, verify: v}, nil
}

// LoadKey reads a private key file. A file others may read is refused:
// whoever reads it can sign events.
func LoadKey(path string) (*Key, error) {
	if err := secret.Check(path, "signing key"); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyPair generates a key pair named name into dir (KeyFile, mode
// 0600, and PublicKeyFile) and returns the key. It never overwrites a
// key: a key file already there is an error.
func WriteKeyPair(dir, name string) (*Key, error) {
	private, public, err := GenerateKey(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, KeyFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	_, err = f.WriteString(private + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, PublicKeyFile), []byte(public+"\n"), 0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return ParseKey(private)
}

// LoadOrCreate returns the key in dir, generating a pair named name
// there first if there is none (the all-in-one server's data directory);
// created says which.
func LoadOrCreate(dir, name string) (key *Key, created bool, err error) {
	k, err := LoadKey(filepath.Join(dir, KeyFile))
	if errors.Is(err, os.ErrNotExist) {
		k, err = WriteKeyPair(dir, name)
		return k, err == nil, err
	}
	return k, false, err
}

// PublicKey returns the key's public key, "name+hash+base64": what an
// auditor keeps.
func (k *Key) PublicKey() string { return k.public }

// Verifiers returns the verifier of the key's own signatures.
func (k *Key) Verifiers() Verifiers { return k.verify }

// eventMessage is what an event's signature signs: its subject and the
// SHA-256 of its stored bytes (which hold its link to its predecessor on
// the subject), after a line no checkpoint text starts with.
func eventMessage(subject string, hash []byte) []byte {
	return []byte("spa event v1\n" + subject + "\n" + hex.EncodeToString(hash) + "\n")
}

// SignEvent returns the signature of an event about to be appended to
// subject with stored bytes hashing to hash, as the Spa-Sig header
// carries it: "name base64(keyhash || signature)", a note signature line
// without its dash.
func (k *Key) SignEvent(subject string, hash []byte) (string, error) {
	sig, err := k.signer.Sign(eventMessage(subject, hash))
	if err != nil {
		return "", err
	}
	b := binary.BigEndian.AppendUint32(nil, k.signer.KeyHash())
	return k.signer.Name() + " " + base64.StdEncoding.EncodeToString(append(b, sig...)), nil
}

// Verifiers are the public keys an auditor trusts.
type Verifiers struct {
	list note.Verifiers
}

// ParseVerifiers reads public keys ("name+hash+base64").
func ParseVerifiers(keys ...string) (Verifiers, error) {
	var vs []note.Verifier
	var errs []error
	for _, k := range keys {
		k = strings.TrimSpace(k)
		v, err := note.NewVerifier(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("public key %q: not a key (want name+hash+base64, as signing.pub holds): %w", k, err))
			continue
		}
		vs = append(vs, v)
	}
	if len(keys) == 0 {
		errs = append(errs, errors.New("no public key given"))
	}
	return Verifiers{list: note.VerifierList(vs...)}, errors.Join(errs...)
}

// Empty reports whether no key is known (the zero Verifiers).
func (v Verifiers) Empty() bool { return v.list == nil }

// Errors VerifyEvent wraps.
var (
	ErrUnsigned   = errors.New("it carries no signature")
	ErrUnknownKey = errors.New("it is signed by a key not given")
	ErrForged     = errors.New("its signature does not verify")
)

// VerifyEvent checks an event's Spa-Sig header (sig) against its subject
// and the SHA-256 of its stored bytes: nil, or an error wrapping
// ErrUnsigned, ErrUnknownKey or ErrForged.
func (v Verifiers) VerifyEvent(subject string, hash []byte, sig string) error {
	if sig == "" {
		return ErrUnsigned
	}
	name, b64, ok := strings.Cut(sig, " ")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(raw) != 4+ed25519.SignatureSize {
		return fmt.Errorf("%w: it is malformed", ErrForged)
	}
	keyHash := binary.BigEndian.Uint32(raw[:4])
	if v.list == nil {
		return fmt.Errorf("%w (%s+%08x)", ErrUnknownKey, name, keyHash)
	}
	ver, err := v.list.Verifier(name, keyHash)
	if err != nil {
		return fmt.Errorf("%w (%s+%08x)", ErrUnknownKey, name, keyHash)
	}
	if !ver.Verify(eventMessage(subject, hash), raw[4:]) {
		return fmt.Errorf("%w with key %s+%08x", ErrForged, name, keyHash)
	}
	return nil
}
