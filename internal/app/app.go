// Package app is the table of contents of SPA: every command and query a
// client can run, each in its own file. It turns commands into events on
// the event store (deciding with the domain core, retrying when a concurrent
// change wins the race) and sends queries to a read model.
package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// Store is the event log, as the application needs it.
type Store interface {
	// Load returns an aggregate's events, oldest first, and the sequence of
	// the last one (0 when there are none).
	Load(ctx context.Context, agg spa.Aggregate, id string) ([]spa.Record, uint64, error)
	// AppendBatch appends events atomically, each under its guard, and
	// returns their sequences; when a guard fails nothing is appended and
	// the error wraps spa.ErrConcurrentChange.
	AppendBatch(ctx context.Context, batch []spa.Append) ([]uint64, error)
}

// ReadModel answers queries. A request's min_sequence makes it wait, within
// ctx, until the model has applied that sequence. Errors are *spa.Error
// (KindNotFound, KindInvalid, KindUnavailable, KindDeadlineExceeded) or
// internal.
type ReadModel interface {
	GetReferral(ctx context.Context, req *spav1.GetReferralRequest) (*spav1.GetReferralResponse, error)
	ListReferrals(ctx context.Context, req *spav1.ListReferralsRequest) (*spav1.ListReferralsResponse, error)
	ListProviders(ctx context.Context, req *spav1.ListProvidersRequest) (*spav1.ListProvidersResponse, error)
	ListAssignments(ctx context.Context, req *spav1.ListAssignmentsRequest) (*spav1.ListAssignmentsResponse, error)
	// ListAccess answers from an index of the access log (ADR 33), once
	// it has applied the access log up to sequence last.
	ListAccess(ctx context.Context, req *spav1.ListAccessRequest, last uint64) (*spav1.ListAccessResponse, error)
}

// EventLog reads the event log as stored.
type EventLog interface {
	// Replay calls fn for every stored event matching f, in log order, up
	// to the log's end when it started.
	Replay(ctx context.Context, f spa.EventFilter, fn func(spa.StoredEvent) error) error
	// Watch calls fn for every event addressed to provider after sequence
	// after, as appended, and with an empty event (a heartbeat carrying the
	// last sequence seen) every interval without one; until ctx ends.
	Watch(ctx context.Context, provider string, after uint64, interval time.Duration, fn func(spa.StoredEvent) error) error
}

// AccessLog records who read which referral's data.
type AccessLog interface {
	// Record appends one record of the call naming every referral read,
	// durably, before returning.
	Record(ctx context.Context, access spa.Access, read []spa.Accessed) error
	// Last returns the access log's last sequence: every record
	// acknowledged before the call is at or before it.
	Last(ctx context.Context) (uint64, error)
}

// Meta is who sent a command or query, the piece of work it belongs to,
// why, and when.
type Meta struct {
	Actor         spa.Actor
	CorrelationID string
	// Purpose is why patient data is read (one of spa.Purposes), Method
	// the call that reads it, and CallID the call's request id
	// (x-request-id); all go in the access log.
	Purpose string
	Method  string
	CallID  string
	// Request is the client's request id for a command and the hash of
	// what it asked (zero when it sent none): update answers a retry from
	// the log.
	Request spa.Request
	// OccurredAt is the command's business time when the client states
	// one (a delayed or migrated record); zero means now. It decides the
	// policy in force and is the events' occurred-at. spa.BusinessTime
	// checks it (spa.InvalidTime stands for a timestamp that is none).
	OccurredAt time.Time
}

// App runs every use case. Safe for concurrent use.
type App struct {
	store       Store
	reads       ReadModel
	log         EventLog
	access      AccessLog
	now         func() time.Time
	maxAttempts int
	// worker and routing: a worker's App takes routing steps and raises
	// alerts (WithWorker).
	worker  string
	routing Routing
	// patients remembers each referral's NHS number for the access log.
	patients patients
}

// Option adjusts an App.
type Option func(*App)

// WithClock sets the clock used for business time (tests).
func WithClock(now func() time.Time) Option { return func(a *App) { a.now = now } }

// WithAudit sets the event log that replays and watches read, and the
// access log every read of patient data is recorded in.
func WithAudit(log EventLog, access AccessLog) Option {
	return func(a *App) { a.log, a.access = log, access }
}

// WithMaxAttempts sets how many times a command is decided again after a
// concurrent change before the caller gets KindAborted (default 5).
func WithMaxAttempts(n int) Option { return func(a *App) { a.maxAttempts = n } }

// New returns an App on store and read model.
func New(store Store, reads ReadModel, opts ...Option) *App {
	a := &App{store: store, reads: reads, now: time.Now, maxAttempts: 5}
	for _, o := range opts {
		o(a)
	}
	return a
}

// state is an aggregate's state, rebuilt by applying its records.
type state[S any] interface {
	*S
	Apply(spa.Record)
}

