//go:build ignore

// localsecrets makes what deploy/local-cluster.sh needs on this machine,
// in DIR: a CA (ca.crt, ca.key), a certificate it signs for 127.0.0.1 and
// localhost that each node uses for clients and routes (node.crt,
// node.key), and an nkey seed for each of SPA's identities
// (<identity>.nk). Files that exist are kept. It prints the environment
// node-{1,2,3}.conf read, as shell exports.
//
//	go run deploy/nats/localsecrets.go DIR
//
// For a local cluster only: a real deployment's CA and keys come from its
// own PKI and secret store.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"spa/internal/natsauth"
	"spa/internal/pki"
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
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := pki.LocalNode(abs, "node", 365*24*time.Hour); err != nil {
		return err
	}
	fmt.Printf("export SPA_NATS_NODE_CA=%s SPA_NATS_NODE_CERT=%s SPA_NATS_NODE_KEY=%s\n",
		filepath.Join(abs, "ca.crt"), filepath.Join(abs, "node.crt"), filepath.Join(abs, "node.key"))
	users, err := natsauth.EnsureSeeds(abs)
	if err != nil {
		return err
	}
	for i, id := range natsauth.Identities {
		fmt.Printf("export SPA_NKEY_%s=%s\n", strings.ToUpper(string(id)), users[i].Nkey)
	}
	return nil
}
