package jetstream

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/spa"
)

// Replay calls fn for every stored event matching f, in log order, up to
// the log's end when Replay started (or f.ToSeq). It reads with an ordered
// consumer: nothing is left on the server when it returns.
func (s *Store) Replay(ctx context.Context, f spa.EventFilter, fn func(spa.StoredEvent) error) error {
	end, err := s.LastSequence(ctx)
	if err != nil {
		return err
	}
	if f.ToSeq > 0 && f.ToSeq < end {
		end = f.ToSeq
	}
	if end == 0 || f.FromSeq > end {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{}
	switch {
	case f.ReferralID != "":
		cfg.FilterSubjects = []string{SubjectOf(spa.AggregateReferral, f.ReferralID)}
	case f.Provider != "":
		cfg.FilterSubjects = []string{SubjectOf(spa.AggregateProvider, f.Provider), SubjectOf(spa.AggregateReferral, "*")}
	}
	switch {
	case f.FromSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f.FromSeq
	case !f.FromTime.IsZero():
		t := f.FromTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cons, err := s.js.OrderedConsumer(ctx, StreamName, cfg)
	if err != nil {
		return fmt.Errorf("jetstream: replay: %w", err)
	}
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("jetstream: replay: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			raw, err := rawOf(msg)
			if err != nil {
				return err
			}
			if raw.Sequence > end || !f.ToTime.IsZero() && !raw.Time.Before(f.ToTime) {
				return nil
			}
			if f.Provider != "" && raw.Provider != f.Provider || len(f.Types) > 0 && !slices.Contains(f.Types, raw.Type) {
				continue
			}
			if err := fn(raw); err != nil {
				return err
			}
			if raw.Sequence == end {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("jetstream: replay: %w", err)
		}
		if n == 0 || ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func rawOf(msg jetstream.Msg) (spa.StoredEvent, error) {
	md, err := msg.Metadata()
	if err != nil {
		return spa.StoredEvent{}, fmt.Errorf("jetstream: message metadata: %w", err)
	}
	h := msg.Headers()
	hash, _ := hex.DecodeString(h.Get(HeaderHash))
	return spa.StoredEvent{
		Sequence: md.Sequence.Stream, Subject: msg.Subject(), Time: md.Timestamp,
		Type: h.Get(HeaderEventType), Provider: h.Get(HeaderProvider), Data: msg.Data(), Hash: hash,
	}, nil
}

// Watch calls fn for every event on referral subjects addressed to
// provider that comes after sequence after, as it is appended, until ctx
// ends or fn fails; every interval without such an event, fn is called with
// an empty event whose Sequence is the last one seen (a heartbeat that moves
// the cursor on). It reads with an ordered consumer.
func (s *Store) Watch(ctx context.Context, provider string, after uint64, interval time.Duration, fn func(spa.StoredEvent) error) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{SubjectOf(spa.AggregateReferral, "*")}}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := s.js.OrderedConsumer(ctx, StreamName, cfg)
	if err != nil {
		return fmt.Errorf("jetstream: watch: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("jetstream: watch: %w", err)
	}
	defer it.Stop()
	msgs := make(chan jetstream.Msg)
	errs := make(chan error, 1)
	go func() {
		for {
			msg, err := it.Next()
			if err != nil {
				errs <- err
				return
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	cursor := after
	beat := time.NewTicker(interval)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("jetstream: watch: %w", err)
		case <-beat.C:
			if err := fn(spa.StoredEvent{Sequence: cursor}); err != nil {
				return err
			}
		case msg := <-msgs:
			raw, err := rawOf(msg)
			if err != nil {
				return err
			}
			cursor = raw.Sequence
			if raw.Provider != provider {
				continue
			}
			beat.Reset(interval)
			if err := fn(raw); err != nil {
				return err
			}
		}
	}
}
