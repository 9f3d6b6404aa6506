package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/backoff"
	"spa/internal/spa"
)

// The checkpoint stream (ADR 26): the signed checkpoints of the event
// log, one subject, kept like the other streams (delete and purge
// denied). Only the signing processes may publish on CheckpointSubject.
// Persisted: never rename.
const (
	CheckpointStreamName = "SPA_CHECKPOINTS"
	CheckpointSubject    = "spa.checkpoints"
	// HeaderCheckpointSequence names the event log sequence a checkpoint
	// covers, so that a reader can find it without opening the note.
	HeaderCheckpointSequence = "Spa-Checkpoint-Sequence"
)

// checkpointsConfig is the checkpoint stream, a kept stream.
func checkpointsConfig(s Setup) jetstream.StreamConfig {
	return keptStream(CheckpointStreamName, "SPA signed checkpoints of the event log; append-only", []string{CheckpointSubject}, s.Replicas)
}

// Checkpoints stores and reads the signed checkpoints. Safe for
// concurrent use.
type Checkpoints struct {
	store *Store
	gate  *backoff.Gate
}

// OpenCheckpoints returns the checkpoint stream once it exists and is as
// strong as req states, waiting for it like Open.
func (s *Store) OpenCheckpoints(ctx context.Context, req Requirements) (*Checkpoints, error) {
	if _, err := lookupStream(ctx, s.js, checkpointsConfig(Setup{}), req); err != nil {
		return nil, err
	}
	return &Checkpoints{store: s, gate: backoff.NewGate("checkpoint appends", s.log)}, nil
}

// Last returns the last checkpoint stored (its signed note; nil when there
// is none) and the checkpoint stream's last sequence, which the next
// Append must expect, as the stream's leader has them. The stream's last
// message is not always the last checkpoint: whoever can make JetStream
// copy a message into the stream (a push consumer delivering on its
// subject) can put something else there, and a signer must still be able
// to append after it. Retried like Store.Load.
func (c *Checkpoints) Last(ctx context.Context) ([]byte, uint64, error) {
	var note []byte
	var at uint64
	err := c.store.do(ctx, c.store.reads, func(ctx context.Context) error {
		note, at = nil, 0
		info, err := c.store.js.Stream(ctx, CheckpointStreamName)
		if err != nil {
			return fmt.Errorf("jetstream: %s: %w", CheckpointStreamName, err)
		}
		if at = info.CachedInfo().State.LastSeq; at == 0 {
			return nil
		}
		msg, err := c.store.onLeader(ctx, CheckpointStreamName, apiGet{LastBySubject: CheckpointSubject})
		if err != nil || msg == nil {
			return err
		}
		note, at = msg.Data, max(at, msg.Seq) // max: one stored since the info
		return nil
	})
	return note, at, err
}

// Append stores a signed checkpoint of the event log up to sequence if
// the checkpoint stream's last sequence is still expectedLast (0: it must
// be empty): so that each event log sequence is checkpointed once however
// many signers race. A lost race is spa.ErrConcurrentChange: read Last
// again (an append sent again after its acknowledgement was lost is one
// too, and Last then has it). No message id is used: one that anybody
// else could send first would make every append a "duplicate".
func (c *Checkpoints) Append(ctx context.Context, note []byte, sequence, expectedLast uint64) error {
	msg := nats.NewMsg(CheckpointSubject)
	msg.Data = note
	msg.Header.Set(HeaderCheckpointSequence, strconv.FormatUint(sequence, 10))
	return c.store.do(ctx, c.gate, func(ctx context.Context) error {
		_, err := c.store.js.PublishMsg(ctx, msg,
			jetstream.WithExpectLastSequence(expectedLast),
			jetstream.WithExpectStream(CheckpointStreamName))
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return spa.ErrConcurrentChange
		}
		if err != nil {
			return fmt.Errorf("jetstream: append checkpoint: %w", err)
		}
		return nil
	})
}

// All calls fn with every checkpoint stored when All started (its signed
// note), oldest first.
func (c *Checkpoints) All(ctx context.Context, fn func(note []byte) error) error {
	var end uint64
	err := c.store.do(ctx, c.store.reads, func(ctx context.Context) error {
		info, err := c.store.js.Stream(ctx, CheckpointStreamName)
		if err != nil {
			return fmt.Errorf("jetstream: %s: %w", CheckpointStreamName, err)
		}
		end = info.CachedInfo().State.LastSeq
		return nil
	})
	if err != nil || end == 0 {
		return err
	}
	return c.store.followStream(ctx, CheckpointStreamName, FollowOptions{What: "reading checkpoints"}, func(b Batch) error {
		for _, e := range b.Events {
			if err := fn(e.Data); err != nil {
				return err
			}
			if e.Sequence >= end {
				return ErrStop
			}
		}
		return nil
	})
}
