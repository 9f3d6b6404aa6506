package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ijs "spa/internal/jetstream"
	"spa/internal/query"
)

// natsAccess is the bench's connection to the server's NATS as the admin
// identity, when it has one: the log's size, and the rebuild.
type natsAccess struct {
	conn *nats.Conn
}

// lastSequence is the event log's last sequence.
func (n natsAccess) lastSequence(ctx context.Context) (uint64, error) {
	last, _, err := streamInfo(ctx, n.conn)
	return last, err
}

// natsConn connects to --nats-url as the admin identity.
func (c benchConfig) natsConn() (*nats.Conn, error) {
	opts, err := c.NATS.Options()
	if err != nil {
		return nil, err
	}
	return ijs.DialNow(c.NATSURL, "spa-bench", opts...)
}

// settle waits, within within, until the server has caught up with its
// log: every durable consumer of the event stream (the routers') has
// nothing pending or unacknowledged, and every worker's read model has
// applied the last sequence. say reports progress every few seconds.
func settle(ctx context.Context, nc *nats.Conn, within time.Duration, say func(format string, a ...any)) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	q := query.NewClient(nc)
	start := time.Now()
	reported := start
	var caughtUp uint64 // the last sequence when last seen caught up
	for {
		last, behind, applied, workers, err := progress(ctx, js, q)
		if err == nil && behind == 0 && workers > 0 && applied >= last {
			if caughtUp == last {
				return nil // twice in a row, with nothing appended between
			}
			caughtUp = last
		} else {
			caughtUp = 0
		}
		if time.Since(start) > within {
			return fmt.Errorf("the server has not caught up with its log within %s: consumers %d events behind, read model at %d of %d (%v)", within, behind, applied, last, err)
		}
		if time.Since(reported) >= 5*time.Second {
			reported = time.Now()
			say("catching up: the routers' consumer %d events behind, the read model at %d of %d", behind, applied, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// progress returns the log's last sequence, the events its durable
// consumers have pending or unacknowledged, and the lowest sequence a
// worker's read model has applied, of how many workers.
func progress(ctx context.Context, js jetstream.JetStream, q *query.Client) (last, behind, applied uint64, workers int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, ijs.StreamName)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	last = info.State.LastSeq
	consumers := s.ListConsumers(ctx)
	for c := range consumers.Info() {
		if c.Config.Durable != "" {
			behind += c.NumPending + uint64(c.NumAckPending)
		}
	}
	if err := consumers.Err(); err != nil {
		return 0, 0, 0, 0, err
	}
	sts, err := q.Workers(ctx, 200*time.Millisecond)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for i, st := range sts {
		if i == 0 || st.Applied < applied {
			applied = st.Applied
		}
	}
	return last, behind, applied, len(sts), nil
}