// change is the one load-decide-append loop of every use case that
// changes the log: it loads an aggregate's events, decides, and appends
// what was decided, atomically, each event under its guard. A lost race is
// decided again on the events as they are then (after settle has let the
// decider's other sources catch up, when given), up to maxAttempts times,
// then answered with spa.ErrConcurrentChange. It returns the sequences
// appended: none when decide had nothing to append.
//
// With fresh the first attempt decides on no events without loading:
// right for a new aggregate, and one that exists after all makes the
// append fail as a lost race, which loads it.
func (a *App) change(ctx context.Context, agg spa.Aggregate, id string, fresh bool, settle func(context.Context) error,
	decide func(recs []spa.Record, last uint64) ([]spa.Append, error)) ([]uint64, error) {
	for attempt := 1; ; attempt++ {
		var recs []spa.Record
		var last uint64
		if !fresh || attempt > 1 {
			var err error
			if recs, last, err = a.store.Load(ctx, agg, id); err != nil {
				return nil, err
			}
		}
		batch, err := decide(recs, last)
		if err != nil || len(batch) == 0 {
			return nil, err
		}
		seqs, err := a.store.AppendBatch(ctx, batch)
		if errors.Is(err, spa.ErrConcurrentChange) && attempt < a.maxAttempts {
			if settle != nil {
				if err := settle(ctx); err != nil {
					return nil, err
				}
			}
			continue
		}
		return seqs, err
	}
}

// update runs a client's command on an aggregate through change: it
// rebuilds the aggregate's state, decides, and appends the change guarded
// by the sequence it decided on (a provider event that comes with it, in
// the same atomic batch). It returns the state after the event and the
// event's sequence (0 when decide returned no event: nothing to append).
// With assumeNew the first attempt decides on an empty aggregate (a new
// submission).
//
// A command with a request id that an event of the aggregate already
// carries is a retry: the same request is answered as the first time (the
// state just after that event, and its sequence) and appends nothing;
// another request with that id is KindAlreadyExists. A command with a
// request id that decides nothing appends NothingChanged, so that its
// retry is answered so too.
//
// The caller is checked against the aggregate (authorize) before
// anything else, a retry included, so that nobody learns of another's
// request by reusing its id.
func update[S any, P state[S]](ctx context.Context, a *App, meta Meta, agg spa.Aggregate, id, causationID string, assumeNew bool,
	decide func(s S, now time.Time) (spa.Change, error)) (S, uint64, error) {
	return updateIf[S, P](ctx, a, meta, agg, id, causationID, assumeNew, nil, decide)
}

// updateIf is update with a command's own check of the caller against
// the state (allow, run after authorize on every attempt and retry).
func updateIf[S any, P state[S]](ctx context.Context, a *App, meta Meta, agg spa.Aggregate, id, causationID string, assumeNew bool,
	allow func(s S) error, decide func(s S, now time.Time) (spa.Change, error)) (S, uint64, error) {
	// An id that is not one never reaches the store (it could be a
	// wildcard subject); decide then reports it as a field violation.
	valid := spa.ValidAggregateID(agg, id)
	idErr := spa.CheckRequestID(meta.Request.ID)
	var (
		s       S
		retry   bool   // the command is a retry, answered from the log
		seq     uint64 // a retry's answer
		decided spa.Record
	)
	attempt := func(recs []spa.Record, last uint64) ([]spa.Append, error) {
		s = *new(S)
		for _, rec := range recs {
			P(&s).Apply(rec)
		}
		if valid {
			// An invalid id is left for decide to report with the rest.
			if err := authorize(meta, id, P(&s)); err != nil {
				return nil, err
			}
			if allow != nil {
				if err := allow(s); err != nil {
					return nil, err
				}
			}
		}
		if first := retried(recs, meta.Request); idErr == nil && first >= 0 {
			var err error
			retry = true
			s, seq, err = answered[S, P](recs[:first+1], meta.Request, agg, id)
			return nil, err
		}
		recorded := a.now()
		// A bad occurred_at or request id is reported with the rest of the
		// request's bad fields, which are checked at the time recorded.
		now, timeErr := spa.BusinessTime(meta.OccurredAt, recorded)
		ch, err := decide(s, now)
		if err = spa.JoinInvalid(err, timeErr, idErr); err != nil {
			return nil, err
		}
		if ch.Event == nil {
			if meta.Request.ID == "" || !valid {
				return nil, nil
			}
			// Decided nothing: noted, so that a retry is answered so
			// too, whatever happens to the state meanwhile.
			ch.Event = spa.NothingChanged{Aggregate: agg}
		}
		if !valid {
			return nil, fmt.Errorf("app: decided %s for the invalid %s id %q", spa.EventName(ch.Event), agg, id)
		}
		decided = record(meta, id, causationID, now, recorded, ch.Event)
		decided.Request = meta.Request
		batch := []spa.Append{{Record: decided, Expected: last, Guard: true}}
		if ch.Provider != nil {
			batch = append(batch, spa.Append{Record: record(meta, ch.ProviderODS, decided.EventID, now, recorded, ch.Provider), Guard: ch.GuardProvider})
		}
		return batch, nil
	}
	var seqs []uint64
	var err error
	if valid {
		seqs, err = a.change(ctx, agg, id, assumeNew, nil, attempt)
	} else {
		_, err = attempt(nil, 0) // decides, to report the bad id; appends nothing
	}
	if err != nil || retry || len(seqs) == 0 {
		return s, seq, err
	}
	decided.Sequence = seqs[0]
	P(&s).Apply(decided)
	if _, noted := decided.Event.(spa.NothingChanged); noted {
		return s, 0, nil
	}
	return s, seqs[0], nil
}

