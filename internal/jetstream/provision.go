package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/backoff"
)

// The other JetStream assets SPA uses besides its streams. Persisted:
// never rename.
const (
	// LeaseBucket is the key-value bucket of the clock scheduler's lease.
	LeaseBucket = "spa_scheduler"
	// RouterConsumer is the durable consumer every worker's router shares,
	// so that each event prompts one router.
	RouterConsumer = "spa-router"
)

// Setup is what the owner of SPA's JetStream assets states about them.
type Setup struct {
	// Replicas of every stream, the lease bucket and the router's
	// consumer: 1 on one server, 3 on a cluster.
	Replicas int
	// DuplicateWindow is how long the event stream remembers Nats-Msg-Id
	// values, for transport retries (business idempotency does not rely
	// on it). Default 2 minutes.
	DuplicateWindow time.Duration
	// LeaseTTL is how long the scheduler's lease outlives a holder that
	// stopped renewing it. Default 15 seconds.
	LeaseTTL time.Duration
}

// Setup defaults, for what a setup leaves at zero when the asset is
// created; an existing asset keeps its value.
const (
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultLeaseTTL        = 15 * time.Second
	MaxReplicas            = 5
)

func (s Setup) withDefaults() Setup {
	if s.Replicas == 0 {
		s.Replicas = 1
	}
	if s.DuplicateWindow == 0 {
		s.DuplicateWindow = DefaultDuplicateWindow
	}
	if s.LeaseTTL == 0 {
		s.LeaseTTL = DefaultLeaseTTL
	}
	return s
}

// Validate checks a setup.
func (s Setup) Validate() error {
	var errs []error
	if s.Replicas < 0 || s.Replicas > MaxReplicas {
		errs = append(errs, fmt.Errorf("replicas %d: must be 1-%d", s.Replicas, MaxReplicas))
	}
	if s.DuplicateWindow < 0 {
		errs = append(errs, fmt.Errorf("duplicate window %s: must be positive", s.DuplicateWindow))
	}
	if s.LeaseTTL != 0 && s.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("lease TTL %s: must be at least 1s", s.LeaseTTL))
	}
	return errors.Join(errs...)
}

// keptStream is a stream that keeps every message on file, delete and
// purge denied: what each of SPA's streams is.
func keptStream(name, description string, subjects []string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: name, Description: description, Subjects: subjects,
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Replicas: replicas,
		MaxMsgs: -1, MaxBytes: -1, MaxMsgsPerSubject: -1,
		DenyDelete: true, DenyPurge: true, AllowDirect: true,
	}
}

// eventsConfig is the event stream as SPA needs it: a kept stream with a
// duplicate window, and atomic batches allowed (offers reserve capacity on
// the provider's subject in the same batch as the offer on the
// referral's).
func eventsConfig(s Setup) jetstream.StreamConfig {
	c := keptStream(StreamName, "SPA domain events; one subject per aggregate; append-only", Subjects, s.Replicas)
	c.Duplicates, c.AllowAtomicPublish = s.DuplicateWindow, true
	return c
}

// accessConfig is the access log stream, a kept stream.
func accessConfig(s Setup) jetstream.StreamConfig {
	return keptStream(AccessStreamName, "SPA access log: who read which referral's data, when and why", AccessSubjects, s.Replicas)
}

func leaseConfig(s Setup) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      LeaseBucket,
		Description: "the SPA clock scheduler's lease",
		TTL:         s.LeaseTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
	}
}

// routerConfig is the router's shared consumer: explicit acks, so that an
// event is done only when a router has taken its steps; one that fails is
// redelivered.
func routerConfig(s Setup) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:     RouterConsumer,
		Description: "SPA router, shared by every worker",
		AckPolicy:   jetstream.AckExplicitPolicy,
		// A router tells the server every few seconds that a prompt it
		// holds is in progress; one that died has its prompts redelivered
		// after this.
		AckWait:       10 * time.Second,
		MaxAckPending: 1000,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      s.Replicas,
	}
}

