package jetstream

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures the in-process nats-server of the all-in-one
// mode.
type EmbeddedConfig struct {
	// DataDir holds JetStream's files (under DataDir/jetstream).
	DataDir string
	// Listen is host:port for outside clients; empty serves only this
	// process (no port is opened). ":0"-style ports pick a free port.
	Listen string
	// NoSync relaxes durability: JetStream then fsyncs on an interval
	// instead of on every write, and a machine crash may lose the last
	// writes that were acknowledged. Off by default.
	NoSync bool
}

// Embedded is a running in-process nats-server with JetStream.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a nats-server with JetStream on file storage. By
// default every write is fsynced before it is acknowledged.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	opts := &server.Options{
		ServerName: "spa-embedded",
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "jetstream"),
		SyncAlways: !cfg.NoSync,
		NoSigs:     true,
		NoLog:      true,
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen address %q: %w", cfg.Listen, err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("embedded nats: listen port %q: %w", port, err)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 30s")
	}
	return &Embedded{srv: srv}, nil
}

// Connect opens a client connection to the embedded server, in-process.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	return nats.Connect("", nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1))
}

// ClientURL returns the URL outside clients use, or "" when not listening.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server and waits until it has stopped.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Dial connects to an external NATS server or cluster (comma-separated
// URLs), reconnecting for as long as the process runs.
//
// A process started while no server answers keeps trying (its first
// requests wait or fail as in an outage). A server that stops answering
// without closing the connection (paused, a half-open network) is left
// within a few seconds for another node of the cluster.
func Dial(url, name string) (*nats.Conn, error) {
	return dial(url, name, nats.RetryOnFailedConnect(true))
}

// DialNow is Dial for a command that runs once: it fails at once if no
// server answers.
func DialNow(url, name string) (*nats.Conn, error) {
	return dial(url, name, nats.RetryOnFailedConnect(false))
}

func dial(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append(opts, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond),
		nats.PingInterval(2*time.Second), nats.MaxPingsOutstanding(2))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// Drain drains nc (subscriptions finish the messages they hold, pending
// publishes are flushed) and waits, up to timeout, until it has closed.
func Drain(nc *nats.Conn, timeout time.Duration) error {
	if err := nc.Drain(); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for !nc.IsClosed() {
		if time.Now().After(deadline) {
			nc.Close()
			return fmt.Errorf("nats: drain did not finish in %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
