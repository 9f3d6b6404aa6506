// Package jetstream is the event store on NATS JetStream: one durable stream
// of domain events, one subject per aggregate (spa.referral.<id>), appends
// guarded by per-subject optimistic concurrency and deduplicated by
// Nats-Msg-Id. It also starts the embedded nats-server of the all-in-one
// mode.
package jetstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"spa/internal/backoff"
	"spa/internal/codec"
	"spa/internal/spa"
)

// Stream and subject names. Persisted: never rename.
const (
	StreamName = "SPA_EVENTS"
	// HeaderEventType carries the event's type name so that readers can
	// filter without decoding the payload.
	HeaderEventType = "Spa-Event-Type"
	// HeaderProvider names the provider an event is addressed to or about.
	HeaderProvider = "Spa-Provider"
)

// Subjects lists the subjects the event stream captures: one per aggregate,
// spa.<aggregate>.<id>.
var Subjects = []string{
	SubjectOf(spa.AggregateReferral, "*"),
	SubjectOf(spa.AggregateProvider, "*"),
	SubjectOf(spa.AggregatePolicy, "*"),
}

// Store appends and loads domain events. Safe for concurrent use.
type Store struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	log    *slog.Logger
	// reads and appends log an outage of the event log once each (reads
	// may be answered by any replica while appends wait for a leader).
	reads, appends *backoff.Gate
	// minReplicas is what the assets looked up later must have.
	minReplicas int
	// skip are undecodable events an aggregate's load steps over.
	skip map[uint64]bool
	// signer signs every event appended (nil: unsigned).
	signer Signer
	// batches takes the answers of Events' direct gets.
	batches batchMux
	// snapshots logs failures of the snapshots' bucket once while they
	// last; snapshotsOff is when, in Unix nanoseconds, a bucket that could
	// not be read is tried again (ADR 32).
	snapshots    *backoff.Gate
	snapshotsOff atomic.Int64
}

// Signer signs an event about to be appended: its subject and the SHA-256
// of its stored bytes; the signature is stored in the HeaderSignature
// header (ADR 26). signing.Key is one.
type Signer interface {
	SignEvent(subject string, hash []byte) (string, error)
}

