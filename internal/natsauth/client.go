package natsauth

import (
	"errors"
	"flag"
	"fmt"

	"github.com/nats-io/nats.go"

	"spa/internal/secret"
)

// Client is how a process connects to NATS: as which identity, proved by
// an nkey seed or a credentials file, over TLS checked against a CA and
// with a client certificate if the cluster asks for one.
type Client struct {
	// Identity is fixed by the process (spa-server is Server); it names
	// the inboxes the permissions let it read.
	Identity Identity
	// NkeyFile holds an nkey user seed; CredsFile a NATS credentials file
	// (a user JWT and its seed). At most one.
	NkeyFile, CredsFile string
	// CAFile verifies the servers' certificates (TLS is required when
	// set); CertFile and KeyFile are a client certificate, both or
	// neither.
	CAFile, CertFile, KeyFile string
}

// Register adds the connection flags to fs, named for the identity; c's
// values are their defaults.
func (c *Client) Register(fs *flag.FlagSet) {
	fs.StringVar(&c.NkeyFile, "nats-nkey", c.NkeyFile, fmt.Sprintf("file with the nkey seed of NATS identity %q (embedded: DATA_DIR/nats/%s.nk)", c.Identity, c.Identity))
	fs.StringVar(&c.CredsFile, "nats-creds", c.CredsFile, "NATS credentials file (user JWT and seed), instead of --nats-nkey")
	fs.StringVar(&c.CAFile, "nats-ca", c.CAFile, "CA certificate(s) that sign the NATS servers' certificates; set, the connection must use TLS")
	fs.StringVar(&c.CertFile, "nats-cert", c.CertFile, "client certificate for NATS servers that verify clients (with --nats-key)")
	fs.StringVar(&c.KeyFile, "nats-key", c.KeyFile, "private key of --nats-cert")
}

// Validate checks the flags' combinations.
func (c Client) Validate() error {
	var errs []error
	if c.NkeyFile != "" && c.CredsFile != "" {
		errs = append(errs, errors.New("--nats-nkey and --nats-creds: give one"))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("--nats-cert and --nats-key go together"))
	}
	return errors.Join(errs...)
}

// Given reports whether any credential or TLS option is set: the embedded
// server makes its own, so these apply to an external one only.
func (c Client) Given() bool {
	return c.NkeyFile != "" || c.CredsFile != "" || c.CAFile != "" || c.CertFile != ""
}

// Options returns the nats.go options that connect as c says. Without a
// seed or credentials the connection is anonymous, which only a server
// without authorization (a development one) accepts.
func (c Client) Options() ([]nats.Option, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.CustomInboxPrefix(c.Identity.InboxPrefix())}
	switch {
	case c.NkeyFile != "":
		if err := secret.Check(c.NkeyFile, "--nats-nkey"); err != nil {
			return nil, err
		}
		o, err := nats.NkeyOptionFromSeed(c.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey: %w", err)
		}
		opts = append(opts, o)
	case c.CredsFile != "":
		if err := secret.Check(c.CredsFile, "--nats-creds"); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return opts, nil
}
