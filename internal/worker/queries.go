package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/proto"

	"spa/internal/bolt"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// The read-model query protocol: NATS request/reply in a queue group, so
// any worker that owns a read model may answer. Requests and replies are the
// API's protobuf messages; errors use the micro error headers with the codes
// below.
const (
	ServiceName        = "spa-readmodel"
	SubjectGet         = "spa.readmodel.referral.get"
	SubjectList        = "spa.readmodel.referral.list"
	SubjectProviders   = "spa.readmodel.provider.list"
	SubjectAssignments = "spa.readmodel.assignment.list"
	SubjectStatus      = "spa.readmodel.status"
	SubjectDigest      = "spa.readmodel.digest"
	// SubjectRebuild reaches every worker (no queue group): each rebuilds
	// its own read model and answers with a Rebuilt.
	SubjectRebuild  = "spa.readmodel.rebuild"
	headerWaitUntil = "Spa-Wait-Until"

	codeInvalid  = "400"
	codeNotFound = "404"
	codeInternal = "500"
	codeDeadline = "504"

	// maxWait caps how long a query waits for a consistency token.
	maxWait = time.Minute
	// maxInFlight bounds concurrent queries per worker.
	maxInFlight = 256
)

// Status is a read model's answer on SubjectStatus and SubjectDigest.
type Status struct {
	Applied uint64 `json:"applied"`
	Digest  string `json:"digest,omitempty"`
}

// Rebuilt is a worker's answer on SubjectRebuild.
type Rebuilt struct {
	Worker  string `json:"worker"`
	Applied uint64 `json:"applied"`
	Live    string `json:"live_digest"`
	Rebuilt string `json:"rebuilt_digest"`
	Error   string `json:"error,omitempty"`
}

// queryService answers queries from one read model.
type queryService struct {
	id    string
	feed  bolt.Feed
	model *bolt.Model
	sem   chan struct{}
	wg    sync.WaitGroup
}

// serveQueries registers the query endpoints on nc. stop unregisters them
// and waits for queries in flight, so the model may then be closed.
func serveQueries(nc *nats.Conn, id string, model *bolt.Model, feed bolt.Feed) (stop func(), err error) {
	q := &queryService{id: id, feed: feed, model: model, sem: make(chan struct{}, maxInFlight)}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "SPA referral read model queries",
	})
	if err != nil {
		return nil, fmt.Errorf("worker: query service: %w", err)
	}
	endpoints := []struct {
		name, subject string
		h             func(micro.Request)
	}{
		{"get", SubjectGet, serve(q, q.get)},
		{"list", SubjectList, serve(q, q.list)},
		{"providers", SubjectProviders, serve(q, q.providers)},
		{"assignments", SubjectAssignments, serve(q, q.assignments)},
		{"status", SubjectStatus, q.status},
		{"digest", SubjectDigest, q.digest},
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, q.async(e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			svc.Stop()
			return nil, fmt.Errorf("worker: endpoint %s: %w", e.name, err)
		}
	}
	if err := svc.AddEndpoint("rebuild", q.async(q.rebuild), micro.WithEndpointSubject(SubjectRebuild), micro.WithEndpointQueueGroupDisabled()); err != nil {
		svc.Stop()
		return nil, fmt.Errorf("worker: endpoint rebuild: %w", err)
	}
	return func() {
		svc.Stop()
		q.wg.Wait()
	}, nil
}

// async runs a handler on its own goroutine (a query may wait for its
// consistency token) with at most maxInFlight at once.
func (q *queryService) async(h func(micro.Request)) micro.HandlerFunc {
	return func(req micro.Request) {
		q.sem <- struct{}{}
		q.wg.Add(1)
		go func() {
			defer func() { <-q.sem; q.wg.Done() }()
			h(req)
		}()
	}
}

