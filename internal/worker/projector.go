package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/bolt"
	"spa/internal/codec"
)

// fetchBatch is how many messages one pull request asks for; it bounds a
// read-model transaction too.
const fetchBatch = 1000

// Projector feeds a read model from its own durable pull consumer.
type Projector struct {
	stream  jetstream.Stream
	model   *bolt.Model
	durable string
	log     *slog.Logger
}

// NewProjector returns a projector of stream into model through the durable
// consumer named durable, which belongs to this model alone.
func NewProjector(stream jetstream.Stream, model *bolt.Model, durable string, log *slog.Logger) *Projector {
	return &Projector{stream: stream, model: model, durable: durable, log: log}
}

// consumer (re)creates the durable consumer to deliver from the sequence
// after the model's applied one. The model file, not the consumer, is the
// record of progress: a deleted or replaced file rebuilds from sequence 1.
func (p *Projector) consumer(ctx context.Context) (jetstream.Consumer, error) {
	err := p.stream.DeleteConsumer(ctx, p.durable)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("worker: reset consumer %s: %w", p.durable, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:           p.durable,
		Description:       "SPA read model projection",
		AckPolicy:         jetstream.AckAllPolicy,
		AckWait:           30 * time.Second,
		MaxAckPending:     4 * fetchBatch,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 24 * time.Hour,
	}
	if applied := p.model.Applied(); applied > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = applied + 1
	}
	c, err := p.stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("worker: create consumer %s: %w", p.durable, err)
	}
	return c, nil
}

// Run projects until ctx ends. Messages are applied in batches, one bbolt
// transaction each, and acknowledged only after the commit; a message
// already applied is skipped, so redelivery is harmless. When ctx ends the
// batch in hand is committed before Run returns.
func (p *Projector) Run(ctx context.Context) error {
	cons, err := p.consumer(ctx)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		batch, err := cons.Fetch(fetchBatch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				break
			}
			p.log.Warn("projection fetch failed; retrying", "err", err)
			if err := sleep(ctx, time.Second); err != nil {
				break
			}
			continue
		}
		err = p.drain(batch.Messages())
		cancel()
		if err != nil {
			return err
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			p.log.Warn("projection batch ended with an error", "err", err)
		}
	}
	return nil
}

// drain applies messages as they arrive: whatever is buffered when the
// channel runs dry is committed in one transaction, so batches grow with
// the load (group commit) and a lone event is applied at once.
func (p *Projector) drain(msgs <-chan jetstream.Msg) error {
	var pending []jetstream.Msg
	for msg := range msgs {
		pending = append(pending, msg)
		if len(msgs) == 0 {
			if err := p.commit(pending); err != nil {
				return err
			}
			pending = pending[:0]
		}
	}
	return p.commit(pending)
}

func (p *Projector) commit(msgs []jetstream.Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	entries := make([]bolt.Entry, 0, len(msgs))
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("worker: message metadata: %w", err)
		}
		rec, err := codec.UnmarshalRecord(md.Sequence.Stream, m.Data())
		if err != nil {
			// A payload this version cannot read: stop rather than build a
			// model that silently differs from the log.
			return fmt.Errorf("worker: sequence %d on %s: %w", md.Sequence.Stream, m.Subject(), err)
		}
		entries = append(entries, bolt.Entry{Record: rec, Raw: m.Data()})
	}
	if err := p.model.Apply(entries); err != nil {
		return err
	}
	// AckAll: acknowledging the last message acknowledges the batch.
	if err := msgs[len(msgs)-1].Ack(); err != nil {
		p.log.Warn("ack after commit failed; the batch will be redelivered and skipped", "err", err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
