package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/spa"
)

// StateBucket is the key-value bucket of aggregates' snapshots and of the
// request index (ADR 32). Persisted: never rename.
const StateBucket = "spa_state"

// The bucket's keys: <aggregate>.<id>.state.<rules> holds a snapshot
// folded by the named rules (spa.ProviderStateVersion); each version has
// its own, so that two versions of SPA running side by side do not undo
// each other's. <aggregate>.<id>.request.<request id> holds the sequence of
// the event of that request (a request id's dots written as '=', which no
// request id has: a key's tokens may not be empty).
func stateKey(agg spa.Aggregate, id, rules string) string {
	return string(agg) + "." + id + ".state." + rules
}

func requestKey(agg spa.Aggregate, id, requestID string) string {
	return string(agg) + "." + id + ".request." + strings.ReplaceAll(requestID, ".", "=")
}

func kvSubject(key string) string { return "$KV." + StateBucket + "." + key }

// storedSnapshot is a snapshot as the bucket holds it.
type storedSnapshot struct {
	Sequence uint64          `json:"seq"`
	Hash     []byte          `json:"hash"`
	State    json.RawMessage `json:"state"`
}

// kvTimeout bounds one read of the bucket: one that does not answer (a
// bus whose permissions predate the bucket drops the request) costs a
// command this, then snapshots are left alone for snapshotPause.
const (
	kvTimeout     = time.Second
	snapshotPause = time.Minute
)

// History returns what a command on an aggregate decides on (ADR 32): its
// latest snapshot folded by rules, if the log confirms it (the event it
// names is on the aggregate's subject, with the hash it names) and check
// accepts its state, and the aggregate's events after it; otherwise,
// every event of the aggregate. A request id, when given, is looked up in
// the request index in the same round trip. It costs two round trips
// while the events after the snapshot fit one direct get (readBatch);
// more are read through an ordered consumer. A snapshot or index that
// cannot be read (no bucket yet, a bus that refuses it) costs time, never
// the command: the events are read from the start.
func (s *Store) History(ctx context.Context, agg spa.Aggregate, id, rules, requestID string, check func(state []byte) error) (spa.History, error) {
	var h spa.History
	err := s.do(ctx, s.reads, func(ctx context.Context) (err error) {
		h, err = s.history(ctx, agg, id, rules, requestID, check)
		return err
	})
	return h, err
}

func (s *Store) history(ctx context.Context, agg spa.Aggregate, id, rules, requestID string, check func([]byte) error) (spa.History, error) {
	subject := SubjectOf(agg, id)
	snap, h := s.lookUp(ctx, agg, id, rules, requestID)
	if snap != nil && (check == nil || check(snap.State) == nil) {
		events, err := s.read(ctx, subject, snap.Sequence)
		if err != nil {
			return h, err
		}
		switch {
		case len(events) > 0 && events[0].seq == snap.Sequence && bytes.Equal(events[0].hash, snap.Hash):
			h.Snapshot = &spa.Snapshot{Sequence: snap.Sequence, Hash: snap.Hash, State: snap.State}
			h.Records, h.Hashes, h.Last = records(events[1:])
			if h.Last == 0 {
				h.Last = snap.Sequence
			}
			return h, nil
		case len(events) == 0 || events[0].seq != snap.Sequence:
			// The replica that answered may not have the event yet: if the
			// leader has it as named, read again.
			lead, err := s.onLeader(ctx, StreamName, apiGet{Seq: snap.Sequence})
			if err != nil {
				return h, err
			}
			if lead != nil && bytes.Equal(hashOf(lead.Data), snap.Hash) && lead.Subject == subject {
				return h, &retryableError{fmt.Errorf("jetstream: %s: the replica read is behind the snapshot at %d", subject, snap.Sequence)}
			}
		}
		// The snapshot is not this log's: every event is read instead, and
		// a new snapshot replaces it.
	}
	events, err := s.read(ctx, subject, 1)
	if err != nil {
		return h, err
	}
	h.Records, h.Hashes, h.Last = records(events)
	return h, nil
}

