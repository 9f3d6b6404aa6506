package natsauth_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"spa/internal/natsauth"
	"spa/internal/pki"
)

// TestDeployCluster starts the three nodes of deploy/nats as they are
// configured (accounts, permissions, TLS on clients and routes), on
// ports of the test's choosing, checks that their permissions are
// natsauth's, and runs the attacks on the cluster with three replicas.
func TestDeployCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	dir := t.TempDir()
	if err := pki.LocalNode(dir, "node", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt")
	t.Setenv("SPA_NATS_NODE_CA", ca)
	t.Setenv("SPA_NATS_NODE_CERT", filepath.Join(dir, "node.crt"))
	t.Setenv("SPA_NATS_NODE_KEY", filepath.Join(dir, "node.key"))
	seeds := map[natsauth.Identity]string{}
	identityOf := map[string]natsauth.Identity{}
	for _, id := range natsauth.Identities {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		seeds[id] = filepath.Join(dir, string(id)+".nk")
		if err := os.WriteFile(seeds[id], seed, 0o600); err != nil {
			t.Fatal(err)
		}
		identityOf[pub] = id
		t.Setenv("SPA_NKEY_"+strings.ToUpper(string(id)), pub)
	}

	const nodes = 3
	var clientPorts, routePorts []int
	for range nodes {
		clientPorts, routePorts = append(clientPorts, freePort(t)), append(routePorts, freePort(t))
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var urls []string
	for i := range nodes {
		opts, err := server.ProcessConfigFile(filepath.Join("..", "..", "deploy", "nats", fmt.Sprintf("node-%d.conf", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			checkPermissions(t, opts, identityOf)
		}
		if !opts.TLSVerify && opts.TLSConfig == nil || opts.Cluster.TLSConfig == nil || opts.NoAuthUser != "" {
			t.Fatalf("node %d: client TLS %v, route TLS %v, anonymous user %q", i+1, opts.TLSConfig != nil, opts.Cluster.TLSConfig != nil, opts.NoAuthUser)
		}
		opts.Host, opts.Port = "127.0.0.1", clientPorts[i]
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", routePorts[i]
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		opts.HTTPPort = 0
		opts.StoreDir = filepath.Join(dir, fmt.Sprintf("nats-%d", i+1))
		opts.NoSigs, opts.NoLog = true, true
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		})
		if !srv.ReadyForConnections(30 * time.Second) {
			t.Fatalf("node %d not ready", i+1)
		}
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}

	clientTLS := []nats.Option{nats.RootCAs(ca)}
	attack(t, setUp(t, strings.Join(urls, ","), nodes, clientTLS, func(id natsauth.Identity) []nats.Option {
		opts, err := natsauth.Client{Identity: id, NkeyFile: seeds[id], CAFile: ca}.Options()
		if err != nil {
			t.Fatal(err)
		}
		return opts
	}))
	t.Run("TLS required", func(t *testing.T) {
		for _, port := range clientPorts {
			if info := greeting(t, port); !strings.Contains(info, `"tls_required":true`) {
				t.Errorf("client port %d greets %s, without tls_required", port, info)
			}
		}
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(ca)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("CA: %v", err)
		}
		for _, port := range routePorts {
			// A would-be node without a certificate the CA signed.
			c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: pool})
			if err == nil {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("route port %d, no client certificate: %v, want the handshake refused", port, err)
			}
		}
	})
}

// checkPermissions checks that the deploy config's users are SPA's
// identities, each with natsauth's permissions, in one account with
// JetStream.
func checkPermissions(t *testing.T, opts *server.Options, identityOf map[string]natsauth.Identity) {
	t.Helper()
	seen := map[natsauth.Identity]bool{}
	for _, u := range opts.Nkeys {
		id, ok := identityOf[u.Nkey]
		if !ok {
			t.Errorf("deploy config has a user %s that is none of SPA's identities", u.Nkey)
			continue
		}
		seen[id] = true
		if u.Account == nil || u.Account.Name != "SPA" {
			t.Errorf("%s: account %v, want SPA", id, u.Account)
		}
		if diff := cmp.Diff(natsauth.Permissions(id), u.Permissions, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: deploy/nats/accounts.conf differs from natsauth.Permissions (-natsauth +accounts.conf):\n%s", id, diff)
		}
	}
	for _, id := range natsauth.Identities {
		if !seen[id] {
			t.Errorf("deploy config has no user for %s", id)
		}
	}
	if len(opts.Users) > 0 {
		t.Errorf("deploy config has %d password users; SPA's are nkeys", len(opts.Users))
	}
}

// greeting returns the INFO line a node sends on port before any TLS.
func greeting(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("port %d: %v", port, err)
	}
	return line
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
