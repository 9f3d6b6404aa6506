// Package queryserver answers a worker's NATS requests: queries of its
// read model, in the read models' queue group, and its own status and
// rebuild requests (package query has the protocol).
package queryserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/proto"

	"spa/internal/bolt"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	ijs "spa/internal/jetstream"
	"spa/internal/query"
	"spa/internal/spa"
)

const (
	// maxWait caps how long a query waits for a consistency token.
	maxWait = time.Minute
	// quickWait is how long a query waits for its token before asking the
	// log whether the token is beyond it (OUT_OF_RANGE).
	quickWait = 100 * time.Millisecond
	// maxInFlight bounds concurrent queries per worker.
	maxInFlight = 256
	// replyHeadroom is kept free of a reply's payload for its headers.
	replyHeadroom = 8 << 10
)

// queryService answers queries from one read model.
type queryService struct {
	model *bolt.Model
	store *ijs.Store
	// last is the log's last sequence as last read, to answer a token
	// beyond it at once.
	last       atomic.Uint64
	maxPayload int
	admit      *admission
}

// admission admits a service's requests until it is closed, at most max
// at once (0: no bound), each on its own goroutine; closing ends their
// waits (ctx) and waits for them, and a request that arrives later, or
// finds max reached, is answered UNAVAILABLE at once (another worker of
// the queue group may answer the retry).
type admission struct {
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func newAdmission(max int) *admission {
	a := &admission{}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if max > 0 {
		a.sem = make(chan struct{}, max)
	}
	return a
}

// wrap returns h as a micro handler run under a.
func (a *admission) wrap(h func(micro.Request)) micro.HandlerFunc {
	return func(req micro.Request) {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			req.Error(query.CodeUnavailable, "this worker is stopping; ask again", nil)
			return
		}
		if a.sem != nil {
			select {
			case a.sem <- struct{}{}:
			default:
				a.mu.Unlock()
				req.Error(query.CodeUnavailable, "this read model is busy; ask again", nil)
				return
			}
		}
		a.wg.Add(1)
		a.mu.Unlock()
		go func() {
			defer func() {
				if a.sem != nil {
					<-a.sem
				}
				a.wg.Done()
			}()
			h(req)
		}()
	}
}

// close stops admitting, ends the waits of the admitted and waits for
// them.
func (a *admission) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
}

// ServeQueries registers the query endpoints of model on nc. stop
// unregisters them and waits for queries in flight, so the model may then
// be closed.
func ServeQueries(nc *nats.Conn, model *bolt.Model, store *ijs.Store) (stop func(), err error) {
	q := &queryService{model: model, store: store, maxPayload: int(nc.MaxPayload()), admit: newAdmission(maxInFlight)}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        query.ServiceName,
		Version:     query.Version,
		Description: "SPA referral read model queries",
	})
	if err != nil {
		return nil, fmt.Errorf("queryserver: query service: %w", err)
	}
	endpoints := []struct {
		name, subject string
		h             func(micro.Request)
	}{
		{"get", query.SubjectGet, serve(q, q.get)},
		{"list", query.SubjectList, serve(q, q.list)},
		{"providers", query.SubjectProviders, serve(q, q.providers)},
		{"assignments", query.SubjectAssignments, serve(q, q.assignments)},
		{"feed", query.SubjectFeed, q.feed},
		{"status", query.SubjectStatus, q.status},
		{"digest", query.SubjectDigest, digestOf(model)},
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, q.admit.wrap(e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			q.admit.close()
			svc.Stop()
			return nil, fmt.Errorf("queryserver: endpoint %s: %w", e.name, err)
		}
	}
	return func() {
		q.admit.close()
		svc.Stop()
	}, nil
}

// requestContext returns the context of a request: it ends at the
// caller's deadline (sent in a header, at most maxWait away) or when the
// service stops.
func (q *queryService) requestContext(req micro.Request) (context.Context, context.CancelFunc) {
	return untilDeadline(q.admit.ctx, req)
}

// untilDeadline returns a context of parent that ends at req's caller's
// deadline (sent in a header), at most maxWait away.
func untilDeadline(parent context.Context, req micro.Request) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(maxWait)
	if v := req.Headers().Get(query.HeaderWaitUntil); v != "" {
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil && time.Unix(0, ns).Before(deadline) {
			deadline = time.Unix(0, ns)
		}
	}
	return context.WithDeadline(parent, deadline)
}