// Provision creates SPA's JetStream assets (the event stream, the access
// log stream, the checkpoint stream, the scheduler's lease bucket, the
// snapshots' bucket and the router's consumer), or
// brings existing ones to setup. It is the one place that creates or
// changes them: spa-ctl init on a cluster, spa-server at start in the
// all-in-one mode; every other process only looks them up (Open). A
// duplicate window or lease TTL left at zero keeps an existing asset's
// value (the default for a new one). It checks every asset before it
// changes any, and refuses without changing anything to lower replicas or
// to keep a stream SPA cannot trust (memory storage, per-message TTLs,
// sealed, a mirror). It is idempotent, and returns one line per asset
// saying what it did. Projection consumers left by earlier versions
// (durable, one per worker) are removed.
func Provision(ctx context.Context, nc *nats.Conn, setup Setup) ([]string, error) {
	if err := setup.Validate(); err != nil {
		return nil, err
	}
	if setup.Replicas == 0 {
		setup.Replicas = 1
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	lease, state := "KV_"+LeaseBucket, "KV_"+StateBucket
	existing := map[string]*jetstream.StreamConfig{}
	for _, name := range []string{StreamName, AccessStreamName, CheckpointStreamName, lease, state} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("jetstream: look up %s: %w", name, err)
		}
		c := s.CachedInfo().Config
		existing[name] = &c
		var problems []string
		if c.Replicas > setup.Replicas {
			problems = append(problems, fmt.Sprintf("it has %d replicas and provisioning with %d would lower them (lower them with the nats CLI if you mean to)", c.Replicas, setup.Replicas))
		}
		if name != lease && name != state {
			problems = append(problems, untrusted(c)...)
		}
		if len(problems) > 0 {
			return nil, fmt.Errorf("jetstream: %s: refused, nothing changed: %s", name, strings.Join(problems, "; "))
		}
	}
	keep := func(name string) Setup {
		s := setup
		if c := existing[name]; c != nil && s.DuplicateWindow == 0 {
			s.DuplicateWindow = c.Duplicates
		}
		if c := existing[name]; c != nil && s.LeaseTTL == 0 {
			s.LeaseTTL = c.MaxAge
		}
		return s.withDefaults()
	}
	var report []string
	for _, want := range []jetstream.StreamConfig{eventsConfig(keep(StreamName)), accessConfig(keep(AccessStreamName)), checkpointsConfig(keep(CheckpointStreamName))} {
		line, err := provisionStream(ctx, js, existing[want.Name], want)
		if err != nil {
			return report, err
		}
		report = append(report, line)
	}

	kvc := leaseConfig(keep(lease))
	verb := "created"
	if c := existing[lease]; c != nil {
		kvc.Placement = c.Placement
		verb = "unchanged"
		if c.Replicas != kvc.Replicas || c.MaxAge != kvc.TTL {
			verb = "updated"
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, kvc); err != nil {
		return report, fmt.Errorf("jetstream: provision %s: %w", LeaseBucket, err)
	}
	report = append(report, fmt.Sprintf("bucket %s %s: replicas %d, lease TTL %s", LeaseBucket, verb, kvc.Replicas, kvc.TTL))

	line, err := provisionStateBucket(ctx, js, existing[state], setup)
	if err != nil {
		return report, err
	}
	report = append(report, line)

	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		return report, fmt.Errorf("jetstream: look up %s: %w", StreamName, err)
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, routerConfig(setup)); err != nil {
		return report, fmt.Errorf("jetstream: provision consumer %s: %w", RouterConsumer, err)
	}
	report = append(report, fmt.Sprintf("consumer %s on %s: explicit ack, replicas %d", RouterConsumer, StreamName, setup.Replicas))

	var legacy []string
	for c := range stream.ListConsumers(ctx).Info() {
		if c.Config.Description == legacyProjectionConsumer {
			legacy = append(legacy, c.Name)
		}
	}
	for _, name := range legacy {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return report, fmt.Errorf("jetstream: remove old projection consumer %s: %w", name, err)
		}
	}
	if len(legacy) > 0 {
		report = append(report, fmt.Sprintf("removed %d projection consumers left by an earlier version: %s", len(legacy), strings.Join(legacy, ", ")))
	}
	return report, nil
}

// legacyProjectionConsumer describes the durable per-worker projection
// consumers of versions before ADR 11.
const legacyProjectionConsumer = "SPA read model projection"

// untrusted lists what makes an existing stream unfit to hold SPA's log,
// beyond what provisioning can change.
func untrusted(c jetstream.StreamConfig) []string {
	var problems []string
	if c.Storage != jetstream.FileStorage {
		problems = append(problems, "it is on memory storage, which an existing stream cannot change")
	}
	if c.AllowMsgTTL {
		problems = append(problems, "it allows per-message TTLs (events could expire), which cannot be turned off")
	}
	if c.PersistMode == jetstream.AsyncPersistMode {
		problems = append(problems, "it acknowledges writes before they are stored (async persist mode), which cannot be changed")
	}
	if c.Sealed || c.NoAck || c.Mirror != nil || len(c.Sources) > 0 || c.SubjectTransform != nil || c.RePublish != nil {
		problems = append(problems, "it is sealed, unacknowledged, a mirror, sourced, or transforms or republishes subjects")
	}
	if c.AllowMsgSchedules || c.AllowRollup || c.AllowMsgCounter {
		problems = append(problems, "it allows message schedules, roll-ups or counters, which could replace events")
	}
	if c.MaxMsgSize > 0 && c.MaxMsgSize < minMsgSize {
		problems = append(problems, fmt.Sprintf("it refuses messages over %d bytes (SPA needs %d)", c.MaxMsgSize, minMsgSize))
	}
	return problems
}

