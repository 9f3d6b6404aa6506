package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// The access log: its own stream, one subject per referral, so that the
// reads of one referral's data are found without scanning the rest.
const (
	AccessStreamName = "SPA_ACCESS"
	accessSubject    = "spa.access."
)

// AccessLog records every read of patient data. Safe for concurrent use.
type AccessLog struct {
	js jetstream.JetStream
}

// NewAccessLog creates or updates the access log stream (file storage,
// every record kept, delete and purge denied) on the store's connection.
func (s *Store) NewAccessLog(ctx context.Context) (*AccessLog, error) {
	_, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        AccessStreamName,
		Description: "SPA access log: who read which referral's data, when and why",
		Subjects:    []string{accessSubject + "*"},
		Storage:     jetstream.FileStorage,
		Replicas:    s.replicas,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: create stream %s: %w", AccessStreamName, err)
	}
	return &AccessLog{js: s.js}, nil
}

// Record appends one access record per referral and returns once
// JetStream has acknowledged them all.
func (l *AccessLog) Record(ctx context.Context, actor spa.Actor, purpose, method string, at time.Time, referralIDs []string) error {
	futures := make([]jetstream.PubAckFuture, 0, len(referralIDs))
	for _, id := range referralIDs {
		data, err := proto.Marshal(&spav1.AccessRecord{
			ReferralId: id, Actor: &spav1.Actor{Ods: actor.ODS, Role: actor.Role, User: actor.User},
			Purpose: purpose, Method: method, At: timestamppb.New(at),
		})
		if err != nil {
			return err
		}
		f, err := l.js.PublishAsync(accessSubject+id, data, jetstream.WithExpectStream(AccessStreamName))
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
}

// List returns the access records of a referral, oldest first.
func (l *AccessLog) List(ctx context.Context, referralID string) ([]*spav1.AccessRecord, error) {
	cons, err := l.js.OrderedConsumer(ctx, AccessStreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{accessSubject + referralID}})
	if err != nil {
		return nil, fmt.Errorf("jetstream: access log: %w", err)
	}
	var out []*spav1.AccessRecord
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, fmt.Errorf("jetstream: access log: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			r := new(spav1.AccessRecord)
			if err := proto.Unmarshal(msg.Data(), r); err != nil {
				return nil, fmt.Errorf("jetstream: access record: %w", err)
			}
			out = append(out, r)
		}
		if n == 0 {
			return out, nil
		}
	}
}
