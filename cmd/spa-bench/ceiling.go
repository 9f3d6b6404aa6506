package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	bbolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	ijs "spa/internal/jetstream"
	"spa/internal/query"
	"spa/internal/spa"
)

// shape is what a stored event looks like on the wire: its data's size and
// its headers (type, hash, signature), so that a ceiling publishes
// messages of the same size as SPA's.
type shape struct {
	data    int
	headers map[string]string
}

func (s shape) message(subject string, data []byte) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = data[:s.data]
	for k, v := range s.headers {
		msg.Header.Set(k, v)
	}
	return msg
}

// scratch starts an embedded nats-server of its own in dir with SPA's
// streams, as the all-in-one server makes them; noSync relaxes fsync.
func scratch(ctx context.Context, dir string, noSync bool) (*ijs.Embedded, *nats.Conn, error) {
	e, err := ijs.StartEmbedded(ijs.EmbeddedConfig{DataDir: dir, NoSync: noSync})
	if err != nil {
		return nil, nil, err
	}
	nc, err := e.Connect("spa-bench-ceiling")
	if err != nil {
		e.Shutdown()
		return nil, nil, err
	}
	if _, err := ijs.Provision(ctx, nc, ijs.Setup{Replicas: 1}); err != nil {
		nc.Close()
		e.Shutdown()
		return nil, nil, err
	}
	return e, nc, nil
}

// publishCeiling measures the machine's ceiling (a): raw publishes to
// SPA's event stream on a separate embedded nats-server with fsync on
// every write, clients at once, each waiting for its acknowledgement, for
// d; each message is of shape s, on a subject of its own with the headers
// SPA's first append on a subject carries (message id, expected last
// subject sequence 0). It returns messages a second.
func publishCeiling(ctx context.Context, dir string, s shape, clients int, d time.Duration) (float64, error) {
	e, nc, err := scratch(ctx, dir, false)
	if err != nil {
		return 0, err
	}
	defer e.Shutdown()
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	data := make([]byte, s.data)
	_, _ = rand.Read(data)
	var n atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	g, gctx := errgroup.WithContext(ctx)
	for c := range clients {
		g.Go(func() error {
			for k := 0; time.Now().Before(deadline); k++ {
				msg := s.message(ijs.SubjectOf(spa.AggregateReferral, fmt.Sprintf("ceiling-%d-%d", c, k)), data)
				if _, err := js.PublishMsg(gctx, msg, jetstream.WithMsgID(nuid.Next()), jetstream.WithExpectLastSequencePerSubject(0),
					jetstream.WithExpectStream(ijs.StreamName)); err != nil {
					return fmt.Errorf("ceiling publish: %w", err)
				}
				n.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return perSecond(int(n.Load()), time.Since(start)), nil
}

// consumeCeiling measures the machine's ceiling (b): n messages of shape s
// read from SPA's event stream on a separate embedded nats-server as the
// projection reads them (internal/jetstream's Follow: an ordered consumer,
// batches of up to 1,000), each batch written to a plain bbolt file in
// one transaction (one put per message and the applied sequence), as the
// projection batches its commits. The stream is filled first, without
// fsync (only the reading is timed). It returns messages a second.
func consumeCeiling(ctx context.Context, dir string, s shape, n int) (float64, error) {
	e, nc, err := scratch(ctx, dir, true)
	if err != nil {
		return 0, err
	}
	defer e.Shutdown()
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*fillWindow))
	if err != nil {
		return 0, err
	}
	data := make([]byte, s.data)
	_, _ = rand.Read(data)
	for k := range n {
		// Referrals have a few events each: eight to a subject.
		msg := s.message(ijs.SubjectOf(spa.AggregateReferral, fmt.Sprintf("fill-%d", k/8)), data)
		if _, err := js.PublishMsgAsync(msg); err != nil {
			return 0, fmt.Errorf("ceiling fill: %w", err)
		}
		if (k+1)%fillWindow == 0 || k == n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
	}
	store, err := ijs.Open(ctx, nc, ijs.Requirements{})
	if err != nil {
		return 0, err
	}
	last, err := store.LastSequence(ctx)
	if err != nil {
		return 0, err
	}
	if last != uint64(n) {
		return 0, fmt.Errorf("ceiling fill: the stream holds %d messages, not %d", last, n)
	}
	db, err := bbolt.Open(filepath.Join(dir, "ceiling.db"), 0o600, nil)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	bucket, appliedKey := []byte("events"), []byte("applied")
	start := time.Now()
	err = store.Follow(ctx, ijs.FollowOptions{From: 1, Batch: 1000, What: "ceiling"}, func(b ijs.Batch) error {
		if len(b.Events) == 0 {
			return nil
		}
		seq := b.Events[len(b.Events)-1].Sequence
		err := db.Update(func(tx *bbolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(bucket)
			if err != nil {
				return err
			}
			for _, e := range b.Events {
				if err := bk.Put(binary.BigEndian.AppendUint64(nil, e.Sequence), e.Data); err != nil {
					return err
				}
			}
			return bk.Put(appliedKey, binary.BigEndian.AppendUint64(nil, seq))
		})
		if err == nil && seq >= last {
			return ijs.ErrStop
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return perSecond(n, time.Since(start)), nil
}

// fillWindow is how many messages the fill publishes before it waits for
// their acknowledgements.
const fillWindow = 2048

// rebuilt is a worker's rebuild of its read model from sequence 1.
type rebuilt struct {
	Worker  string
	Events  uint64
	Elapsed time.Duration
	Swap    float64
}

// rebuild has the first worker (by id) rebuild its read model from
// sequence 1 while it serves (spa-ctl rebuild does the same), waits for it
// within within (cancelling it then) and returns how many events it
// applied and how long it took, from start to swap.
func rebuild(ctx context.Context, nc *nats.Conn, within time.Duration) (rebuilt, error) {
	q := query.NewClient(nc)
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	sts, err := q.Workers(ctx, 300*time.Millisecond)
	if err != nil {
		return rebuilt{}, err
	}
	if len(sts) == 0 {
		return rebuilt{}, errors.New("rebuild: no worker answered")
	}
	sort.Slice(sts, func(i, j int) bool { return sts[i].Worker < sts[j].Worker })
	id := sts[0].Worker
	if _, err := q.Rebuild(ctx, id, false); err != nil {
		return rebuilt{}, fmt.Errorf("rebuild %s: %w", id, err)
	}
	for {
		select {
		case <-ctx.Done():
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = q.Rebuild(cctx, id, true)
			ccancel()
			return rebuilt{}, fmt.Errorf("rebuild %s: not done within %s: cancelled", id, within)
		case <-time.After(50 * time.Millisecond):
		}
		st, err := q.WorkerStatus(ctx, id)
		if err != nil || st.Rebuild == nil || st.Rebuild.State == query.RebuildRunning {
			continue
		}
		r := st.Rebuild
		if r.State != query.RebuildSwapped {
			return rebuilt{}, fmt.Errorf("rebuild %s: %s: %s", id, r.State, r.Error)
		}
		return rebuilt{Worker: id, Events: r.Applied, Elapsed: r.Finished.Sub(r.Started), Swap: r.SwapMillis}, nil
	}
}

// streamInfo returns the event stream's last sequence and its bytes.
func streamInfo(ctx context.Context, nc *nats.Conn) (last, bytes uint64, err error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	s, err := js.Stream(ctx, ijs.StreamName)
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.State.LastSeq, info.State.Bytes, nil
}
