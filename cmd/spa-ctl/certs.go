package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"spa/internal/identity"
	"spa/internal/pki"
)

// listFlag is a flag that may be given more than once, or with commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// certs makes a local CA (or loads the one already in --out), a server
// certificate and client certificates, one per identity.
func (c *ctl) certs(args []string) error {
	fs := c.flags("certs")
	out := fs.String("out", "", "directory for the files (created; existing files are kept, never overwritten)")
	days := fs.Int("days", 365, "validity of the certificates made, in days (the CA: ten times as long)")
	var hosts, clients listFlag
	fs.Var(&hosts, "host", "a host name or IP address the server is reached by (repeatable; default localhost,127.0.0.1,::1)")
	fs.Var(&clients, "client", "a client identity ODS/ROLE[/USER] to make a certificate for (repeatable)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *out == "" || fs.NArg() > 0 || *days < 1 {
		return errors.New("usage: spa-ctl certs --out DIR [--host H,...] [--client ODS/ROLE[/USER] ...] [--days N]")
	}
	ids := make([]identity.Identity, len(clients))
	for i, s := range clients {
		id, err := identity.Parse(s)
		if err != nil {
			return fmt.Errorf("--client: %w", err)
		}
		ids[i] = id
	}
	if len(hosts) == 0 {
		hosts = listFlag{"localhost", "127.0.0.1", "::1"}
	}
	validFor := time.Duration(*days) * 24 * time.Hour
	ca, err := pki.LoadCA(*out)
	switch {
	case err == nil:
		fmt.Fprintf(c.stdout, "using the CA in %s\n", *out)
	case errors.Is(err, os.ErrNotExist):
		if ca, err = pki.NewCA("SPA local CA", 10*validFor); err != nil {
			return err
		}
		if err := ca.Save(*out); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s: a new CA (keep ca.key secret; give ca.crt to every server and client)\n", filepath.Join(*out, "ca.crt"))
	default:
		return err
	}
	issue := func(name string, spec pki.Spec) error {
		if _, err := os.Stat(filepath.Join(*out, name+".crt")); err == nil {
			fmt.Fprintf(c.stdout, "%s: kept\n", filepath.Join(*out, name+".crt"))
			return nil
		}
		spec.ValidFor = validFor
		cert, key, err := ca.Issue(spec)
		if err != nil {
			return err
		}
		if err := pki.WritePair(*out, name, cert, key); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s\n", filepath.Join(*out, name+".crt"))
		return nil
	}
	server := pki.Spec{CommonName: "spa-server", Server: true}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPs = append(server.IPs, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	if err := issue("server", server); err != nil {
		return err
	}
	for _, id := range ids {
		user := id.User
		if user == "" {
			user = strings.ToLower(id.ODS) + "-" + string(id.Role)
		}
		if err := issue(certName(id), pki.Spec{CommonName: user, Client: true, URIs: []*url.URL{id.URI()}}); err != nil {
			return err
		}
	}
	return nil
}

// certName is the file name (without .crt/.key) of id's certificate.
func certName(id identity.Identity) string { return id.ODS + "-" + string(id.Role) }