// waitFor waits until seq is applied or ctx (the request's) ends. A seq
// beyond the log's last sequence is refused (KindOutOfRange) after at most
// quickWait, however short the deadline: no wait would ever see it
// applied.
func (q *queryService) waitFor(ctx context.Context, seq uint64) error {
	if seq == 0 || q.model.Applied() >= seq {
		return nil
	}
	deadline, _ := ctx.Deadline()
	stopping := func() error {
		if q.admit.ctx.Err() != nil {
			return spa.Errorf(spa.KindUnavailable, "this worker is stopping; ask again")
		}
		return spa.Errorf(spa.KindDeadlineExceeded, "read model has not applied sequence %d yet", seq)
	}
	// A token from a write just made is usually applied within
	// milliseconds: the log is asked whether it reaches seq at all only
	// when the model has not got there after a short wait.
	// The short wait takes at most half the time left, so that a token
	// beyond the log is still told apart from a slow model.
	soon, cancelSoon := context.WithTimeout(ctx, min(quickWait, time.Until(deadline)/2))
	err := q.model.WaitFor(soon, seq)
	cancelSoon()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return stopping()
	}
	if seq > q.last.Load() {
		left := time.Until(deadline)
		last, err := q.store.LastSequence(ctx)
		if err != nil {
			// The store gives up with a tenth of the caller's time left
			// (so that its answer arrives): that is the deadline too.
			if ctx.Err() != nil || time.Until(deadline) <= left/5 {
				return stopping()
			}
			return err
		}
		for prev := q.last.Load(); last > prev && !q.last.CompareAndSwap(prev, last); prev = q.last.Load() {
		}
		if seq > last {
			return spa.Errorf(spa.KindOutOfRange, "min_sequence %d is beyond the log's last sequence %d", seq, last)
		}
	}
	if err := q.model.WaitFor(ctx, seq); err != nil {
		return stopping()
	}
	return nil
}

// tokened is a query that may carry a consistency token.
type tokened interface {
	proto.Message
	GetMinSequence() uint64
}

// serve returns a handler that decodes a query, waits for its consistency
// token, and answers with what answer returns given the request's
// context, the query and the sequence the model had applied.
func serve[T any, Q interface {
	*T
	tokened
}](q *queryService, answer func(ctx context.Context, in Q, applied uint64) (proto.Message, error)) func(micro.Request) {
	return func(req micro.Request) {
		in := Q(new(T))
		if err := proto.Unmarshal(req.Data(), in); err != nil {
			req.Error(query.CodeInvalid, "malformed request", nil)
			return
		}
		ctx, cancel := q.requestContext(req)
		defer cancel()
		if err := q.waitFor(ctx, in.GetMinSequence()); err != nil {
			respondError(req, err)
			return
		}
		out, err := answer(ctx, in, q.model.Applied())
		if err != nil {
			respondError(req, err)
			return
		}
		q.respond(req, out)
	}
}

// respondError answers with err: a *spa.Error by its kind, any other as a
// read model failure (its text stays here).
func respondError(req micro.Request, err error) {
	code := map[spa.Kind]string{
		spa.KindInvalid: query.CodeInvalid, spa.KindNotFound: query.CodeNotFound, spa.KindOutOfRange: query.CodeOutOfRange,
		spa.KindTooLarge: query.CodeTooLarge, spa.KindUnavailable: query.CodeUnavailable, spa.KindDeadlineExceeded: query.CodeDeadline,
	}[spa.KindOf(err)]
	if code == "" {
		req.Error(query.CodeInternal, "read model failure", nil)
		return
	}
	var de *spa.Error
	errors.As(err, &de)
	req.Error(code, de.Message, nil)
}

// get answers with a referral as the model has it and its history as the
// log has it up to the referral's version (ADR 30): the events the state
// was built from, however far the log has moved on since.
func (q *queryService) get(ctx context.Context, in *spav1.GetReferralRequest, _ uint64) (proto.Message, error) {
	r, err := q.model.Get(in.GetReferralId())
	if errors.Is(err, bolt.ErrNotFound) {
		return nil, spa.Errorf(spa.KindNotFound, "referral %s not found", in.GetReferralId())
	}
	if err != nil {
		return nil, err
	}
	hist, err := q.store.Events(ctx, spa.AggregateReferral, in.GetReferralId(), r.Version)
	if err != nil {
		return nil, err
	}
	out := &spav1.GetReferralResponse{Referral: codec.ReferralToProto(r, time.Now())}
	budget := q.maxPayload - replyHeadroom - proto.Size(out)
	// The newest events that fit, oldest first.
	var kept []*spav1.StoredEvent
	for i := len(hist) - 1; i >= 0; i-- {
		env, err := codec.UnmarshalEnvelope(hist[i].Data)
		if err != nil {
			return nil, err
		}
		se := &spav1.StoredEvent{Sequence: hist[i].Sequence, Envelope: env}
		if budget -= proto.Size(se) + 8; budget < 0 {
			out.HistoryTruncated = true
			break
		}
		kept = append(kept, se)
	}
	for i := len(kept) - 1; i >= 0; i-- {
		out.History = append(out.History, kept[i])
	}
	return out, nil
}