// waitFor waits until seq is applied or the caller's deadline (sent in a
// header) passes.
func (q *queryService) waitFor(req micro.Request, seq uint64) error {
	if seq == 0 || q.model.Applied() >= seq {
		return nil
	}
	deadline := time.Now().Add(maxWait)
	if v := req.Headers().Get(headerWaitUntil); v != "" {
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil && time.Unix(0, ns).Before(deadline) {
			deadline = time.Unix(0, ns)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return q.model.WaitFor(ctx, seq)
}

// tokened is a query that may carry a consistency token.
type tokened interface {
	proto.Message
	GetMinSequence() uint64
}

// serve returns a handler that decodes a query, waits for its consistency
// token, and answers with what answer returns given the query and the
// sequence the model had applied: a *spa.Error goes back by its kind, any
// other error as a read model failure.
func serve[T any, Q interface {
	*T
	tokened
}](q *queryService, answer func(in Q, applied uint64) (proto.Message, error)) func(micro.Request) {
	return func(req micro.Request) {
		in := Q(new(T))
		if err := proto.Unmarshal(req.Data(), in); err != nil {
			req.Error(codeInvalid, "malformed request", nil)
			return
		}
		if err := q.waitFor(req, in.GetMinSequence()); err != nil {
			req.Error(codeDeadline, fmt.Sprintf("read model has not applied sequence %d yet", in.GetMinSequence()), nil)
			return
		}
		out, err := answer(in, q.model.Applied())
		switch spa.KindOf(err) {
		case spa.KindInternal:
			if err != nil {
				req.Error(codeInternal, "read model failure", nil)
				return
			}
		case spa.KindNotFound:
			req.Error(codeNotFound, err.Error(), nil)
			return
		default:
			req.Error(codeInvalid, err.Error(), nil)
			return
		}
		respond(req, out)
	}
}

func (q *queryService) get(in *spav1.GetReferralRequest, _ uint64) (proto.Message, error) {
	r, hist, err := q.model.Get(in.GetReferralId())
	if errors.Is(err, bolt.ErrNotFound) {
		return nil, spa.Errorf(spa.KindNotFound, "referral %s not found", in.GetReferralId())
	}
	if err != nil {
		return nil, err
	}
	out := &spav1.GetReferralResponse{Referral: codec.ReferralToProto(r, time.Now())}
	for _, h := range hist {
		env, err := codec.UnmarshalEnvelope(h.Raw)
		if err != nil {
			return nil, err
		}
		out.History = append(out.History, &spav1.StoredEvent{Sequence: h.Sequence, Envelope: env})
	}
	return out, nil
}

func (q *queryService) list(in *spav1.ListReferralsRequest, applied uint64) (proto.Message, error) {
	query := codec.ListQueryFromProto(in)
	size, after, err := query.Validate()
	if err != nil {
		return nil, err
	}
	rows, next, err := q.model.List(bolt.Filter{Status: query.Status, Pathway: query.Pathway, SiteODS: query.SiteODS}, after, size)
	if err != nil {
		return nil, err
	}
	out := &spav1.ListReferralsResponse{NextPageToken: spa.PageToken(next), Sequence: applied}
	now := time.Now()
	for _, r := range rows {
		out.Referrals = append(out.Referrals, codec.SummaryToProto(r, now))
	}
	return out, nil
}

func (q *queryService) providers(in *spav1.ListProvidersRequest, applied uint64) (proto.Message, error) {
	ps, err := q.model.Providers(bolt.ProviderFilter{Borough: in.GetBorough(), Service: spa.Service(in.GetService())})
	if err != nil {
		return nil, err
	}
	out := &spav1.ListProvidersResponse{Sequence: applied}
	for _, p := range ps {
		out.Providers = append(out.Providers, codec.ProviderToProto(p))
	}
	return out, nil
}

func (q *queryService) assignments(in *spav1.ListAssignmentsRequest, applied uint64) (proto.Message, error) {
	as, err := q.model.Assignments(in.GetProviderOds(), spa.TaskStatus(in.GetStatus()))
	if err != nil {
		return nil, err
	}
	out := &spav1.ListAssignmentsResponse{Sequence: applied}
	for _, a := range as {
		out.Assignments = append(out.Assignments, codec.AssignmentToProto(a.Referral.ID, a.Assignment))
	}
	return out, nil
}

func (q *queryService) status(req micro.Request) {
	respondJSON(req, Status{Applied: q.model.Applied()})
}

func (q *queryService) digest(req micro.Request) {
	d, applied, err := q.model.Digest()
	if err != nil {
		req.Error(codeInternal, "read model failure", nil)
		return
	}
	respondJSON(req, Status{Applied: applied, Digest: d})
}

// rebuild rebuilds this worker's read model while it serves.
func (q *queryService) rebuild(req micro.Request) {
	res, err := q.model.Rebuild(context.Background(), q.feed)
	out := Rebuilt{Worker: q.id, Applied: res.Applied, Live: res.Live, Rebuilt: res.Rebuilt}
	if err != nil {
		out.Error = err.Error()
	}
	respondJSON(req, out)
}

func respond(req micro.Request, m proto.Message) {
	data, err := proto.Marshal(m)
	if err != nil {
		req.Error(codeInternal, "encode failure", nil)
		return
	}
	req.Respond(data)
}

func respondJSON(req micro.Request, v any) {
	data, _ := json.Marshal(v)
	req.Respond(data)
}
