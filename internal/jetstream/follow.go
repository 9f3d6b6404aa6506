package jetstream

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/backoff"
	"spa/internal/spa"
)

// FollowOptions selects what Follow reads.
type FollowOptions struct {
	// From is the first sequence to read; 0 reads from the start of the
	// log (or from FromTime).
	From uint64
	// FromTime, when From is 0, starts at the first event stored at or
	// after it.
	FromTime time.Time
	// Subjects filters the subjects read; empty reads every subject.
	Subjects []string
	// Batch caps the events one call of fn gets (default 1000).
	Batch int
	// Tick, if positive, also calls fn with an empty batch every Tick,
	// whatever arrives (for heartbeats).
	Tick time.Duration
	// What names the reader in the log ("projection", "watch").
	What string
}

// Batch is what one call of Follow's fn gets. An empty batch with
// CaughtUp false is a tick.
type Batch struct {
	// Events are the next events, in log order, with nothing between
	// them, or after the previous batch's last one, that matches the
	// filter.
	Events []spa.StoredEvent
	// CaughtUp is true when, as the last of Events was delivered (or, for
	// an empty first batch, when reading started), no further event
	// matched: the reader has read the whole log as it then stood.
	CaughtUp bool
}

// ErrStop, returned by Follow's fn, ends Follow without an error.
var ErrStop = errors.New("jetstream: stop following")

// followBuffer is how many delivered messages wait for fn at most.
const followBuffer = 1000

// Follow calls fn with the events from opts.From on, in log order, in
// batches of whatever has arrived (so batches grow with the load), until
// fn returns an error or ctx ends; it returns fn's error (nil for
// ErrStop) or ctx's.
//
// It never skips an event: it reads with an ordered consumer, which
// checks that deliveries follow each other and, after a gap, a lost
// consumer or a missed heartbeat, starts again after the last event it
// delivered; after any other failure that passes (a leader election, a
// lost connection) Follow itself starts again there, with backoff, and
// logs the failure and the recovery once each. The consumer is ephemeral
// and removed from the server when Follow returns.
func (s *Store) Follow(ctx context.Context, opts FollowOptions, fn func(Batch) error) error {
	return s.followStream(ctx, StreamName, opts, fn)
}

// followStream is Follow on any of SPA's streams.
func (s *Store) followStream(ctx context.Context, stream string, opts FollowOptions, fn func(Batch) error) error {
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.What == "" {
		opts.What = "reading the event log"
	}
	r := backoff.New(opts.What, s.log)
	var last uint64 // the last sequence given to fn
	for {
		from := opts
		if last > 0 {
			from.From, from.FromTime = last+1, time.Time{}
		}
		err := s.follow(ctx, stream, from, func(b Batch) error {
			if n := len(b.Events); n > 0 {
				last = b.Events[n-1].Sequence
				r.Succeeded()
			} else if b.CaughtUp {
				r.Succeeded()
			}
			return fn(b)
		})
		switch {
		case errors.Is(err, ErrStop):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, new(*followError)):
			if werr := r.Failed(ctx, err); werr != nil {
				return ctx.Err()
			}
		default:
			return err
		}
	}
}

// followError marks a failure of the reading itself (not of fn), which
// Follow retries.
type followError struct{ error }

func (e *followError) Unwrap() error { return e.error }

// follow reads with one ordered consumer until fn fails, ctx ends or the
// consumer fails (a *followError).
func (s *Store) follow(ctx context.Context, stream string, opts FollowOptions, fn func(Batch) error) error {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: opts.Subjects,
		// A consumer left behind by a killed process goes soon.
		InactiveThreshold: 30 * time.Second,
	}
	switch {
	case opts.From > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opts.From
	case !opts.FromTime.IsZero():
		t := opts.FromTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := s.js.OrderedConsumer(cctx, stream, cfg)
	cancel()
	if err != nil {
		return &followError{fmt.Errorf("create ordered consumer: %w", err)}
	}
	defer s.deleteConsumer(ctx, stream, cons)
	it, err := cons.Messages(jetstream.PullMaxMessages(min(opts.Batch, followBuffer)))
	if err != nil {
		return &followError{err}
	}

	msgs := make(chan jetstream.Msg, followBuffer)
	errs := make(chan error, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			msg, err := it.Next()
			if err != nil {
				errs <- err
				return
			}
			select {
			case msgs <- msg:
			case <-done:
				return
			}
		}
	}()
	defer func() {
		close(done)
		it.Stop()
		wg.Wait()
	}()

	if cons.CachedInfo().NumPending == 0 {
		if err := fn(Batch{CaughtUp: true}); err != nil {
			return err
		}
	}
	var tick <-chan time.Time
	if opts.Tick > 0 {
		t := time.NewTicker(opts.Tick)
		defer t.Stop()
		tick = t.C
	}
	batch := make([]spa.StoredEvent, 0, opts.Batch)
	for {
		var msg jetstream.Msg
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return ctx.Err()
			}
			return &followError{err}
		case <-tick:
			if err := fn(Batch{}); err != nil {
				return err
			}
			continue
		case msg = <-msgs:
		}
		batch = batch[:0]
		caughtUp := false
		for msg != nil {
			e, pending, err := storedOf(msg)
			if err != nil {
				return &followError{err}
			}
			batch = append(batch, e)
			caughtUp = pending == 0
			msg = nil
			if len(batch) < opts.Batch {
				select {
				case msg = <-msgs:
				default:
				}
			}
		}
		if err := fn(Batch{Events: batch, CaughtUp: caughtUp}); err != nil {
			return err
		}
	}
}

// deleteConsumer removes an ordered consumer from the server at once,
// rather than after its inactivity threshold.
func (s *Store) deleteConsumer(ctx context.Context, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = s.js.DeleteConsumer(dctx, stream, info.Name)
}

// storedOf returns a delivered message as a stored event, and how many
// matching messages were still pending after it.
func storedOf(msg jetstream.Msg) (spa.StoredEvent, uint64, error) {
	md, err := msg.Metadata()
	if err != nil {
		return spa.StoredEvent{}, 0, fmt.Errorf("message metadata: %w", err)
	}
	return storedEvent(md.Sequence.Stream, msg.Subject(), md.Timestamp, msg.Headers(), msg.Data()), md.NumPending, nil
}

// storedEvent returns a stored message, its headers read, as a stored
// event.
func storedEvent(seq uint64, subject string, at time.Time, h nats.Header, data []byte) spa.StoredEvent {
	hash, _ := hex.DecodeString(h.Get(HeaderHash))
	return spa.StoredEvent{
		Sequence: seq, Subject: subject, Time: at,
		Type: h.Get(HeaderEventType), Provider: h.Get(HeaderProvider), Data: data, Hash: hash,
		Signature: h.Get(HeaderSignature),
	}
}