// lookUp reads an aggregate's snapshot folded by rules and the request
// index's entry for requestID in one batched direct get. It returns the
// snapshot (nil when there is none, or none that reads) and a history
// with the index's answer and the snapshot entry's revision. A bucket
// that cannot be read is left alone for snapshotPause: no snapshot, no
// index entry.
func (s *Store) lookUp(ctx context.Context, agg spa.Aggregate, id, rules, requestID string) (*storedSnapshot, spa.History) {
	var h spa.History
	if time.Now().UnixNano() < s.snapshotsOff.Load() {
		return nil, h
	}
	subjects := []string{kvSubject(stateKey(agg, id, rules))}
	if requestID != "" {
		subjects = append(subjects, kvSubject(requestKey(agg, id, requestID)))
	}
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	msgs, _, err := s.directGet(kctx, "KV_"+StateBucket, directRequest{MultiLast: subjects})
	if err != nil {
		if ctx.Err() == nil {
			s.snapshotsOff.Store(time.Now().Add(snapshotPause).UnixNano())
			s.snapshots.Fail(fmt.Errorf("reading bucket %s: %w (snapshots unused for %s)", StateBucket, err, snapshotPause))
		}
		return nil, h
	}
	s.snapshots.OK()
	var snap *storedSnapshot
	for _, msg := range msgs {
		deleted := msg.Header.Get("KV-Operation") != "" // deleted or purged
		switch msg.Header.Get(jetstream.SubjectHeader) {
		case subjects[0]:
			// A deleted entry has a revision too, which a save replaces.
			h.Revision, _ = strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
			var v storedSnapshot
			if !deleted && json.Unmarshal(msg.Data, &v) == nil && v.Sequence > 0 {
				snap = &v
			}
		default:
			if !deleted {
				h.Requested, _ = strconv.ParseUint(string(msg.Data), 10, 64)
			}
		}
	}
	return snap, h
}

// SaveSnapshot stores snap as an aggregate's latest snapshot folded by
// rules, once the request index holds every one of requests (the request
// ids of the events up to the snapshot that the one it replaces did not
// cover), and only if the entry read at revision (0: none) is still the
// latest: of two writers, the one that read the older entry gives way.
// It is best effort: a snapshot not saved costs later commands time,
// never correctness, so a failure is logged (once while it lasts), not
// returned.
func (s *Store) SaveSnapshot(ctx context.Context, agg spa.Aggregate, id, rules string, revision uint64, snap spa.Snapshot, requests []spa.RequestAt) {
	if time.Now().UnixNano() < s.snapshotsOff.Load() {
		return
	}
	if err := s.saveSnapshot(ctx, agg, id, rules, revision, snap, requests); err != nil {
		s.snapshots.Fail(err)
		return
	}
	s.snapshots.OK()
}

func (s *Store) saveSnapshot(ctx context.Context, agg spa.Aggregate, id, rules string, revision uint64, snap spa.Snapshot, requests []spa.RequestAt) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	// The index first, all in flight at once: the snapshot must never
	// cover a request id the index does not hold.
	acks := make([]jetstream.PubAckFuture, 0, len(requests))
	for _, r := range requests {
		ack, err := s.js.PublishAsync(kvSubject(requestKey(agg, id, r.ID)), []byte(strconv.FormatUint(r.Sequence, 10)))
		if err != nil {
			return fmt.Errorf("jetstream: index request %s of %s %s: %w", r.ID, agg, id, err)
		}
		acks = append(acks, ack)
	}
	for _, ack := range acks {
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			return fmt.Errorf("jetstream: index a request of %s %s: %w", agg, id, err)
		case <-ctx.Done():
			return fmt.Errorf("jetstream: index a request of %s %s: %w", agg, id, ctx.Err())
		}
	}
	data, err := json.Marshal(storedSnapshot{Sequence: snap.Sequence, Hash: snap.Hash, State: snap.State})
	if err != nil {
		return err
	}
	_, err = s.js.Publish(ctx, kvSubject(stateKey(agg, id, rules)), data, jetstream.WithExpectLastSequencePerSubject(revision))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return nil // another writer saved one since: it stands
	}
	if err != nil {
		return fmt.Errorf("jetstream: save the snapshot of %s %s: %w", agg, id, err)
	}
	return nil
}

// provisionStateBucket creates the snapshots' bucket (one value per key,
// on file, as many replicas as the streams) or brings an existing one
// (have) to setup's replicas, keeping its placement.
func provisionStateBucket(ctx context.Context, js jetstream.JetStream, have *jetstream.StreamConfig, setup Setup) (string, error) {
	kvc := jetstream.KeyValueConfig{
		Bucket:      StateBucket,
		Description: "SPA aggregates' snapshots and request index (ADR 32; losing the whole bucket costs time only)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    setup.Replicas,
	}
	verb := "created"
	if have != nil {
		kvc.Placement = have.Placement
		verb = "unchanged"
		if have.Replicas != kvc.Replicas {
			verb = "updated"
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, kvc); err != nil {
		return "", fmt.Errorf("jetstream: provision %s: %w", StateBucket, err)
	}
	return fmt.Sprintf("bucket %s %s: replicas %d", StateBucket, verb, kvc.Replicas), nil
}
