package jetstream

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/codec"
	"spa/internal/spa"
)

// headerNumPending, on a direct get's end-of-batch marker, counts the
// messages that matched beyond the batch.
const headerNumPending = "Nats-Num-Pending"

// directRequest is a batched request of JetStream's direct get API
// (nats-server 2.11+): the messages on NextBySubject from Seq on, up to
// Batch of them and about MaxBytes; or the last message of each of
// MultiLast's subjects.
type directRequest struct {
	Seq           uint64   `json:"seq,omitempty"`
	NextBySubject string   `json:"next_by_subj,omitempty"`
	Batch         int      `json:"batch,omitempty"`
	MaxBytes      int      `json:"max_bytes,omitempty"`
	MultiLast     []string `json:"multi_last,omitempty"`
}

// directGet sends a batched direct get to stream and returns the messages
// answered, in stream order, and how many more matched after them (the
// end-of-batch marker's count); no messages and no error when nothing
// matched. One round trip, whatever the number of messages. A replica
// may answer, so what it returns may lag the stream's leader.
func (s *Store) directGet(ctx context.Context, stream string, req directRequest) ([]*nats.Msg, uint64, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	inbox := s.nc.NewInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, fmt.Errorf("jetstream: direct get from %s: %w", stream, err)
	}
	defer sub.Unsubscribe()
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return nil, 0, fmt.Errorf("jetstream: direct get from %s: %w", stream, err)
	}
	var msgs []*nats.Msg
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("jetstream: direct get from %s: %w", stream, err)
		}
		switch status := msg.Header.Get("Status"); status {
		case "":
			msgs = append(msgs, msg)
		case "204": // end of batch
			pending, _ := strconv.ParseUint(msg.Header.Get(headerNumPending), 10, 64)
			return msgs, pending, nil
		case "404": // nothing (more) matched
			return msgs, 0, nil
		case "503":
			return nil, 0, fmt.Errorf("jetstream: direct get from %s: %w", stream, nats.ErrNoResponders)
		default:
			return nil, 0, fmt.Errorf("jetstream: direct get from %s: status %s %s", stream, status, msg.Header.Get("Description"))
		}
	}
}

// readBatch is how many of a subject's events read starts with, in one
// direct get: a referral's whole history, or a provider's events after its
// snapshot, in one round trip. readBytes bounds the answer's size.
const (
	readBatch = 128
	readBytes = 1 << 20
)

// stored is one event of a subject as read: its sequence, the SHA-256 of
// its stored bytes, and the record (nil for an undecodable event an
// operator decided to step over).
type stored struct {
	seq  uint64
	hash []byte
	rec  *spa.Record
}

// read returns the events on subject from sequence from on, oldest first:
// the first readBatch in one direct get, and any after them through an
// ordered consumer, which delivers a long run of events several times
// faster than direct gets do. An event that does not decode is an error,
// unless its sequence is one the operator decided to skip.
func (s *Store) read(ctx context.Context, subject string, from uint64) ([]stored, error) {
	msgs, pending, err := s.directGet(ctx, StreamName, directRequest{Seq: from, NextBySubject: subject, Batch: readBatch, MaxBytes: readBytes})
	if err != nil {
		return nil, err
	}
	out := make([]stored, 0, len(msgs))
	for _, msg := range msgs {
		seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || seq < from || msg.Header.Get(jetstream.SubjectHeader) != subject {
			return nil, fmt.Errorf("jetstream: load %s: a direct get answered sequence %q of %q", subject, msg.Header.Get(jetstream.SequenceHeader), msg.Header.Get(jetstream.SubjectHeader))
		}
		e, err := s.decode(seq, subject, msg.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		from = seq + 1
	}
	if pending == 0 || len(msgs) == 0 {
		return out, nil
	}
	err = s.Follow(ctx, FollowOptions{From: from, Subjects: []string{subject}, What: "loading " + subject}, func(b Batch) error {
		for _, ev := range b.Events {
			e, err := s.decode(ev.Sequence, subject, ev.Data)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		if b.CaughtUp {
			return ErrStop
		}
		return nil
	})
	return out, err
}

// decode decodes the event stored at seq on subject.
func (s *Store) decode(seq uint64, subject string, data []byte) (stored, error) {
	e := stored{seq: seq, hash: hashOf(data)}
	rec, err := codec.DecodeStored(spa.StoredEvent{Sequence: seq, Subject: subject, Data: data})
	switch {
	case err == nil:
		e.rec = &rec
	case !s.skip[seq]:
		return e, err
	}
	return e, nil
}

// hashOf returns the SHA-256 of an event's stored bytes.
func hashOf(data []byte) []byte {
	h := sha256.Sum256(data)
	return h[:]
}

// records returns the records of events, leaving out the ones skipped,
// with their hashes, and the last event's sequence (0 when none).
func records(events []stored) ([]spa.Record, [][]byte, uint64) {
	var recs []spa.Record
	var hashes [][]byte
	var last uint64
	for _, e := range events {
		last = e.seq
		if e.rec != nil {
			recs = append(recs, *e.rec)
			hashes = append(hashes, e.hash)
		}
	}
	return recs, hashes, last
}
