package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"spa/internal/config"
	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/rpc"
	"spa/internal/worker"
)

// Config is spa-server's validated configuration.
type Config struct {
	Listen     string
	DataDir    string
	NATSURL    string
	NATSListen string
	// NATS is how the server connects to an external NATS: its identity
	// is natsauth.Server.
	NATS natsauth.Client
	// EncryptionKey and PreviousKey encrypt the embedded server's files
	// (docs/adr/0028).
	EncryptionKey, PreviousKey string
	Worker                     bool
	WorkerConfig               worker.Config
	NoSync                     bool
	Reflection                 bool
	MinReplicas                int
	ShutdownGrace              time.Duration
	WatchHeartbeat             time.Duration
	Limits                     rpc.Limits
	// TLS: the server's certificate and key, and the CA(s) that sign
	// client certificates. None of them is the development mode.
	TLSCert, TLSKey, TLSClientCA string
	// SigningKey is the key file events and checkpoints are signed with;
	// empty in the all-in-one mode: DataDir's, made on first start.
	SigningKey      string
	CheckpointEvery time.Duration
}

// Dev reports whether the server runs in the development mode:
// plaintext, on loopback only, callers stating who they are.
func (c Config) Dev() bool { return c.TLSCert == "" && c.TLSKey == "" && c.TLSClientCA == "" }