// retried returns the index of the record appended by the request with
// req's id, or -1 (also when req has none).
func retried(recs []spa.Record, req spa.Request) int {
	if req.ID == "" {
		return -1
	}
	return slices.IndexFunc(recs, func(r spa.Record) bool { return r.Request.ID == req.ID })
}

// answered answers a retried request from the records up to and
// including the one it appended: the state then, and that record's
// sequence; or KindAlreadyExists when the id came with another request.
func answered[S any, P state[S]](recs []spa.Record, req spa.Request, agg spa.Aggregate, id string) (S, uint64, error) {
	var s S
	first := recs[len(recs)-1]
	if !bytes.Equal(first.Request.Hash, req.Hash) {
		return s, 0, spa.Errorf(spa.KindAlreadyExists, "request_id %q was already used on %s %s for another request (event %d)", req.ID, agg, id, first.Sequence)
	}
	for _, rec := range recs {
		P(&s).Apply(rec)
	}
	if _, noted := first.Event.(spa.NothingChanged); noted {
		return s, 0, nil // answered as the first time: nothing decided
	}
	return s, first.Sequence, nil
}

// record wraps an event in its envelope.
func record(meta Meta, id, causationID string, occurred, recorded time.Time, e spa.Event) spa.Record {
	return spa.Record{
		EventID:       rand.Text(),
		AggregateID:   id,
		OccurredAt:    occurred,
		RecordedAt:    recorded,
		Actor:         meta.Actor,
		CausationID:   causationID,
		CorrelationID: meta.CorrelationID,
		Event:         e,
	}
}

// answer is the answer to a command that may decide nothing: the event's
// sequence and false, or, when it decided nothing, the aggregate's version
// and true (unchanged).
func answer(version, seq uint64, err error) (uint64, bool, error) {
	switch {
	case err != nil:
		return 0, false, err
	case seq == 0:
		return version, true, nil
	}
	return seq, false, nil
}

// one adapts a decision of a single event to update.
func one[S, C any](decide func(S, C, time.Time) (spa.Event, error), c C) func(S, time.Time) (spa.Change, error) {
	return func(s S, now time.Time) (spa.Change, error) {
		e, err := decide(s, c, now)
		return spa.Change{Event: e}, err
	}
}

// recordAccess records that meta's caller read these referrals' data. It
// is called before the data is returned, so that no read goes unrecorded.
func (a *App) recordAccess(ctx context.Context, meta Meta, read ...spa.Accessed) error {
	if a.access == nil || len(read) == 0 {
		return nil
	}
	return a.access.Record(ctx, a.accessOf(meta), read)
}

// recordReads is recordAccess of referrals known by id: their patients
// are looked up (patients), the read model answering once it has applied
// sequence seen.
func (a *App) recordReads(ctx context.Context, meta Meta, seen uint64, ids ...string) error {
	if a.access == nil || len(ids) == 0 {
		return nil
	}
	read := make([]spa.Accessed, len(ids))
	for i, id := range ids {
		nhs, err := a.patients.of(ctx, a.reads, id, seen)
		if err != nil {
			return err
		}
		read[i] = spa.Accessed{ReferralID: id, NHSNumber: nhs}
	}
	return a.access.Record(ctx, a.accessOf(meta), read)
}

// RecordRefusedRead records that meta's caller tried to read a referral's
// data and was refused: the access log lists attempts as well as reads.
func (a *App) RecordRefusedRead(ctx context.Context, meta Meta, referralID string) error {
	if a.access == nil || !spa.ValidAggregateID(spa.AggregateReferral, referralID) {
		return nil
	}
	acc := a.accessOf(meta)
	acc.Refused = true
	nhs, err := a.patients.of(ctx, a.reads, referralID, 0)
	if err != nil {
		return err
	}
	return a.access.Record(ctx, acc, []spa.Accessed{{ReferralID: referralID, NHSNumber: nhs}})
}

func (a *App) accessOf(meta Meta) spa.Access {
	return spa.Access{Actor: meta.Actor, Purpose: meta.Purpose, Method: meta.Method, At: a.now(), CorrelationID: meta.CorrelationID, RequestID: meta.CallID}
}
