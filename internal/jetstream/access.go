package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/backoff"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// The access log: its own stream, one subject per referral, so that the
// reads of one referral's data are found without scanning the rest.
const (
	AccessStreamName = "SPA_ACCESS"
	accessSubject    = "spa.access."
)

// AccessSubjects lists the subjects the access log stream captures.
var AccessSubjects = []string{accessSubject + "*"}

// AccessLog records every read of patient data. Safe for concurrent use.
type AccessLog struct {
	store *Store
	gate  *backoff.Gate
}

// OpenAccessLog returns the access log once its stream exists and is as
// strong as req states, waiting for it like Open.
func (s *Store) OpenAccessLog(ctx context.Context, req Requirements) (*AccessLog, error) {
	if _, err := lookupStream(ctx, s.js, accessConfig(Setup{}), req); err != nil {
		return nil, err
	}
	return &AccessLog{store: s, gate: backoff.NewGate("access log appends", s.log)}, nil
}

// Record appends one access record per referral and returns once
// JetStream has acknowledged them all. Records are sent again while
// JetStream does not answer (so a record may be stored twice, never
// lost); a failure that lasts is KindUnavailable.
func (l *AccessLog) Record(ctx context.Context, actor spa.Actor, purpose, method string, at time.Time, referralIDs []string) error {
	msgs := make([][]byte, len(referralIDs))
	for i, id := range referralIDs {
		data, err := proto.Marshal(&spav1.AccessRecord{
			ReferralId: id, Actor: &spav1.Actor{Ods: actor.ODS, Role: actor.Role, User: actor.User},
			Purpose: purpose, Method: method, At: timestamppb.New(at),
		})
		if err != nil {
			return err
		}
		msgs[i] = data
	}
	return l.store.do(ctx, l.gate, func(ctx context.Context) error {
		futures := make([]jetstream.PubAckFuture, 0, len(msgs))
		for i, data := range msgs {
			f, err := l.store.js.PublishAsync(accessSubject+referralIDs[i], data, jetstream.WithExpectStream(AccessStreamName))
			if err != nil {
				return fmt.Errorf("jetstream: access log: %w", err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("jetstream: access log: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
}

// List returns up to limit access records of a referral, oldest first,
// starting after the access log position after (0: from the first), and
// the position to pass for the next page (0 when there is none).
func (l *AccessLog) List(ctx context.Context, referralID string, after uint64, limit int) ([]*spav1.AccessRecord, uint64, error) {
	var out []*spav1.AccessRecord
	var next uint64
	opts := FollowOptions{From: after + 1, Subjects: []string{accessSubject + referralID}, Batch: limit, What: "access log read"}
	err := l.store.followStream(ctx, AccessStreamName, opts, func(b Batch) error {
		for _, e := range b.Events {
			r := new(spav1.AccessRecord)
			if err := proto.Unmarshal(e.Data, r); err != nil {
				return fmt.Errorf("jetstream: access record %d: %w", e.Sequence, err)
			}
			out = append(out, r)
			if len(out) == limit {
				if !b.CaughtUp || e.Sequence != b.Events[len(b.Events)-1].Sequence {
					next = e.Sequence
				}
				return ErrStop
			}
		}
		if b.CaughtUp {
			return ErrStop
		}
		return nil
	})
	return out, next, err
}
