package rpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/app"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// Audit implements spav1.AuditServiceServer on the application.
type Audit struct {
	spav1.UnimplementedAuditServiceServer
	app *app.App
}

var _ spav1.AuditServiceServer = (*Audit)(nil)

// NewAudit returns the AuditService. Register it together with the error
// interceptors.
func NewAudit(a *app.App) *Audit { return &Audit{app: a} }

// ReplayEvents implements spav1.AuditServiceServer.
func (s *Audit) ReplayEvents(req *spav1.ReplayEventsRequest, stream grpc.ServerStreamingServer[spav1.ReplayEventsResponse]) error {
	ctx := stream.Context()
	m, err := meta(ctx)
	if err != nil {
		return err
	}
	f := spa.EventFilter{
		ReferralID: req.GetReferralId(), Provider: req.GetProviderOds(), Types: req.GetEventTypes(),
		FromSeq: req.GetFromSequence(), ToSeq: req.GetToSequence(),
		FromTime: codec.TimeFromProto(req.GetFromTime()), ToTime: codec.TimeFromProto(req.GetToTime()),
	}
	return s.app.ReplayEvents(ctx, m, f, func(e spa.StoredEvent) error {
		return stream.Send(&spav1.ReplayEventsResponse{Event: storedEvent(e, req.GetIncludeData())})
	})
}

// ListAccess implements spav1.AuditServiceServer.
func (s *Audit) ListAccess(ctx context.Context, req *spav1.ListAccessRequest) (*spav1.ListAccessResponse, error) {
	m, err := meta(ctx)
	if err != nil {
		return nil, err
	}
	return s.app.ListAccess(ctx, m, codec.AccessQueryFromProto(req))
}

// storedEvent converts a stored event for the API, with its bytes and hash
// when asked. One this version cannot decode is sent all the same, with
// its bytes and the reason, so that no reader stops at it.
func storedEvent(e spa.StoredEvent, withData bool) *spav1.StoredEvent {
	out := &spav1.StoredEvent{Sequence: e.Sequence, Subject: e.Subject, Type: e.Type, StoredAt: timestamppb.New(e.Time)}
	env, err := codec.UnmarshalEnvelope(e.Data)
	if err == nil {
		out.Envelope = env
		var rec spa.Record
		if rec, err = codec.RecordFromProto(e.Sequence, env); err == nil {
			err = codec.CheckSubject(rec, e.Subject)
		}
	}
	if err != nil {
		out.DecodeError = err.Error()
		withData = true
	}
	if withData {
		out.Data, out.Hash, out.Signature = e.Data, e.Hash, e.Signature
	}
	return out
}
