package jetstream

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	// Users are the only clients the server accepts, each with its
	// permissions (natsauth); none, and the server takes anonymous
	// clients, which it refuses to do while listening.
	Users []*server.NkeyUser
	// EncryptionKey, if set, encrypts JetStream's files (streams,
	// consumers, the lease bucket); a store written without one is
	// encrypted at start. PreviousKey, while rotating, is the key the
	// files were written with: they are encrypted again with
	// EncryptionKey as they are opened.
	EncryptionKey, PreviousKey string
}

// Embedded is a running in-process nats-server with JetStream.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a nats-server with JetStream on file storage. By
// default every write is fsynced before it is acknowledged.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	opts := &server.Options{
		ServerName:      "spa-embedded",
		JetStream:       true,
		StoreDir:        filepath.Join(cfg.DataDir, "jetstream"),
		SyncAlways:      !cfg.NoSync,
		NoSigs:          true,
		NoLog:           true,
		Nkeys:           cfg.Users,
		JetStreamKey:    cfg.EncryptionKey,
		JetStreamOldKey: cfg.PreviousKey,
	}
	if cfg.PreviousKey != "" && cfg.EncryptionKey == "" {
		return nil, errors.New("embedded nats: a previous encryption key is for rotating to a new one: give the new key too")
	}
	if cfg.PreviousKey != "" {
		if err := dropDurableConsumers(*opts); err != nil {
			return nil, err
		}
	}
	if cfg.EncryptionKey == "" {
		encrypted, err := encryptedStore(opts.StoreDir)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		if encrypted {
			return nil, fmt.Errorf("embedded nats: the JetStream files under %s are encrypted: start with their key (--nats-encryption-key-file or SPA_NATS_ENCRYPTION_KEY)", opts.StoreDir)
		}
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else if len(cfg.Users) == 0 {
		return nil, fmt.Errorf("embedded nats: refusing to serve anonymous clients on %s: no users given", cfg.Listen)
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
	if err := allStreamsLoaded(srv, opts.StoreDir); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	return &Embedded{srv: srv}, nil
}

// dropDurableConsumers removes, with the store still on the previous key,
// every durable consumer: nats-server re-encrypts streams written with
// the previous key but cannot reopen a consumer's state written with it.
// Provision makes the router's consumer again, which then offers every
// event to the routers once more (routing a routed event decides nothing
// new, docs/adr/0028).
func dropDurableConsumers(opts server.Options) error {
	opts.JetStreamKey, opts.JetStreamOldKey = opts.JetStreamOldKey, ""
	opts.DontListen, opts.Nkeys = true, nil
	srv, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("embedded nats, on the previous key: %w", err)
	}
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(30 * time.Second) {
		return errors.New("embedded nats, on the previous key: not ready after 30s")
	}
	if err := allStreamsLoaded(srv, opts.StoreDir); err != nil {
		return fmt.Errorf("%w (the previous key opens none of them)", err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		return fmt.Errorf("embedded nats, on the previous key: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		stream, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("embedded nats, rotating the key: %w", err)
		}
		var durable []string
		consumers := stream.ListConsumers(ctx)
		for c := range consumers.Info() {
			if c.Config.Durable != "" {
				durable = append(durable, c.Name)
			}
		}
		if err := consumers.Err(); err != nil {
			return fmt.Errorf("embedded nats, rotating the key: consumers of %s: %w", name, err)
		}
		for _, c := range durable {
			if err := stream.DeleteConsumer(ctx, c); err != nil {
				return fmt.Errorf("embedded nats, rotating the key: remove consumer %s of %s: %w", c, name, err)
			}
		}
	}
	return names.Err()
}

// encryptionKeyFile is the file JetStream writes beside each encrypted
// stream's and consumer's metadata.
const encryptionKeyFile = "meta.key"

// encryptedStore reports whether any stream under dir was written
// encrypted. nats-server started without the key skips such streams with
// a warning, and SPA would then create them again, empty.
func encryptedStore(dir string) (bool, error) {
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == encryptionKeyFile {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found, err
}

// allStreamsLoaded checks that every stream stored under dir was loaded:
// nats-server skips, with a warning only, a stream it cannot read (a
// wrong encryption key).
func allStreamsLoaded(srv *server.Server, dir string) error {
	var onDisk []string
	accounts, err := os.ReadDir(filepath.Join(dir, server.JetStreamStoreDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("embedded nats: %w", err)
	}
	for _, acc := range accounts {
		if !acc.IsDir() {
			// Not an account: a file nats-server writes to test the
			// directory (_test_*) and did not remove, killed meanwhile.
			continue
		}
		streams, err := os.ReadDir(filepath.Join(dir, server.JetStreamStoreDir, acc.Name(), "streams"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("embedded nats: %w", err)
		}
		for _, s := range streams {
			if s.IsDir() {
				onDisk = append(onDisk, s.Name())
			}
		}
	}
	if len(onDisk) == 0 {
		return nil
	}
	info, err := srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	var loaded []string
	for _, acc := range info.AccountDetails {
		for _, s := range acc.Streams {
			loaded = append(loaded, s.Name)
		}
	}
	var missing []string
	for _, name := range onDisk {
		if !slices.Contains(loaded, name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("embedded nats: streams %v under %s could not be opened: a wrong encryption key (or, while rotating, a wrong previous key)?", missing, dir)
	}
	return nil
}

// Connect opens a client connection to the embedded server, in-process;
// opts say who it is (natsauth).
func (e *Embedded) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append(opts, nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1))
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: connect %s: %w", name, err)
	}
	return nc, nil
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
// opts say who it is and how it proves it (natsauth).
func Dial(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	return dial(url, name, append(opts, nats.RetryOnFailedConnect(true))...)
}

// DialNow is Dial for a command that runs once: it fails at once if no
// server answers.
func DialNow(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	return dial(url, name, append(opts, nats.RetryOnFailedConnect(false))...)
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