// minMsgSize is the smallest message size limit a stream may have: an
// event or an access record is far smaller.
const minMsgSize = 64 << 10

// provisionStream creates want, or updates have to it keeping any setting
// SPA does not manage (placement, metadata) as the operator left it.
func provisionStream(ctx context.Context, js jetstream.JetStream, have *jetstream.StreamConfig, want jetstream.StreamConfig) (string, error) {
	if have == nil {
		if _, err := js.CreateStream(ctx, want); err != nil {
			return "", fmt.Errorf("jetstream: create stream %s: %w", want.Name, err)
		}
		return "stream " + want.Name + " created: " + describeStream(want), nil
	}
	next := *have
	next.Description, next.Subjects, next.Retention, next.Replicas = want.Description, want.Subjects, want.Retention, want.Replicas
	next.Duplicates, next.MaxMsgs, next.MaxBytes, next.MaxMsgsPerSubject, next.MaxAge = want.Duplicates, want.MaxMsgs, want.MaxBytes, want.MaxMsgsPerSubject, want.MaxAge
	next.DenyDelete, next.DenyPurge, next.AllowDirect, next.AllowAtomicPublish = want.DenyDelete, want.DenyPurge, want.AllowDirect, want.AllowAtomicPublish
	if want.Duplicates == 0 {
		next.Duplicates = have.Duplicates
	}
	if sameManaged(*have, next) {
		return "stream " + want.Name + " unchanged: " + describeStream(*have), nil
	}
	if _, err := js.UpdateStream(ctx, next); err != nil {
		return "", fmt.Errorf("jetstream: update stream %s: %w", want.Name, err)
	}
	return "stream " + want.Name + " updated: " + describeStream(next), nil
}

func sameManaged(a, b jetstream.StreamConfig) bool {
	return a.Description == b.Description && slices.Equal(a.Subjects, b.Subjects) && a.Retention == b.Retention &&
		a.Replicas == b.Replicas && a.Duplicates == b.Duplicates && a.MaxMsgs == b.MaxMsgs && a.MaxBytes == b.MaxBytes &&
		a.MaxMsgsPerSubject == b.MaxMsgsPerSubject && a.MaxAge == b.MaxAge && a.DenyDelete == b.DenyDelete &&
		a.DenyPurge == b.DenyPurge && a.AllowDirect == b.AllowDirect && a.AllowAtomicPublish == b.AllowAtomicPublish
}

func describeStream(c jetstream.StreamConfig) string {
	s := fmt.Sprintf("replicas %d, %s storage, keeps every message", c.Replicas, c.Storage)
	if c.Duplicates > 0 && c.Name == StreamName {
		s += fmt.Sprintf(", duplicate window %s", c.Duplicates)
	}
	if c.DenyDelete && c.DenyPurge {
		s += ", delete and purge denied"
	}
	return s
}

// Requirements are what a process that uses SPA's JetStream assets needs
// of them; it checks them at start and refuses to run on weaker ones.
type Requirements struct {
	// MinReplicas is the fewest replicas the streams may have (default 1).
	MinReplicas int
	// Log is told, once, when the process has to wait for the assets.
	Log *slog.Logger
	// Skip are the sequences of undecodable events an operator decided to
	// step over (--skip-undecodable): loading an aggregate leaves them out.
	Skip map[uint64]bool
	// Signer signs every event the store appends (ADR 26); nil appends
	// unsigned events, which verify reports as forged: for tests and
	// for processes that only read.
	Signer Signer
}

// ErrNotProvisioned is returned (wrapped) while an asset does not exist
// yet. It is retryable: Open and the workers wait for it.
var ErrNotProvisioned = errors.New("not created yet: run `spa-ctl init` against this NATS cluster, or start spa-server in the all-in-one mode")

// ErrWeak is returned (wrapped) when an asset exists but is weaker than
// SPA needs or the process was asked to require: fewer replicas, memory
// storage, delete or purge allowed, or limits that drop events. Waiting
// does not help.
var ErrWeak = errors.New("weaker than required")

