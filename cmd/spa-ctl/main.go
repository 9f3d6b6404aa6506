// Command spa-ctl is the operator's and developer's command line for SPA:
//
//	spa-ctl submit -f referral.json   submit a referral (SubmitReferralRequest as JSON)
//	spa-ctl get REFERRAL_ID           show a referral and its history
//	spa-ctl board [--status ready]    show the board
//	spa-ctl providers                 show providers and their capacity
//	spa-ctl assignments --provider X  show a provider's assignments
//	spa-ctl accept|decline|start|complete ASSIGNMENT_ID
//	spa-ctl demo                      load a sample borough: providers and referrals
//	spa-ctl replay / timeline / verify / access-log   audit the log
//	spa-ctl signing-key / checkpoint / checkpoints    sign the log (docs/audit.md)
//	spa-ctl init --nats-url URL       create SPA's streams on a NATS cluster
//	spa-ctl workers / rebuild         every worker's state; rebuild read models
//	spa-ctl digest --nats-url URL     show a read model's digest
//
// Global flags come before the command: spa-ctl --addr host:port board.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"spa/internal/config"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/identity"
	"spa/internal/pki"
	"spa/internal/rpc"
	"spa/internal/spa"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "spa-ctl:", err)
		os.Exit(1)
	}
}

// errUsage marks an error already explained by the usage text.
var errUsage = errors.New("see usage above")

type ctl struct {
	client      spav1.ReferralServiceClient
	providers   spav1.ProviderServiceClient
	audit       spav1.AuditServiceClient
	assignments spav1.AssignmentServiceClient
	policies    spav1.PolicyServiceClient
	timeout     time.Duration
	stdout      io.Writer
	stderr      io.Writer
	getenv      func(string) string
	// dev: the server runs in the development mode, and calls state who
	// they are (as); otherwise the client certificate says.
	dev bool
	as  identity.Identity
}

const usage = `usage: spa-ctl [--addr HOST:PORT] [--timeout D] [--purpose P]
               [--tls-ca FILE --tls-cert FILE --tls-key FILE | --as ODS/ROLE[/USER]] COMMAND [ARGS]

Who you are: with TLS, your client certificate (spa-ctl certs makes them);
against a development-mode server, --as (default SPA/coordinator): ROLE is
discharge-team, provider, coordinator, auditor or admin.

commands:
  submit -f FILE [--request-id ID]   submit a referral; FILE is a SubmitReferralRequest in JSON
  amend -f FILE [--request-id ID]    amend a referral's details; FILE is an AmendReferralRequest
                                     in JSON (examples/amend.json): changes, update_mask, reason
  get [--min-seq N] REFERRAL_ID      show a referral and its history as JSON
  board [--status S] [--pathway P] [--site ODS] [--page-size N] [--all]
                                     show the board (S: not_ready, ready, held, pathway_decided,
                                     awaiting_capacity, offered, accepted, in_progress, completed,
                                     ward_led, withdrawn;
                                     P: p0_home, p1_home_first, p2_step_down, p3_care_home, end_of_life)
  providers [--borough B] [--service S]
                                     show providers and their capacity (every page)
  capacity --provider ODS --service S --units N [--closed] [--as-of T] [--request-id ID]
                                     declare a provider's free units of a service, as counted
                                     at T (RFC 3339; default now); units promised to live
                                     offers are subtracted by the SPA (safe to retry)
  policies                           the routing policies in force from each date
  policy --rule infection-overlay --on|--off --from DATE --reason TEXT [--request-id ID]
                                     switch a rule set from a UK date (today or later),
                                     recorded in the log for every worker
  assignments --provider ODS [--status S]
                                     show a provider's assignments, newest first (every page)
  watch --provider ODS [--after CURSOR] [--heartbeats]
                                     follow a provider's feed live; each line starts with
                                     the cursor to resume from (Ctrl-C to stop)
  accept|start|complete [--request-id ID] ASSIGNMENT_ID
  decline --reason TEXT [--request-id ID] ASSIGNMENT_ID
                                     answer an offer as its provider would
  left [--request-id ID] REFERRAL_ID record that the patient left hospital
  replay [--referral ID] [--provider ODS] [--type T,...] [--from T] [--to T]
         [--from-seq N] [--to-seq N] [--data]
                                     write the matching events as JSON lines
  timeline REFERRAL_ID               one referral's history, for a person to read
  verify [--public-key KEY|FILE]... [--checkpoints FILE]... [--nats-url URL] [--file FILE] [--partial]
                                     check the log's hashes and links (or a file written
                                     by replay --data); with public keys, every event's
                                     signature, and the log against the signed checkpoints
                                     (a file, the live stream); names the first break
  signing-key --out DIR [--name N]   make the key pair events and checkpoints are signed with
  checkpoint --nats-url URL          ask a spa-server to sign a checkpoint of the log now
  checkpoints --nats-url URL --nats-nkey AUDITOR_SEED [--out FILE]
                                     every signed checkpoint; --out adds them to an auditor's
                                     file and fails if ones kept there are gone
  access-log --referral ID | --patient NHS_NUMBER
                                     who read (or tried to read) a referral's or a patient's
                                     data, when, why and by which call (every page)
  demo                               register a sample borough's providers and submit
                                     referrals that exercise every pathway (idempotent;
                                     development mode: it acts as each provider and site)
  certs --out DIR [--host H,...] [--client ODS/ROLE[/USER] ...] [--days N]
                                     make a local CA (or use the one in DIR), a server
                                     certificate for the hosts and client certificates
                                     (ODS-ROLE.crt/.key), for demos, tests and small sites
  init --nats-url URL [--replicas N] [--duplicate-window D] [--lease-ttl D]
                                     create SPA's streams, lease bucket and router consumer
                                     on a NATS cluster, or bring them to these settings
                                     (never lowers replicas); spa-server and spa-worker only
                                     check them
  workers --nats-url URL             every worker: applied sequence, serving, a halted
                                     projection (sequence and reason), the last rebuild
  digest --nats-url URL              show a read model's digest and applied sequence
  rebuild --nats-url URL [--worker ID]
                                     rebuild every worker's read model (or one) from
                                     sequence 1 while it serves, and swap it in if the
                                     digests agree; reports progress, fails if any failed

The NATS commands (init, workers, digest, rebuild) connect as the admin identity:
--nats-nkey FILE or --nats-creds FILE (all-in-one: DATA_DIR/nats/admin.nk), and
--nats-ca FILE (--nats-cert, --nats-key) for a cluster with TLS; env SPA_NATS_NKEY,
SPA_NATS_CREDS, SPA_NATS_CA, SPA_NATS_CERT, SPA_NATS_KEY.

Every command that changes something sends a request id (--request-id, default a
new one; a failed command prints it). Sent again with the same id, a command that
took effect is answered as the first time and never applied twice.
`