func (q *queryService) list(_ context.Context, in *spav1.ListReferralsRequest, applied uint64) (proto.Message, error) {
	lq := codec.ListQueryFromProto(in)
	size, after, err := lq.Validate()
	if err != nil {
		return nil, err
	}
	rows, next, err := q.model.List(bolt.Filter{Status: lq.Status, Pathway: lq.Pathway, SiteODS: lq.SiteODS}, after, size)
	if err != nil {
		return nil, err
	}
	out := &spav1.ListReferralsResponse{NextPageToken: lq.NextPageToken(next), Sequence: applied}
	now := time.Now()
	for _, r := range rows {
		out.Referrals = append(out.Referrals, codec.SummaryToProto(r, now))
	}
	return out, nil
}

func (q *queryService) providers(_ context.Context, in *spav1.ListProvidersRequest, applied uint64) (proto.Message, error) {
	lq := codec.ProviderQueryFromProto(in)
	size, after, err := lq.Validate()
	if err != nil {
		return nil, err
	}
	ps, next, err := q.model.ProvidersPage(bolt.ProviderFilter{Borough: lq.Borough, Service: lq.Service}, after, size)
	if err != nil {
		return nil, err
	}
	out := &spav1.ListProvidersResponse{Sequence: applied, NextPageToken: lq.NextPageToken(next)}
	for _, p := range ps {
		out.Providers = append(out.Providers, codec.ProviderToProto(p))
	}
	return out, nil
}

func (q *queryService) assignments(_ context.Context, in *spav1.ListAssignmentsRequest, applied uint64) (proto.Message, error) {
	lq := codec.AssignmentQueryFromProto(in)
	size, before, err := lq.Validate()
	if err != nil {
		return nil, err
	}
	as, next, err := q.model.Assignments(lq.ProviderODS, lq.Status, before, size)
	if err != nil {
		return nil, err
	}
	out := &spav1.ListAssignmentsResponse{Sequence: applied, NextPageToken: lq.NextPageToken(next)}
	for _, a := range as {
		out.Assignments = append(out.Assignments, codec.AssignmentToProto(a.Referral.ID, a.Assignment))
	}
	return out, nil
}

// feed answers a query.FeedRequest with a query.FeedPage.
func (q *queryService) feed(req micro.Request) {
	var in query.FeedRequest
	if err := json.Unmarshal(req.Data(), &in); err != nil {
		req.Error(query.CodeInvalid, "malformed request", nil)
		return
	}
	if !spa.ValidAggregateID(spa.AggregateProvider, in.Provider) || in.Limit < 1 || in.Limit > query.MaxFeedPage {
		req.Error(query.CodeInvalid, fmt.Sprintf("a feed query names a provider's ODS code and a limit from 1 to %d", query.MaxFeedPage), nil)
		return
	}
	ctx, cancel := q.requestContext(req)
	defer cancel()
	if err := q.waitFor(ctx, in.MinSequence); err != nil {
		respondError(req, err)
		return
	}
	seqs, applied, err := q.model.ProviderFeed(in.Provider, in.After, in.Limit)
	if err != nil {
		respondError(req, err)
		return
	}
	respondJSON(req, query.FeedPage{Sequences: seqs, Applied: applied})
}

func (q *queryService) status(req micro.Request) {
	respondJSON(req, query.Status{Applied: q.model.Applied()})
}

// digestOf answers with model's digest and applied sequence.
func digestOf(model *bolt.Model) micro.HandlerFunc {
	return func(req micro.Request) {
		d, applied, err := model.Digest()
		if err != nil {
			req.Error(query.CodeInternal, "read model failure", nil)
			return
		}
		respondJSON(req, query.Status{Applied: applied, Digest: d})
	}
}

// respond answers with m, or with KindTooLarge if m does not fit in one
// NATS message: a reply is never silently lost.
func (q *queryService) respond(req micro.Request, m proto.Message) { respond(req, m, q.maxPayload) }

// respond answers with m, or with KindTooLarge if m does not fit in a
// NATS message of maxPayload bytes.
func respond(req micro.Request, m proto.Message, maxPayload int) {
	data, err := proto.Marshal(m)
	if err != nil {
		req.Error(query.CodeInternal, "encode failure", nil)
		return
	}
	if len(data) > maxPayload-replyHeadroom {
		req.Error(query.CodeTooLarge, fmt.Sprintf("the reply (%d bytes) is larger than the transport allows (%d); ask for a smaller page", len(data), maxPayload-replyHeadroom), nil)
		return
	}
	if err := req.Respond(data); err != nil {
		req.Error(query.CodeTooLarge, "the reply could not be sent; ask for a smaller page", nil)
	}
}

func respondJSON(req micro.Request, v any) {
	data, _ := json.Marshal(v)
	req.Respond(data)
}
