// Package rpc is the gRPC transport: it maps API messages to domain
// commands and queries, reads who is calling from the request metadata, and
// maps domain errors to gRPC status codes in one place (ErrorInterceptor).
package rpc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"spa/internal/app"
	"spa/internal/spa"
)

// Request metadata keys. The actor keys state the caller in the
// development mode only (Auth.Dev); otherwise the caller is its client
// certificate and these keys are refused.
const (
	MetadataActorODS      = "spa-actor-ods"
	MetadataActorRole     = "spa-actor-role"
	MetadataActorUser     = "spa-actor-user"
	MetadataCorrelationID = "x-correlation-id"
	// MetadataPurpose says why patient data is read (one of
	// spa.Purposes); required on every read of patient data, it goes in
	// the access log.
	MetadataPurpose = "spa-purpose"
	// MetadataRequestID names a call; the server makes one when the caller
	// sends none, and returns it in the response header of that name.
	MetadataRequestID = "x-request-id"
)

// meta reads the caller, as Auth verified it (a call without one is
// UNAUTHENTICATED: no handler runs for nobody), and the correlation id and
// purpose from the request metadata.
func meta(ctx context.Context) (app.Meta, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	method, _ := grpc.Method(ctx)
	m := app.Meta{
		CorrelationID: get(MetadataCorrelationID),
		Purpose:       get(MetadataPurpose),
		Method:        method,
	}
	id, ok := Identity(ctx)
	if !ok {
		return m, unauthenticated("no verified identity")
	}
	m.Actor = id.Actor()
	m.CallID, _ = ctx.Value(callIDKey{}).(string)
	var vs []spa.Violation
	for _, kv := range [][2]string{{MetadataCorrelationID, m.CorrelationID}, {MetadataPurpose, m.Purpose}} {
		if why := spa.CheckLabel(kv[1]); why != "" {
			vs = append(vs, spa.Violation{Field: "metadata." + kv[0], Description: why})
		}
	}
	if len(vs) > 0 {
		return m, &spa.Error{Kind: spa.KindInvalid, Message: "invalid request metadata", Violations: vs}
	}
	return m, nil
}

// retryable is a command request: it may carry a request id.
type retryable interface {
	proto.Message
	GetRequestId() string
}

// commandMeta is meta for a command: the caller, and req's request id
// with the hash of the request (method and body without the id) that
// tells a retry from another request with the same id. Fields this
// version does not know are left out of the hash: they are not read, and
// their order on the wire may differ between a request and its retry.
func commandMeta(ctx context.Context, req retryable) (app.Meta, error) {
	m, err := meta(ctx)
	if err != nil || req.GetRequestId() == "" {
		return m, err
	}
	body := proto.Clone(req).ProtoReflect()
	body.Clear(body.Descriptor().Fields().ByName("request_id"))
	discardUnknown(body)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(body.Interface())
	if err != nil {
		return m, fmt.Errorf("rpc: hashing the request: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(m.Method))
	h.Write([]byte{0})
	h.Write(b)
	m.Request = spa.Request{ID: req.GetRequestId(), Hash: h.Sum(nil)}
	return m, nil
}

// discardUnknown drops the unknown fields of m and of every message in it.
func discardUnknown(m protoreflect.Message) {
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil:
		case fd.IsList():
			for i := range v.List().Len() {
				discardUnknown(v.List().Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					discardUnknown(mv.Message())
					return true
				})
			}
		default:
			discardUnknown(v.Message())
		}
		return true
	})
}

var kindCodes = map[spa.Kind]codes.Code{
	spa.KindInvalid:            codes.InvalidArgument,
	spa.KindNotFound:           codes.NotFound,
	spa.KindAlreadyExists:      codes.AlreadyExists,
	spa.KindFailedPrecondition: codes.FailedPrecondition,
	spa.KindAborted:            codes.Aborted,
	spa.KindUnavailable:        codes.Unavailable,
	spa.KindDeadlineExceeded:   codes.DeadlineExceeded,
	spa.KindOutOfRange:         codes.OutOfRange,
	spa.KindTooLarge:           codes.ResourceExhausted,
	spa.KindPermissionDenied:   codes.PermissionDenied,
	spa.KindUnauthenticated:    codes.Unauthenticated,
}

// Status maps an error to a gRPC status error: domain errors by kind, with
// google.rpc.BadRequest field violations for invalid input; context errors
// to DeadlineExceeded or Canceled; anything else to Internal with a generic
// message (the cause is logged, never sent).
func Status(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var de *spa.Error
	if errors.As(err, &de) {
		if de.Kind == spa.KindPermissionDenied || de.Kind == spa.KindUnauthenticated {
			// Security events: an operator should see them.
			log.Warn("call refused", "method", method, "reason", de.Message)
		}
		if code, ok := kindCodes[de.Kind]; ok {
			st := status.New(code, de.Message)
			if len(de.Violations) > 0 {
				br := &errdetails.BadRequest{}
				for _, v := range de.Violations {
					br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
				}
				if withDetails, err := st.WithDetails(br); err == nil {
					st = withDetails
				}
			}
			return st.Err()
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "call canceled")
	}
	log.Error("internal error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}

// ErrorInterceptor maps every handler error through Status, and answers
// a request the Codec could not decode as invalid.
func ErrorInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := malformed(req); err != nil {
			return nil, Status(log, info.FullMethod, err)
		}
		resp, err := handler(ctx, req)
		return resp, Status(log, info.FullMethod, err)
	}
}

// StreamErrorInterceptor maps every streaming handler's error through
// Status, and answers a request the Codec could not decode as invalid.
func StreamErrorInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return Status(log, info.FullMethod, handler(srv, checkedStream{ss}))
	}
}

// checkedStream refuses a received message the Codec could not decode.
type checkedStream struct{ grpc.ServerStream }

func (s checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return malformed(m)
}

// query runs a query as the caller in the request metadata.
func query[Req, Resp any](ctx context.Context, run func(context.Context, app.Meta, Req) (Resp, error), req Req) (Resp, error) {
	m, err := meta(ctx)
	if err != nil {
		var zero Resp
		return zero, err
	}
	return run(ctx, m, req)
}
