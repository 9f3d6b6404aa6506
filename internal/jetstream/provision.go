package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/backoff"
)

// The other JetStream assets SPA uses besides its two streams. Persisted:
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
	// Replicas of both streams, the lease bucket and the router's
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

// Setup defaults.
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
	s = s.withDefaults()
	var errs []error
	if s.Replicas < 1 || s.Replicas > MaxReplicas {
		errs = append(errs, fmt.Errorf("replicas %d: must be 1-%d", s.Replicas, MaxReplicas))
	}
	if s.DuplicateWindow < 0 {
		errs = append(errs, fmt.Errorf("duplicate window %s: must be positive", s.DuplicateWindow))
	}
	if s.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("lease TTL %s: must be at least 1s", s.LeaseTTL))
	}
	return errors.Join(errs...)
}

// eventsConfig is the event stream as SPA needs it: every event kept on
// file, delete and purge denied, atomic batches allowed.
func eventsConfig(s Setup) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "SPA domain events; one subject per aggregate; append-only",
		Subjects:    Subjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    s.Replicas,
		Duplicates:  s.DuplicateWindow,
		MaxMsgs:     -1, MaxBytes: -1, MaxMsgsPerSubject: -1,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
		// Offers reserve capacity on the provider's subject in the same
		// atomic batch as the offer on the referral's.
		AllowAtomicPublish: true,
	}
}

// accessConfig is the access log stream: every record kept on file,
// delete and purge denied.
func accessConfig(s Setup) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        AccessStreamName,
		Description: "SPA access log: who read which referral's data, when and why",
		Subjects:    []string{accessSubject + "*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    s.Replicas,
		MaxMsgs:     -1, MaxBytes: -1, MaxMsgsPerSubject: -1,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
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
		Durable:       RouterConsumer,
		Description:   "SPA router, shared by every worker",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      s.Replicas,
	}
}

// Provision creates SPA's JetStream assets (the event stream, the access
// log stream, the scheduler's lease bucket and the router's consumer), or
// brings existing ones to setup. It is the one place that creates or
// changes them: spa-ctl init on a cluster, spa-server at start in the
// all-in-one mode; every other process only looks them up (Open). It
// never lowers an asset's replicas: asked to, it fails and changes
// nothing. It is idempotent, and returns one line per asset saying what
// it did.
func Provision(ctx context.Context, nc *nats.Conn, setup Setup) ([]string, error) {
	if err := setup.Validate(); err != nil {
		return nil, err
	}
	setup = setup.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// Check every asset before changing any, so a refusal changes nothing.
	lease := "KV_" + LeaseBucket
	for _, name := range []string{StreamName, AccessStreamName, lease} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("jetstream: look up %s: %w", name, err)
		}
		if have := s.CachedInfo().Config.Replicas; have > setup.Replicas {
			return nil, fmt.Errorf("jetstream: %s has %d replicas; provisioning with %d would lower them: refused (lower them with the nats CLI if you mean to)", name, have, setup.Replicas)
		}
	}
	var report []string
	for _, want := range []jetstream.StreamConfig{eventsConfig(setup), accessConfig(setup)} {
		line, err := provisionStream(ctx, js, want)
		if err != nil {
			return report, err
		}
		report = append(report, line)
	}
	before, err := js.Stream(ctx, lease)
	if _, err := js.CreateOrUpdateKeyValue(ctx, leaseConfig(setup)); err != nil {
		return report, fmt.Errorf("jetstream: provision %s: %w", LeaseBucket, err)
	}
	verb := "created"
	if err == nil {
		verb = "unchanged"
		if c := before.CachedInfo().Config; c.Replicas != setup.Replicas || c.MaxAge != setup.LeaseTTL {
			verb = "updated"
		}
	}
	report = append(report, fmt.Sprintf("bucket %s %s: replicas %d, lease TTL %s", LeaseBucket, verb, setup.Replicas, setup.LeaseTTL))

	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		return report, fmt.Errorf("jetstream: look up %s: %w", StreamName, err)
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, routerConfig(setup)); err != nil {
		return report, fmt.Errorf("jetstream: provision consumer %s: %w", RouterConsumer, err)
	}
	report = append(report, fmt.Sprintf("consumer %s on %s: explicit ack, replicas %d", RouterConsumer, StreamName, setup.Replicas))
	return report, nil
}

