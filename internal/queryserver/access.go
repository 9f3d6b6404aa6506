package queryserver

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/proto"

	"spa/internal/bolt"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/query"
	"spa/internal/spa"
)

// ServeAccess registers the access index's query endpoint on nc, in the
// access indexes' queue group (query.SubjectAccess). A query waits until
// the index has applied the access log sequence it names
// (query.HeaderMinAccess), within the caller's deadline. stop unregisters
// it and waits for queries in flight, so the index may then be closed.
func ServeAccess(nc *nats.Conn, index *bolt.AccessIndex) (stop func(), err error) {
	admit := newAdmission(maxInFlight)
	maxPayload := int(nc.MaxPayload())
	svc, err := micro.AddService(nc, micro.Config{
		Name:        query.AccessServiceName,
		Version:     query.Version,
		Description: "SPA access log index: who read a referral's or a patient's data",
	})
	if err != nil {
		return nil, fmt.Errorf("queryserver: access service: %w", err)
	}
	handle := func(req micro.Request) {
		out, err := listAccess(admit.ctx, req, index)
		if err != nil {
			respondError(req, err)
			return
		}
		respond(req, out, maxPayload)
	}
	if err := svc.AddEndpoint("list", admit.wrap(handle), micro.WithEndpointSubject(query.SubjectAccess)); err != nil {
		admit.close()
		svc.Stop()
		return nil, fmt.Errorf("queryserver: access endpoint: %w", err)
	}
	return func() {
		admit.close()
		svc.Stop()
	}, nil
}

// listAccess answers one access query from index once it has applied the
// sequence the query names; ctx ends when the worker stops.
func listAccess(ctx context.Context, req micro.Request, index *bolt.AccessIndex) (proto.Message, error) {
	in := new(spav1.ListAccessRequest)
	if err := proto.Unmarshal(req.Data(), in); err != nil {
		return nil, spa.Errorf(spa.KindInvalid, "malformed request")
	}
	q := codec.AccessQueryFromProto(in)
	size, after, err := q.Validate()
	if err != nil {
		return nil, err
	}
	if v := req.Headers().Get(query.HeaderMinAccess); v != "" {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, spa.Errorf(spa.KindInvalid, "malformed %s header", query.HeaderMinAccess)
		}
		wctx, cancel := untilDeadline(ctx, req)
		err = index.WaitFor(wctx, seq)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, spa.Errorf(spa.KindUnavailable, "this worker is stopping; ask again")
		case err != nil:
			return nil, spa.Errorf(spa.KindDeadlineExceeded, "the access index has not applied access log sequence %d yet", seq)
		}
	}
	var recs []spa.AccessRecord
	var next spa.AccessPosition
	if q.NHSNumber != "" {
		recs, next, err = index.ByPatient(q.NHSNumber, after, size)
	} else {
		recs, next, err = index.ByReferral(q.ReferralID, after, size)
	}
	if err != nil {
		return nil, err
	}
	out := &spav1.ListAccessResponse{NextPageToken: q.NextPageToken(next)}
	for _, r := range recs {
		out.Records = append(out.Records, codec.AccessRecordToProto(r))
	}
	return out, nil
}