// checkStream checks a stream against what SPA needs of it.
func checkStream(info *jetstream.StreamInfo, want jetstream.StreamConfig, minReplicas int) error {
	c := info.Config
	var problems []string
	if c.Replicas < minReplicas {
		problems = append(problems, fmt.Sprintf("%d replicas, fewer than the %d required", c.Replicas, minReplicas))
	}
	problems = append(problems, untrusted(c)...)
	if !c.DenyDelete || !c.DenyPurge {
		problems = append(problems, "delete or purge allowed")
	}
	if c.Retention != jetstream.LimitsPolicy || c.MaxAge > 0 || c.MaxMsgs > 0 || c.MaxBytes > 0 || c.MaxMsgsPerSubject > 0 {
		problems = append(problems, "limits or a retention policy that drop messages")
	}
	if want.AllowAtomicPublish && !c.AllowAtomicPublish {
		problems = append(problems, "atomic batch publish not allowed")
	}
	for _, subj := range want.Subjects {
		if !slices.Contains(c.Subjects, subj) {
			problems = append(problems, "does not capture "+subj)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("stream %s: %w: %v (run `spa-ctl init` with the replicas you need)", c.Name, ErrWeak, problems)
	}
	return nil
}

// lookupStream returns the stream once it exists and passes its check,
// waiting like awaitAsset; a weaker stream fails at once.
func lookupStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, req Requirements) (jetstream.Stream, error) {
	if req.MinReplicas == 0 {
		req.MinReplicas = 1
	}
	return awaitAsset(ctx, req.Log, "stream "+want.Name, jetstream.ErrStreamNotFound, func(ctx context.Context) (jetstream.Stream, error) {
		s, err := js.Stream(ctx, want.Name)
		if err != nil {
			return nil, err
		}
		return s, checkStream(s.CachedInfo(), want, req.MinReplicas)
	})
}

// awaitAsset looks an asset up with lookup until it is found, waiting
// with backoff (and logging once) while lookup answers notFound or
// JetStream cannot answer; any other error is returned at once.
func awaitAsset[T any](ctx context.Context, log *slog.Logger, what string, notFound error, lookup func(context.Context) (T, error)) (T, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var asset T
	r := &backoff.Retrier{Gate: backoff.NewGate("looking up "+what, log), Max: 2 * time.Second}
	err := backoff.Retry(ctx, r, Retryable, func(ctx context.Context) error {
		a, err := lookup(ctx)
		switch {
		case errors.Is(err, notFound):
			return &retryableError{fmt.Errorf("%s: %w", what, ErrNotProvisioned)}
		case err != nil:
			return fmt.Errorf("jetstream: %s: %w", what, err)
		}
		asset = a
		return nil
	})
	return asset, err
}

// retryableError marks an error as one that passes by waiting.
type retryableError struct{ error }

func (e *retryableError) Unwrap() error { return e.error }

// RouterConsumer returns the routers' shared consumer once it exists,
// waiting for it (and for JetStream) like Open; one with fewer replicas
// than the store requires, or without explicit acks, is ErrWeak.
func (s *Store) RouterConsumer(ctx context.Context) (jetstream.Consumer, error) {
	return awaitAsset(ctx, s.log, "consumer "+RouterConsumer, jetstream.ErrConsumerNotFound, func(ctx context.Context) (jetstream.Consumer, error) {
		c, err := s.stream.Consumer(ctx, RouterConsumer)
		if err != nil {
			return nil, err
		}
		cfg := c.CachedInfo().Config
		if cfg.Replicas != 0 && cfg.Replicas < s.minReplicas || cfg.AckPolicy != jetstream.AckExplicitPolicy {
			return nil, fmt.Errorf("consumer %s: %w: %d replicas (%d required), %s acks (run `spa-ctl init` with the replicas you need)",
				RouterConsumer, ErrWeak, cfg.Replicas, s.minReplicas, cfg.AckPolicy)
		}
		return c, nil
	})
}

// LeaseBucket returns the scheduler's lease bucket once it exists,
// waiting for it (and for JetStream) like Open.
func (s *Store) LeaseBucket(ctx context.Context) (jetstream.KeyValue, error) {
	return awaitAsset(ctx, s.log, "bucket "+LeaseBucket, jetstream.ErrBucketNotFound, func(ctx context.Context) (jetstream.KeyValue, error) {
		return s.js.KeyValue(ctx, LeaseBucket)
	})
}
