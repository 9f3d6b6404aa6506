// Package app is the table of contents of SPA: every command and query a
// client can run, each in its own file. It turns commands into events on
// the event store (deciding with the domain core, retrying when a concurrent
// change wins the race) and sends queries to a read model.
package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
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

// Snapshots is what a Store may do besides (jetstream.Store does): keep
// aggregates' snapshots and an index of request ids, so that a command
// reads an aggregate's state in a few round trips however many events it
// has (ADR 32). The App uses it for the aggregates that have snapshot
// rules (providers) when its Store is one.
type Snapshots interface {
	// History returns the aggregate's latest snapshot folded by rules that
	// the log confirms and that check accepts, and the events after it;
	// or, without one, all its events. With a request id it also says
	// where the request index puts that request's event.
	History(ctx context.Context, agg spa.Aggregate, id, rules, requestID string, check func(state []byte) error) (spa.History, error)
	// SaveSnapshot stores snap once the request index holds requests,
	// unless the snapshot entry changed since revision; best effort.
	SaveSnapshot(ctx context.Context, agg spa.Aggregate, id, rules string, revision uint64, snap spa.Snapshot, requests []spa.RequestAt)
}

// snapshotKind is how an aggregate's snapshots are made: the version of
// the rules its state is folded by, and a check that a stored state
// decodes as one.
type snapshotKind struct {
	rules string
	check func(state []byte) error
}

// snapshotted lists the aggregates that have snapshots: providers, whose
// reservations and releases make long histories. A referral's history is
// short, and its commands answer with its state.
var snapshotted = map[spa.Aggregate]snapshotKind{
	spa.AggregateProvider: {rules: spa.ProviderStateVersion, check: decodes[spa.Provider]},
}

// decodes reports whether state decodes as an S.
func decodes[S any](state []byte) error { return json.Unmarshal(state, new(S)) }

// snapshotEvery is how many events after its snapshot a command reads
// before it saves a new one; maxIndexed bounds the request ids one save
// adds to the index (the first save of a long history then covers only
// its start, and the commands after it carry on).
const (
	snapshotEvery = 16
	maxIndexed    = 256
)

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
	snapshots   Snapshots
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
	a.snapshots, _ = store.(Snapshots)
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

// target is the aggregate a change acts on.
type target struct {
	agg spa.Aggregate
	id  string
	// request is the client's request id, looked up in the request index
	// with the aggregate's snapshot.
	request string
	// fresh: the first attempt decides on no events without loading:
	// right for a new aggregate, and one that exists after all makes the
	// append fail as a lost race, which loads it.
	fresh bool
}

// errWholeHistory, from a decider, asks change to decide again on all of
// the aggregate's events rather than a snapshot's and those after it.
var errWholeHistory = errors.New("app: decide on the whole history")

