//go:build ignore

// localsecrets makes what deploy/local-cluster.sh needs on this machine,
// in DIR: a CA (ca.pem), a certificate it signs for 127.0.0.1 and
// localhost that each node uses for clients and routes (node.pem,
// node-key.pem), and an nkey seed for each of SPA's identities
// (<identity>.nk). Files that exist are kept. It prints the environment
// node-{1,2,3}.conf read, as shell exports.
//
//	go run deploy/nats/localsecrets.go DIR
//
// For a local cluster only: a real deployment's CA and keys come from its
// own PKI and secret store.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run deploy/nats/localsecrets.go DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "localsecrets:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(abs, "node.pem")); errors.Is(err, fs.ErrNotExist) {
		if err := certs(abs); err != nil {
			return err
		}
	}
	fmt.Printf("export SPA_NATS_NODE_CA=%s SPA_NATS_NODE_CERT=%s SPA_NATS_NODE_KEY=%s\n",
		filepath.Join(abs, "ca.pem"), filepath.Join(abs, "node.pem"), filepath.Join(abs, "node-key.pem"))
	for _, id := range []string{"server", "worker", "admin", "auditor", "provider"} {
		path := filepath.Join(abs, id+".nk")
		seed, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			kp, err := nkeys.CreateUser()
			if err != nil {
				return err
			}
			if seed, err = kp.Seed(); err != nil {
				return err
			}
			if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return err
		}
		fmt.Printf("export SPA_NKEY_%s=%s\n", strings.ToUpper(id), pub)
	}
	return nil
}

// certs writes a CA and a node certificate for clients and routes.
func certs(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "SPA local cluster CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	nodeTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "spa-nats"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	nodeDER, err := x509.CreateCertificate(rand.Reader, nodeTmpl, caCert, &nodeKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(nodeKey)
	if err != nil {
		return err
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":       {Type: "CERTIFICATE", Bytes: caDER},
		"node.pem":     {Type: "CERTIFICATE", Bytes: nodeDER},
		"node-key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	return nil
}