// Open returns a store on the event stream once it exists and is as
// strong as req states (see Requirements); it waits, with backoff, while
// the stream does not exist yet or JetStream cannot answer, and logs that
// once. It never creates or changes the stream: Provision does.
func Open(ctx context.Context, nc *nats.Conn, req Requirements) (*Store, error) {
	// An access record whose ack never comes (a stream without a leader)
	// fails after a while instead of staying pending for ever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(attemptTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	stream, err := lookupStream(ctx, js, eventsConfig(Setup{}), req)
	if err != nil {
		return nil, err
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{nc: nc, js: js, stream: stream, log: log, minReplicas: max(req.MinReplicas, 1), skip: req.Skip, signer: req.Signer,
		reads: backoff.NewGate("event log reads", log), appends: backoff.NewGate("event log appends", log),
		snapshots: backoff.NewGate("snapshots bucket "+StateBucket, log)}, nil
}

// Stream returns the event stream, for consumers.
func (s *Store) Stream() jetstream.Stream { return s.stream }

// JetStream returns the JetStream context, for key-value buckets.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// SubjectOf returns the subject of an aggregate's events (spa.SubjectOf).
func SubjectOf(agg spa.Aggregate, id string) string { return spa.SubjectOf(agg, id) }

// Load returns every event of an aggregate, oldest first, and the sequence
// of the last one (0 when it has none): the first events in one batched
// direct get, any beyond them through an ordered consumer (see read). A
// store that cannot answer for a while (an election) is retried; one that
// stays so is KindUnavailable.
func (s *Store) Load(ctx context.Context, agg spa.Aggregate, id string) ([]spa.Record, uint64, error) {
	var recs []spa.Record
	var lastSeq uint64
	err := s.do(ctx, s.reads, func(ctx context.Context) error {
		var err error
		recs, lastSeq, err = s.load(ctx, SubjectOf(agg, id))
		return err
	})
	return recs, lastSeq, err
}

func (s *Store) load(ctx context.Context, subject string) ([]spa.Record, uint64, error) {
	events, err := s.read(ctx, subject, 1)
	if err != nil {
		return nil, 0, err
	}
	recs, _, last := records(events)
	return recs, last, nil
}

// retryFor bounds how long one call without a deadline retries a store
// that cannot answer (a leader election takes a few seconds) before it
// answers KindUnavailable; a call with a deadline retries until nine
// tenths of the time left, at most maxRetryFor, so that its caller hears
// UNAVAILABLE rather than its own deadline.
const (
	retryFor    = 10 * time.Second
	maxRetryFor = time.Minute
)

// attemptTimeout bounds one attempt: a stream without a leader often does
// not answer at all, and the same request is then sent again.
const attemptTimeout = 3 * time.Second

// do runs op, each attempt within attemptTimeout, retrying failures that
// pass (Retryable) with backoff (see retryFor); one that lasts is returned
// as KindUnavailable. gate logs an outage once, however many calls retry.
func (s *Store) do(ctx context.Context, gate *backoff.Gate, op func(context.Context) error) error {
	budget := retryFor
	if d, ok := ctx.Deadline(); ok {
		budget = min(time.Until(d)*9/10, maxRetryFor)
	}
	rctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	return unavailable(ctx, s.await(rctx, gate, op))
}

// await runs op like do, but retries until ctx ends: for work that has no
// caller waiting on an answer (a rebuild, a replay that streams).
func (s *Store) await(ctx context.Context, gate *backoff.Gate, op func(context.Context) error) error {
	r := &backoff.Retrier{Gate: gate, Max: time.Second}
	return backoff.Retry(ctx, r, Retryable, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return op(actx)
	})
}

// Append stores rec on its aggregate's subject if the last event there is
// still expectedLast (0: the subject must be empty). It returns the new
// event's sequence once JetStream has acknowledged (and, by default,
// fsynced) it, or spa.ErrConcurrentChange when another append won the
// race. A retry of an append that succeeded (same EventID) is answered
// with the first append's sequence and appends nothing; so Append itself
// sends the same message again when JetStream does not answer (an
// election), and a failure that lasts is KindUnavailable.
func (s *Store) Append(ctx context.Context, rec spa.Record, expectedLast uint64) (uint64, error) {
	var msg *nats.Msg
	err := s.do(ctx, s.reads, func(ctx context.Context) (err error) {
		msg, err = s.message(ctx, &spa.Append{Record: rec, Expected: expectedLast, Guard: true})
		return err
	})
	if err != nil {
		return 0, err
	}
	var seq uint64
	err = s.do(ctx, s.appends, func(ctx context.Context) error {
		ack, err := s.js.PublishMsg(ctx, msg,
			jetstream.WithMsgID(rec.EventID),
			jetstream.WithExpectLastSequencePerSubject(expectedLast),
			jetstream.WithExpectStream(StreamName))
		if err == nil {
			seq = ack.Sequence
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode {
			case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
				seq, err = s.ownAppend(ctx, msg.Subject, rec.EventID)
				return err
			case errCodeDuplicateMessageInProcess:
				// Our first sending is being stored: ask again.
				return &retryableError{fmt.Errorf("jetstream: append to %s: %w", msg.Subject, err)}
			}
		}
		return fmt.Errorf("jetstream: append to %s: %w", msg.Subject, err)
	})
	return seq, err
}

// HeaderHash carries the hex SHA-256 of an event's stored bytes, so that a
// changed last event of a subject (which no successor's chain link covers)
// is detected too.
const HeaderHash = "Spa-Hash"