// change is the one load-decide-append loop of every use case that
// changes the log: it loads an aggregate's history (history), decides,
// and appends what was decided, atomically, each event under its guard.
// A lost race is decided again on the history as it is then (after
// settle has let the decider's other sources catch up, when given), up to
// maxAttempts times, then answered with spa.ErrConcurrentChange. It
// returns the sequences appended: none when decide had nothing to append.
func (a *App) change(ctx context.Context, t target, settle func(context.Context) error,
	decide func(h spa.History) ([]spa.Append, error)) ([]uint64, error) {
	whole := false
	for attempt := 1; ; attempt++ {
		var h spa.History
		if !t.fresh || attempt > 1 {
			var err error
			if h, err = a.history(ctx, t, whole); err != nil {
				return nil, err
			}
		}
		batch, err := decide(h)
		if errors.Is(err, errWholeHistory) && !whole {
			whole = true
			attempt--
			continue
		}
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

// history loads what a command on t decides on: for an aggregate with
// snapshot rules, on a store that keeps snapshots, its latest snapshot
// and the events after it (unless whole); otherwise all its events.
func (a *App) history(ctx context.Context, t target, whole bool) (spa.History, error) {
	if k, ok := snapshotted[t.agg]; ok && a.snapshots != nil && !whole {
		return a.snapshots.History(ctx, t.agg, t.id, k.rules, t.request, k.check)
	}
	recs, last, err := a.store.Load(ctx, t.agg, t.id)
	return spa.History{Records: recs, Last: last}, err
}

// saveSnapshot saves a snapshot of h's aggregate when h read snapshotEvery
// events or more after its snapshot (ADR 32): the state after them, or
// after the ones before the first request id beyond maxIndexed, and
// those request ids for the index. It is best effort, and left out for
// aggregates without snapshots and for a history loaded whole (to answer
// a retry older than the snapshot), which has no hashes.
func saveSnapshot[S any, P state[S]](ctx context.Context, a *App, t target, h spa.History) {
	k, ok := snapshotted[t.agg]
	if !ok || a.snapshots == nil || ctx.Err() != nil || len(h.Records) < snapshotEvery || len(h.Hashes) != len(h.Records) {
		return
	}
	s, err := restore[S](h)
	if err != nil {
		return
	}
	n := len(h.Records)
	var requests []spa.RequestAt
	for i, rec := range h.Records {
		if rec.Request.ID == "" {
			continue
		}
		if len(requests) == maxIndexed {
			n = i
			break
		}
		requests = append(requests, spa.RequestAt{ID: rec.Request.ID, Sequence: rec.Sequence})
	}
	for _, rec := range h.Records[:n] {
		P(&s).Apply(rec)
	}
	state, err := json.Marshal(s)
	if err != nil {
		return
	}
	snap := spa.Snapshot{Sequence: h.Records[n-1].Sequence, Hash: h.Hashes[n-1], State: state}
	a.snapshots.SaveSnapshot(ctx, t.agg, t.id, k.rules, h.Revision, snap, requests)
}

// restore returns the state h's snapshot holds (the zero state when it
// has none), decoded afresh: folding shares the state's slices.
func restore[S any](h spa.History) (S, error) {
	var s S
	if h.Snapshot == nil {
		return s, nil
	}
	if err := json.Unmarshal(h.Snapshot.State, &s); err != nil {
		return s, fmt.Errorf("app: snapshot at %d: %w", h.Snapshot.Sequence, err)
	}
	return s, nil
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
// carries (for a provider: one after its snapshot, or one the request
// index names, ADR 32) is a retry: the same request is answered as the first time (the
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
	t := target{agg: agg, id: id, fresh: assumeNew}
	if idErr == nil {
		t.request = meta.Request.ID
	}
	var (
		s       S
		retry   bool   // the command is a retry, answered from the log
		seq     uint64 // a retry's answer
		decided spa.Record
		loaded  spa.History // what the last attempt decided on
	)
	attempt := func(h spa.History) ([]spa.Append, error) {
		loaded = h
		var err error
		if s, err = restore[S](h); err != nil {
			return nil, err
		}
		for _, rec := range h.Records {
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
		if first := retried(h.Records, meta.Request); idErr == nil && first >= 0 {
			retry = true
			s, seq, err = answered[S, P](h, first, meta.Request, agg, id)
			return nil, err
		}
		if t.request != "" && h.Snapshot != nil && h.Requested > 0 {
			// The index puts the request before the snapshot: a retry of
			// an older request, answered from the whole history.
			return nil, errWholeHistory
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
		batch := []spa.Append{{Record: decided, Expected: h.Last, Guard: true}}
		if ch.Provider != nil {
			batch = append(batch, spa.Append{Record: record(meta, ch.ProviderODS, decided.EventID, now, recorded, ch.Provider), Guard: ch.GuardProvider})
		}
		return batch, nil
	}
	var seqs []uint64
	var err error
	if valid {
		seqs, err = a.change(ctx, t, nil, attempt)
		saveSnapshot[S, P](ctx, a, t, loaded)
	} else {
		_, err = attempt(spa.History{}) // decides, to report the bad id; appends nothing
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

// answered answers a retried request from h, whose record first it
// appended: the state just after it, and its sequence; or
// KindAlreadyExists when the id came with another request.
func answered[S any, P state[S]](h spa.History, first int, req spa.Request, agg spa.Aggregate, id string) (S, uint64, error) {
	rec := h.Records[first]
	s, err := restore[S](h)
	if err != nil {
		return s, 0, err
	}
	if !bytes.Equal(rec.Request.Hash, req.Hash) {
		return s, 0, spa.Errorf(spa.KindAlreadyExists, "request_id %q was already used on %s %s for another request (event %d)", req.ID, agg, id, rec.Sequence)
	}
	for _, r := range h.Records[:first+1] {
		P(&s).Apply(r)
	}
	if _, noted := rec.Event.(spa.NothingChanged); noted {
		return s, 0, nil // answered as the first time: nothing decided
	}
	return s, rec.Sequence, nil
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
