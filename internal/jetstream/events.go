package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/codec"
	"spa/internal/spa"
)

// eventsBatch is the most events one request of Events asks for.
const eventsBatch = 256

// Events returns the stored events of an aggregate up to sequence upTo
// (its version as a read model has it), oldest first, as the log stores
// them: a referral's history. It reads them in batches of a direct get
// (a referral has few events: one request), from any replica; one that
// is behind upTo is asked again. An undecodable event an operator
// decided to step over is left out, as the read models leave it. A store
// that cannot answer for a while is retried; one that stays so is
// KindUnavailable.
func (s *Store) Events(ctx context.Context, agg spa.Aggregate, id string, upTo uint64) ([]spa.StoredEvent, error) {
	var out []spa.StoredEvent
	err := s.do(ctx, s.reads, func(ctx context.Context) error {
		var err error
		out, err = s.events(ctx, SubjectOf(agg, id), upTo)
		return err
	})
	return out, err
}

func (s *Store) events(ctx context.Context, subject string, upTo uint64) ([]spa.StoredEvent, error) {
	var out []spa.StoredEvent
	var seen uint64 // the last sequence read
	for seen < upTo {
		batch, more, err := s.directBatch(ctx, subject, seen+1)
		if err != nil {
			return nil, err
		}
		for _, e := range batch {
			if e.Sequence > upTo {
				return out, nil
			}
			seen = e.Sequence
			if s.skip[e.Sequence] {
				if _, err := codec.DecodeStored(e); err != nil {
					continue // an operator decided to step over it
				}
			}
			out = append(out, e)
		}
		if !more {
			break
		}
	}
	if seen < upTo {
		// The replica that answered has not got the event the read model
		// applied: read again.
		return nil, &retryableError{fmt.Errorf("jetstream: events of %s: read up to %d of %d", subject, seen, upTo)}
	}
	return out, nil
}

// directBatch is a request of JetStream's direct get API for a batch of
// a subject's messages.
type directBatch struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
}

// directBatch returns up to eventsBatch events on subject from sequence
// from on, and whether more follow them.
func (s *Store) directBatch(ctx context.Context, subject string, from uint64) (events []spa.StoredEvent, more bool, err error) {
	req, err := json.Marshal(directBatch{Seq: from, NextFor: subject, Batch: eventsBatch})
	if err != nil {
		return nil, false, err
	}
	reply, answers, done, err := s.batches.call(s.nc)
	if err != nil {
		return nil, false, fmt.Errorf("jetstream: events of %s: %w", subject, err)
	}
	defer done()
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+StreamName, reply, req); err != nil {
		return nil, false, fmt.Errorf("jetstream: events of %s: %w", subject, err)
	}
	for {
		var msg *nats.Msg
		select {
		case msg = <-answers:
		case <-ctx.Done():
			return nil, false, fmt.Errorf("jetstream: events of %s: %w", subject, ctx.Err())
		}
		switch status := msg.Header.Get("Status"); status {
		case "":
			e, err := directStored(msg)
			if err != nil {
				return nil, false, fmt.Errorf("jetstream: events of %s: %w", subject, err)
			}
			events = append(events, e)
		case "204": // end of the batch
			return events, msg.Header.Get("Nats-Num-Pending") != "0", nil
		case "404": // none from there on
			return events, false, nil
		case "503":
			return nil, false, fmt.Errorf("jetstream: events of %s: %w", subject, nats.ErrNoResponders)
		default:
			return nil, false, fmt.Errorf("jetstream: events of %s: direct get answered %s %s", subject, status, msg.Header.Get("Description"))
		}
	}
}

// batchMux hands the answers of batched direct gets to the calls that
// asked, from one subscription of the store's: a subscription per call
// costs the server several times what the get does.
type batchMux struct {
	mu     sync.Mutex
	sub    *nats.Subscription
	prefix string
	calls  map[string]chan *nats.Msg
	n      uint64
}

// call returns the reply subject of a new call, the channel its answers
// arrive on, and done, to call when it ends.
func (m *batchMux) call(nc *nats.Conn) (reply string, answers <-chan *nats.Msg, done func(), err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sub == nil || !m.sub.IsValid() {
		prefix := nc.NewInbox()
		sub, err := nc.Subscribe(prefix+".*", m.route)
		if err != nil {
			return "", nil, nil, err
		}
		m.sub, m.prefix, m.calls = sub, prefix, map[string]chan *nats.Msg{}
	}
	m.n++
	token := strconv.FormatUint(m.n, 36)
	// Room for a whole batch and its end: route never waits.
	ch := make(chan *nats.Msg, eventsBatch+2)
	m.calls[token] = ch
	calls := m.calls
	return m.prefix + "." + token, ch, func() {
		m.mu.Lock()
		delete(calls, token)
		m.mu.Unlock()
	}, nil
}

// route hands an answer to its call; one for a call that ended is
// dropped.
func (m *batchMux) route(msg *nats.Msg) {
	token := msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:]
	m.mu.Lock()
	ch := m.calls[token]
	m.mu.Unlock()
	select {
	case ch <- msg:
	default:
	}
}

// directStored returns a message of a direct get as a stored event.
func directStored(msg *nats.Msg) (spa.StoredEvent, error) {
	h := msg.Header
	seq, err := strconv.ParseUint(h.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return spa.StoredEvent{}, fmt.Errorf("sequence: %w", err)
	}
	at, err := time.Parse(time.RFC3339Nano, h.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return spa.StoredEvent{}, fmt.Errorf("time stamp: %w", err)
	}
	return storedEvent(seq, h.Get(jetstream.SubjectHeader), at, h, msg.Data), nil
}