// ParseConfig reads spa-server's flags from args (and their environment
// variables through getenv) and validates them, every problem at once;
// usage gets the flags' help.
func ParseConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("spa-server", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:50051", "gRPC listen address")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory for the embedded JetStream files and the read model")
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS server or cluster URL(s), comma separated; empty starts an embedded nats-server")
	fs.StringVar(&c.NATSListen, "nats-listen", "", "embedded mode: also serve NATS clients on this host:port (e.g. 127.0.0.1:4222); empty serves this process only")
	c.NATS.Identity = natsauth.Server
	c.NATS.Register(fs)
	var keyFile, previousKeyFile string
	fs.StringVar(&keyFile, "nats-encryption-key-file", "", "embedded mode: encrypt JetStream's files with the key in this file (or env SPA_NATS_ENCRYPTION_KEY, the key itself); once set, always needed")
	fs.StringVar(&previousKeyFile, "nats-encryption-previous-key-file", "", "embedded mode, rotating the key: the key the files were written with; they are encrypted again with the new one")
	fs.BoolVar(&c.Worker, "worker", true, "run a worker (projection and read model) in this process")
	var wf config.WorkerFlags
	wf.Register(fs)
	fs.BoolVar(&c.NoSync, "no-sync", false, "embedded mode: do not fsync every JetStream write (faster; a machine crash can lose acknowledged events)")
	fs.BoolVar(&c.Reflection, "reflection", true, "serve gRPC server reflection (for grpcurl)")
	fs.IntVar(&c.MinReplicas, "min-replicas", 1, "external NATS: refuse to start unless SPA's streams have at least this many replicas (spa-ctl init creates them)")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 15*time.Second, "how long in-flight calls may run after SIGTERM")
	fs.DurationVar(&c.WatchHeartbeat, "watch-heartbeat", 10*time.Second, "how often an idle WatchAssignments stream gets a heartbeat")
	fs.StringVar(&c.SigningKey, "signing-key", "", "file of the Ed25519 key this server signs events and checkpoints with (spa-ctl signing-key makes one); required with --nats-url; default in the all-in-one mode: signing.key in the data directory, made on first start")
	fs.DurationVar(&c.CheckpointEvery, "checkpoint-every", time.Minute, "how often to sign a checkpoint of the event log when it has grown (0: only at shutdown and when spa-ctl checkpoint asks)")
	c.Limits = rpc.DefaultLimits
	fs.Float64Var(&c.Limits.Rate, "limit-rate", c.Limits.Rate, "calls a second one caller may make; more are answered RESOURCE_EXHAUSTED")
	fs.IntVar(&c.Limits.Burst, "limit-burst", c.Limits.Burst, "calls one caller may make at once above --limit-rate")
	fs.IntVar(&c.Limits.Streams, "limit-streams", c.Limits.Streams, "streams (watch, replay) one caller may have open")
	fs.DurationVar(&c.Limits.MaxDeadline, "max-call-duration", c.Limits.MaxDeadline, "the longest a unary call may run, whatever its deadline")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "the server's TLS certificate (PEM); with --tls-key and --tls-client-ca it serves TLS 1.3 and requires client certificates (spa-ctl certs makes them); without, the development mode: plaintext on loopback only")
	fs.StringVar(&c.TLSKey, "tls-key", "", "the key of --tls-cert (PEM)")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "the CA certificate(s) (PEM) that sign client certificates; a caller's organisation and role come from its certificate (docs/adr/0024)")
	if err := config.Parse(fs, args, getenv); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var errs []error
	if host, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", c.Listen, err))
	} else if c.Dev() && !loopback(host) {
		errs = append(errs, fmt.Errorf("--listen %s: without TLS the server runs in the development mode, on loopback only (127.0.0.1, ::1 or localhost); "+
			"give --tls-cert, --tls-key and --tls-client-ca to serve other hosts (spa-ctl certs makes them)", c.Listen))
	}
	if !c.Dev() && (c.TLSCert == "" || c.TLSKey == "" || c.TLSClientCA == "") {
		errs = append(errs, errors.New("TLS needs all three of --tls-cert, --tls-key and --tls-client-ca"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if c.NATSURL != "" && (c.NATSListen != "" || c.NoSync || keyFile != "" || previousKeyFile != "" || getenv(envEncryptionKey) != "") {
		errs = append(errs, errors.New("--nats-listen, --no-sync and the encryption key apply to the embedded server only; configure an external server in its own config"))
	}
	if c.NATSURL == "" && c.NATS.Given() {
		errs = append(errs, errors.New("--nats-nkey, --nats-creds and the NATS TLS flags are for an external server (--nats-url); the embedded server makes its own identities under DATA_DIR/nats"))
	}
	if c.NATSURL != "" && c.Worker && (c.NATS.NkeyFile != "" || c.NATS.CredsFile != "") {
		errs = append(errs, errors.New("with NATS credentials, run the worker as spa-worker and this server with --worker=false: the server's identity may not answer queries"))
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	var err error
	if c.EncryptionKey, err = readKey(keyFile, getenv(envEncryptionKey)); err != nil {
		errs = append(errs, err)
	}
	if c.PreviousKey, err = readKey(previousKeyFile, ""); err != nil {
		errs = append(errs, fmt.Errorf("previous key: %w", err))
	}
	if c.PreviousKey != "" && c.EncryptionKey == "" {
		errs = append(errs, errors.New("--nats-encryption-previous-key-file rotates to a new key: give the new one too"))
	}
	if c.NATSListen != "" {
		// The embedded listener has no TLS: on the wire it would carry
		// patient data in the clear, whatever its logins.
		if host, _, err := net.SplitHostPort(c.NATSListen); err == nil && !loopback(host) {
			errs = append(errs, fmt.Errorf("--nats-listen %s: the embedded NATS serves loopback only (it has no TLS); "+
				"to serve other hosts run a NATS cluster with TLS (deploy/) and --nats-url", c.NATSListen))
		}
	}
	if c.NATSURL == "" && !c.Worker && c.NATSListen == "" {
		errs = append(errs, errors.New("--worker=false with the embedded server needs --nats-listen, or no worker could ever answer queries"))
	}
	if c.MinReplicas < 1 || c.MinReplicas > jetstream.MaxReplicas {
		errs = append(errs, fmt.Errorf("--min-replicas %d: must be 1-%d", c.MinReplicas, jetstream.MaxReplicas))
	}
	if c.NATSURL == "" && c.MinReplicas > 1 {
		errs = append(errs, errors.New("--min-replicas above 1 needs --nats-url: the embedded server keeps one replica"))
	}
	if c.ShutdownGrace <= 0 {
		errs = append(errs, errors.New("--shutdown-grace must be positive"))
	}
	if c.Limits.Rate <= 0 || c.Limits.Burst < 1 || c.Limits.Streams < 1 || c.Limits.MaxDeadline <= 0 {
		errs = append(errs, errors.New("--limit-rate, --limit-burst, --limit-streams and --max-call-duration must be positive"))
	}
	if c.NATSURL != "" && c.SigningKey == "" {
		errs = append(errs, errors.New("--signing-key is required with --nats-url: every process that appends signs its events with the deployment's key (make one with `spa-ctl signing-key --out DIR`; docs/audit.md)"))
	}
	if c.CheckpointEvery < 0 {
		errs = append(errs, errors.New("--checkpoint-every must not be negative"))
	}
	if c.WatchHeartbeat <= 0 {
		errs = append(errs, errors.New("--watch-heartbeat must be positive"))
	}
	if c.WorkerConfig, err = wf.Config(c.DataDir, time.Now()); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// loopback reports whether host names only this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// envEncryptionKey holds the embedded server's encryption key itself, for
// platforms that hand secrets over in the environment.
const envEncryptionKey = "SPA_NATS_ENCRYPTION_KEY"

// minKeyLength is the shortest encryption key taken: 32 random bytes in
// base64 are 44 characters.
const minKeyLength = 32

// readKey returns the key in file, or else fromEnv; empty when neither is
// given, an error when both are or the key is too short to be random.
func readKey(file, fromEnv string) (string, error) {
	key := fromEnv
	if file != "" {
		if fromEnv != "" {
			return "", fmt.Errorf("--nats-encryption-key-file and %s: give one", envEncryptionKey)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("encryption key: %w", err)
		}
		key = strings.TrimSpace(string(data))
	}
	if key != "" && len(key) < minKeyLength {
		return "", fmt.Errorf("encryption key: %d characters, fewer than %d (make one with: head -c 32 /dev/urandom | base64)", len(key), minKeyLength)
	}
	return key, nil
}