// HeaderSignature carries the appending process's signature of the event
// (its subject and its Spa-Hash), "name base64(keyhash || signature)":
// an event without a valid one was not appended by SPA (ADR 26).
const HeaderSignature = "Spa-Sig"

// message encodes an append: it links the event into its subject's hash
// chain and turns an unguarded append into one guarded by the subject's
// current last sequence, so that every subject's chain stays a line.
func (s *Store) message(ctx context.Context, a *spa.Append) (*nats.Msg, error) {
	subject := SubjectOf(spa.AggregateOf(a.Record.Event), a.Record.AggregateID)
	var prev *jetstream.RawStreamMsg
	var err error
	switch {
	case !a.Guard:
		prev, err = s.stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			prev, err = nil, nil
		}
		a.Guard = true
		if prev != nil {
			a.Expected = prev.Sequence
		}
	case a.Expected > 0:
		prev, err = s.stream.GetMsg(ctx, a.Expected)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// The event decided on is not there (or this replica has not
			// got it yet): decide again on what is.
			return nil, spa.ErrConcurrentChange
		}
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: predecessor on %s: %w", subject, err)
	}
	var prevData []byte
	if prev != nil {
		if prev.Subject != subject {
			return nil, spa.ErrConcurrentChange
		}
		prevData = prev.Data
	}
	return s.encode(subject, a.Record, prevData)
}

// encode makes the message of rec on subject, linked to the stored bytes
// of its predecessor on the subject (nil for the subject's first event),
// with its hash and signature.
func (s *Store) encode(subject string, rec spa.Record, prevData []byte) (*nats.Msg, error) {
	if prevData != nil {
		h := sha256.Sum256(prevData)
		rec.PrevHash = h[:]
	}
	data, err := codec.MarshalRecord(rec)
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(HeaderEventType, spa.EventName(rec.Event))
	if p := spa.ProviderOf(rec); p != "" {
		msg.Header.Set(HeaderProvider, p)
	}
	h := sha256.Sum256(data)
	msg.Header.Set(HeaderHash, hex.EncodeToString(h[:]))
	if s.signer != nil {
		sig, err := s.signer.SignEvent(subject, h[:])
		if err != nil {
			return nil, fmt.Errorf("jetstream: sign event on %s: %w", subject, err)
		}
		msg.Header.Set(HeaderSignature, sig)
	}
	return msg, nil
}

// ownAppend tells a retry of an append that succeeded (its acknowledgement
// was lost) from a lost race: both may fail the expected-sequence check,
// but only in the first is the subject's last event our own. It asks the
// stream's leader: a direct get may be answered by a replica that has not
// got our event yet.
func (s *Store) ownAppend(ctx context.Context, subject, eventID string) (uint64, error) {
	seq, id, err := s.lastOnLeader(ctx, subject)
	if err != nil {
		return 0, err
	}
	if seq > 0 && id == eventID {
		return seq, nil
	}
	return 0, spa.ErrConcurrentChange
}

// lastOnLeader returns the sequence and message id of the last event on
// subject as the stream's leader has it (0 when there is none).
func (s *Store) lastOnLeader(ctx context.Context, subject string) (uint64, string, error) {
	msg, err := s.onLeader(ctx, StreamName, apiGet{LastBySubject: subject})
	if err != nil || msg == nil {
		return 0, "", err
	}
	h, err := nats.DecodeHeadersMsg(msg.Headers)
	if err != nil {
		return 0, "", fmt.Errorf("jetstream: last event on %s: headers: %w", subject, err)
	}
	return msg.Seq, h.Get(jetstream.MsgIDHeader), nil
}

// apiGet is a request of JetStream's message get API.
type apiGet struct {
	Seq           uint64 `json:"seq,omitempty"`
	LastBySubject string `json:"last_by_subj,omitempty"`
}

// storedMsg is a message as JetStream's message get API answers it.
type storedMsg struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	Headers []byte `json:"hdrs"`
	Data    []byte `json:"data"`
}