func realMain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("spa-ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	addr := fs.String("addr", "127.0.0.1:50051", "spa-server gRPC address")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of each call")
	as := fs.String("as", "SPA/coordinator", "development mode only: ODS/ROLE[/USER] you act as (recorded on events and in the access log)")
	purpose := fs.String("purpose", "", "why you read patient data: "+strings.Join(spa.Purposes, ", ")+" (recorded in the access log; default audit for replay, timeline, verify and access-log, direct-care otherwise)")
	tlsCA := fs.String("tls-ca", "", "the CA certificate (PEM) the server's certificate is checked against; with --tls-cert and --tls-key: TLS 1.3 with your client certificate")
	tlsCert := fs.String("tls-cert", "", "your client certificate (PEM): it says who you are")
	tlsKey := fs.String("tls-key", "", "the key of --tls-cert (PEM)")
	if err := config.Parse(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	c := &ctl{timeout: *timeout, stdout: stdout, stderr: stderr, getenv: getenv}
	switch cmd {
	case "init":
		return c.initStreams(ctx, rest)
	case "workers":
		return c.workers(ctx, rest)
	case "digest":
		return c.digest(ctx, rest)
	case "rebuild":
		return c.rebuild(ctx, rest)
	case "certs":
		return c.certs(rest)
	case "signing-key":
		return c.signingKey(rest)
	case "checkpoint":
		return c.makeCheckpoint(ctx, rest)
	case "checkpoints":
		return c.checkpoints(ctx, rest)
	}
	creds := insecure.NewCredentials()
	if *tlsCA != "" || *tlsCert != "" || *tlsKey != "" {
		if *tlsCA == "" || *tlsCert == "" || *tlsKey == "" {
			return errors.New("TLS needs all three of --tls-ca, --tls-cert and --tls-key")
		}
		cfg, err := pki.ClientTLS(*tlsCA, *tlsCert, *tlsKey)
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(cfg)
	} else {
		c.dev = true
		var err error
		if c.as, err = identity.Parse(*as); err != nil {
			return fmt.Errorf("--as: %w", err)
		}
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds), grpc.WithDefaultServiceConfig(retryUnavailable))
	if err != nil {
		return fmt.Errorf("connect %s: %w", *addr, err)
	}
	defer conn.Close()
	c.client = spav1.NewReferralServiceClient(conn)
	c.providers = spav1.NewProviderServiceClient(conn)
	c.policies = spav1.NewPolicyServiceClient(conn)
	c.assignments = spav1.NewAssignmentServiceClient(conn)
	c.audit = spav1.NewAuditServiceClient(conn)
	if c.dev {
		ctx = stateIdentity(ctx, c.as)
	}
	if *purpose == "" {
		*purpose = "direct-care"
		if slices.Contains([]string{"replay", "timeline", "verify", "access-log"}, cmd) {
			*purpose = "audit"
		}
	}
	ctx = metadata.AppendToOutgoingContext(ctx, rpc.MetadataPurpose, *purpose)
	switch cmd {
	case "submit":
		return c.submit(ctx, rest)
	case "amend":
		return c.amend(ctx, rest)
	case "policies":
		return c.listPolicies(ctx, rest)
	case "policy":
		return c.switchPolicy(ctx, rest)
	case "get":
		return c.get(ctx, rest)
	case "board":
		return c.board(ctx, rest)
	case "demo":
		return c.demo(ctx, rest)
	case "providers":
		return c.listProviders(ctx, rest)
	case "assignments":
		return c.listAssignments(ctx, rest)
	case "capacity":
		return c.declareCapacity(ctx, rest)
	case "accept", "decline", "start", "complete":
		return c.answer(ctx, cmd, rest)
	case "left":
		return c.left(ctx, rest)
	case "replay":
		return c.replay(ctx, rest)
	case "timeline":
		return c.timeline(ctx, rest)
	case "verify":
		return c.verify(ctx, rest)
	case "access-log":
		return c.accessLog(ctx, rest)
	case "watch":
		return c.watchFeed(ctx, rest)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

// retryUnavailable is the gRPC service config spa-ctl dials with: a call
// answered UNAVAILABLE (the event log or the read models are failing
// over) is sent again, the same request, with backoff, within the call's
// deadline. Every call is safe to send twice: queries change nothing, and
// every command carries a request id (a submission its own), so a retry
// of one that took effect is answered as the first time.
const retryUnavailable = `{"methodConfig": [{"name": [
    {"service": "spa.v1.ReferralService"},
    {"service": "spa.v1.ProviderService"},
    {"service": "spa.v1.AssignmentService"},
    {"service": "spa.v1.AuditService"},
    {"service": "spa.v1.PolicyService"}
  ], "retryPolicy": {
  "maxAttempts": 5, "initialBackoff": "0.25s", "maxBackoff": "4s", "backoffMultiplier": 2,
  "retryableStatusCodes": ["UNAVAILABLE"]}}]}`

// requestIDFlag adds --request-id to a command's flags.
func requestIDFlag(fs *flag.FlagSet) *string {
	return fs.String("request-id", "", "the command's idempotency key; send the same again to retry safely (default: a new one)")
}

// command runs one command with request id id (a new one when id is
// empty), under the configured deadline. When it fails, the error names
// the id, and again (flags that make the request the same, such as an
// as-of the command chose): sending the command again with them never
// applies it twice.
func (c *ctl) command(ctx context.Context, id string, f func(ctx context.Context, requestID string) error, again ...string) error {
	if id == "" {
		id = "ctl-" + rand.Text()
	}
	err := c.call(ctx, func(ctx context.Context) error { return f(ctx, id) })
	if err != nil {
		return fmt.Errorf("%w (to retry, send it again with --request-id %s)", err, strings.Join(append([]string{id}, again...), " "))
	}
	return nil
}

// call runs one RPC with the configured deadline.
func (c *ctl) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return describe(f(ctx))
}

// actingAs returns ctx for calls made as id: in the development mode the
// calls state it; with TLS the certificate decides and id is not used.
func (c *ctl) actingAs(ctx context.Context, id identity.Identity) context.Context {
	if !c.dev {
		return ctx
	}
	return stateIdentity(ctx, id)
}

// stateIdentity puts id in ctx's outgoing metadata, as the development
// mode reads it.
func stateIdentity(ctx context.Context, id identity.Identity) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(rpc.MetadataActorODS, id.ODS)
	md.Set(rpc.MetadataActorRole, string(id.Role))
	if id.User != "" {
		md.Set(rpc.MetadataActorUser, id.User)
	} else {
		md.Delete(rpc.MetadataActorUser)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// pages calls fetch with each page token in turn, from the first page,
// each call under the configured deadline, until a page has no next
// token.
func (c *ctl) pages(ctx context.Context, fetch func(ctx context.Context, token string) (next string, err error)) error {
	token := ""
	for {
		var next string
		if err := c.call(ctx, func(ctx context.Context) (err error) {
			next, err = fetch(ctx, token)
			return err
		}); err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

func (c *ctl) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("spa-ctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	return fs
}
