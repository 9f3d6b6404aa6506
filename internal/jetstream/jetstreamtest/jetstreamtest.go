// Package jetstreamtest starts an embedded nats-server with JetStream for
// tests: random port on 127.0.0.1, files in t.TempDir(), shut down when the
// test ends.
package jetstreamtest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"spa/internal/jetstream"
)

// Start starts a server and returns it; it stops when t ends. adjust, if
// any, change its options first.
func Start(t testing.TB, adjust ...func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	}
	for _, a := range adjust {
		a(opts)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// Connect opens a client connection, closed when t ends.
func Connect(t testing.TB, srv *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Store provisions SPA's JetStream assets on nc's server as setup states
// (the zero Setup: one replica, default windows) and returns a store on
// them.
func Store(t testing.TB, nc *nats.Conn, setup jetstream.Setup) *jetstream.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := jetstream.Provision(ctx, nc, setup); err != nil {
		t.Fatalf("provision: %v", err)
	}
	store, err := jetstream.Open(ctx, nc, jetstream.Requirements{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return store
}