// onLeader gets a message from a stream's leader (a direct get may be
// answered by a replica that is behind), or nil when there is none.
func (s *Store) onLeader(ctx context.Context, stream string, get apiGet) (*storedMsg, error) {
	req, err := json.Marshal(get)
	if err != nil {
		return nil, err
	}
	reply, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, fmt.Errorf("jetstream: get %+v: %w", get, err)
	}
	var res struct {
		Error   *jetstream.APIError `json:"error"`
		Message *storedMsg          `json:"message"`
	}
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		return nil, fmt.Errorf("jetstream: get %+v: %w", get, err)
	}
	switch {
	case res.Error != nil && res.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, nil
	case res.Error != nil:
		return nil, fmt.Errorf("jetstream: get %+v: %w", get, res.Error)
	case res.Message == nil:
		return nil, fmt.Errorf("jetstream: get %+v: empty answer", get)
	}
	return res.Message, nil
}

// LastSequence returns the stream's last sequence (0 when empty), retried
// like Load.
func (s *Store) LastSequence(ctx context.Context) (uint64, error) {
	var last uint64
	err := s.do(ctx, s.reads, func(ctx context.Context) (err error) {
		last, err = s.lastSequence(ctx)
		return err
	})
	return last, err
}

// Identity names the event log (the stream, and when it was created: a
// stream recreated or restored from an older copy is another log) and
// returns its last sequence; retried like Load.
func (s *Store) Identity(ctx context.Context) (string, uint64, error) {
	var id string
	var last uint64
	err := s.do(ctx, s.reads, func(ctx context.Context) error {
		info, err := s.stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("jetstream: stream info: %w", err)
		}
		id = info.Config.Name + " created " + info.Created.UTC().Format(time.RFC3339Nano)
		last = info.State.LastSeq
		return nil
	})
	return id, last, err
}

func (s *Store) lastSequence(ctx context.Context) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream: stream info: %w", err)
	}
	return info.State.LastSeq, nil
}