// provisionStream creates want, or updates the stream to it keeping any
// setting SPA does not manage (placement, mirrors) as the operator left
// it.
func provisionStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (string, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, want); err != nil {
			return "", fmt.Errorf("jetstream: create stream %s: %w", want.Name, err)
		}
		return "stream " + want.Name + " created: " + describeStream(want), nil
	}
	if err != nil {
		return "", fmt.Errorf("jetstream: look up %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	next := have
	next.Description, next.Subjects, next.Retention, next.Replicas = want.Description, want.Subjects, want.Retention, want.Replicas
	next.Duplicates, next.MaxMsgs, next.MaxBytes, next.MaxMsgsPerSubject, next.MaxAge = want.Duplicates, want.MaxMsgs, want.MaxBytes, want.MaxMsgsPerSubject, want.MaxAge
	next.DenyDelete, next.DenyPurge, next.AllowDirect, next.AllowAtomicPublish = want.DenyDelete, want.DenyPurge, want.AllowDirect, want.AllowAtomicPublish
	if have.Storage != want.Storage {
		return "", fmt.Errorf("jetstream: stream %s is on %s storage; SPA needs file storage, which an existing stream cannot change to", want.Name, have.Storage)
	}
	if want.Duplicates == 0 {
		next.Duplicates = have.Duplicates
	}
	if sameManaged(have, next) {
		return "stream " + want.Name + " unchanged: " + describeStream(have), nil
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
	if c.Storage != jetstream.FileStorage {
		problems = append(problems, "memory storage")
	}
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
// waiting with backoff while it does not exist or JetStream cannot
// answer; a weaker stream fails at once.
func lookupStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, req Requirements) (jetstream.Stream, error) {
	if req.MinReplicas == 0 {
		req.MinReplicas = 1
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &backoff.Retrier{Gate: backoff.NewGate("waiting for stream "+want.Name, log), Max: 2 * time.Second}
	var stream jetstream.Stream
	err := backoff.Retry(ctx, r, Retryable, func(ctx context.Context) error {
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return &retryableError{fmt.Errorf("stream %s: %w", want.Name, ErrNotProvisioned)}
		}
		if err != nil {
			return fmt.Errorf("jetstream: look up %s: %w", want.Name, err)
		}
		if err := checkStream(s.CachedInfo(), want, req.MinReplicas); err != nil {
			return err
		}
		stream = s
		return nil
	})
	return stream, err
}

// retryableError marks an error as one that passes by waiting.
type retryableError struct{ error }

func (e *retryableError) Unwrap() error { return e.error }

// RouterConsumer returns the routers' shared consumer once it exists,
// waiting for it (and for JetStream) with backoff, like Open.
func (s *Store) RouterConsumer(ctx context.Context) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	r := &backoff.Retrier{Gate: backoff.NewGate("waiting for consumer "+RouterConsumer, s.log), Max: 2 * time.Second}
	err := backoff.Retry(ctx, r, Retryable, func(ctx context.Context) error {
		c, err := s.stream.Consumer(ctx, RouterConsumer)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return &retryableError{fmt.Errorf("consumer %s: %w", RouterConsumer, ErrNotProvisioned)}
		}
		if err != nil {
			return fmt.Errorf("jetstream: look up consumer %s: %w", RouterConsumer, err)
		}
		cons = c
		return nil
	})
	return cons, err
}

// LeaseBucket returns the scheduler's lease bucket once it exists,
// waiting for it (and for JetStream) with backoff, like Open.
func (s *Store) LeaseBucket(ctx context.Context) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	r := &backoff.Retrier{Gate: backoff.NewGate("waiting for bucket "+LeaseBucket, s.log), Max: 2 * time.Second}
	err := backoff.Retry(ctx, r, Retryable, func(ctx context.Context) error {
		b, err := s.js.KeyValue(ctx, LeaseBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return &retryableError{fmt.Errorf("bucket %s: %w", LeaseBucket, ErrNotProvisioned)}
		}
		if err != nil {
			return fmt.Errorf("jetstream: look up bucket %s: %w", LeaseBucket, err)
		}
		kv = b
		return nil
	})
	return kv, err
}