// batch headers (JetStream atomic batch publish) and the error codes of a
// batch whose message ids were seen before.
const (
	errCodeBatchDuplicateMessage     jetstream.ErrorCode = 10201
	errCodeDuplicateMessageInProcess jetstream.ErrorCode = 10158

	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

// AppendBatch appends events to several subjects atomically: all of them,
// or none when any guard fails (spa.ErrConcurrentChange). It returns each
// event's sequence. A single event is a plain Append. An event on a
// subject that an earlier event of the batch is on follows that one in
// the subject's chain; the earlier one's guard covers it (its own is not
// sent: JetStream checks a subject's sequence once per batch).
//
// When JetStream does not answer, the whole batch is sent again (a new
// batch with the same message ids and guards): if the first one was
// committed after all, the guards fail and the caller decides again on
// what is there, as after any lost race. A failure that lasts is
// KindUnavailable.
func (s *Store) AppendBatch(ctx context.Context, batch []spa.Append) ([]uint64, error) {
	if len(batch) == 1 && batch[0].Guard {
		seq, err := s.Append(ctx, batch[0].Record, batch[0].Expected)
		return []uint64{seq}, err
	}
	var seqs []uint64
	err := s.do(ctx, s.appends, func(ctx context.Context) (err error) {
		seqs, err = s.appendBatch(ctx, batch)
		return err
	})
	return seqs, err
}

func (s *Store) appendBatch(ctx context.Context, batch []spa.Append) ([]uint64, error) {
	id := nuid.Next()
	// written holds the stored bytes of the batch's last event on each
	// subject: a later event on the subject follows it, unguarded (the
	// subject's first event in the batch carries the guard, and the batch
	// is stored whole or not at all).
	written := make(map[string][]byte, len(batch))
	for i, b := range batch {
		subject := SubjectOf(spa.AggregateOf(b.Record.Event), b.Record.AggregateID)
		var msg *nats.Msg
		var err error
		prevData, follows := written[subject]
		if follows {
			msg, err = s.encode(subject, b.Record, prevData)
		} else {
			msg, err = s.message(ctx, &b)
		}
		if err != nil {
			return nil, err
		}
		written[subject] = msg.Data
		msg.Header.Set(jetstream.MsgIDHeader, b.Record.EventID)
		if !follows {
			msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(b.Expected, 10))
		}
		msg.Header.Set(headerBatchID, id)
		msg.Header.Set(headerBatchSeq, strconv.Itoa(i+1))
		last := i == len(batch)-1
		if last {
			msg.Header.Set(headerBatchCommit, "1")
		}
		if i > 0 && !last {
			if err := s.nc.PublishMsg(msg); err != nil {
				return nil, fmt.Errorf("jetstream: batch publish: %w", err)
			}
			continue
		}
		reply, err := s.nc.RequestMsgWithContext(ctx, msg)
		if err != nil {
			return nil, fmt.Errorf("jetstream: batch publish: %w", err)
		}
		if !last && len(reply.Data) == 0 {
			continue
		}
		var ack struct {
			Error *jetstream.APIError `json:"error"`
			Seq   uint64              `json:"seq"`
			Count int                 `json:"count"`
		}
		if err := json.Unmarshal(reply.Data, &ack); err != nil {
			return nil, fmt.Errorf("jetstream: batch ack: %w", err)
		}
		if ack.Error != nil {
			switch ack.Error.ErrorCode {
			case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant,
				errCodeBatchDuplicateMessage, errCodeDuplicateMessageInProcess:
				// A guard failed, or the same events (same ids) were
				// appended by another writer: either way, decide again.
				return nil, spa.ErrConcurrentChange
			}
			return nil, fmt.Errorf("jetstream: batch append: %w", ack.Error)
		}
		if !last {
			return nil, fmt.Errorf("jetstream: batch append: unexpected ack before the commit")
		}
		seqs := make([]uint64, len(batch))
		for j := range seqs {
			seqs[j] = ack.Seq - uint64(len(batch)-1-j)
		}
		return seqs, nil
	}
	return nil, errors.New("jetstream: empty batch")
}

// Holes reports whether no event is stored, or will ever be, at any
// sequence from from to to: each is below the stream's first sequence or
// one of its deleted sequences, as the stream's leader answers. A reader
// that finds such a gap may step over it; any other gap must be read
// again. It waits out an outage until ctx ends.
func (s *Store) Holes(ctx context.Context, from, to uint64) (bool, error) {
	var holes bool
	err := s.await(ctx, s.reads, func(ctx context.Context) error {
		info, err := s.stream.Info(ctx, jetstream.WithDeletedDetails(true))
		if err != nil {
			return fmt.Errorf("jetstream: stream info: %w", err)
		}
		deleted := make(map[uint64]bool, len(info.State.Deleted))
		for _, seq := range info.State.Deleted {
			deleted[seq] = true
		}
		holes = to <= info.State.LastSeq
		for seq := from; seq <= to && holes; seq++ {
			holes = seq < info.State.FirstSeq || deleted[seq]
		}
		return nil
	})
	return holes, err
}

// HashAt returns the SHA-256 of the bytes stored at seq as the stream's
// leader has them, or nil when none is (deleted, or beyond the end);
// retried like Load.
func (s *Store) HashAt(ctx context.Context, seq uint64) ([]byte, error) {
	var hash []byte
	err := s.do(ctx, s.reads, func(ctx context.Context) error {
		data, err := s.onLeader(ctx, StreamName, apiGet{Seq: seq})
		if err != nil || data == nil {
			hash = nil
			return err
		}
		h := sha256.Sum256(data.Data)
		hash = h[:]
		return nil
	})
	return hash, err
}
