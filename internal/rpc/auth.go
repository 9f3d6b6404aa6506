package rpc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"spa/internal/app"
	"spa/internal/authz"
	"spa/internal/identity"
	"spa/internal/spa"
)

// Auth says how a server knows its callers, and enforces who may call
// what: every call (but health checks) is authenticated, then checked
// against the roles of its method (internal/authz) before its handler
// runs. The handlers and use cases check the objects.
type Auth struct {
	// Dev is the development mode: plaintext, loopback only, and the
	// caller states its organisation and role in metadata
	// (MetadataActorODS, MetadataActorRole, MetadataActorUser). Otherwise
	// the caller is its verified TLS client certificate, and metadata
	// naming an actor is refused.
	Dev bool
	// App records a refused read of a referral in the access log.
	App *app.App
	Log *slog.Logger
}

type callerKeyType struct{}

// WithIdentity returns ctx carrying the caller's verified identity, as
// Auth puts it there: for a transport that verifies callers by other means,
// and tests of the handlers alone. A handler reached without one answers
// UNAUTHENTICATED.
func WithIdentity(ctx context.Context, id identity.Identity) context.Context {
	return context.WithValue(ctx, callerKeyType{}, id)
}

// Identity returns the identity the server verified for ctx's call.
func Identity(ctx context.Context) (identity.Identity, bool) {
	id, ok := ctx.Value(callerKeyType{}).(identity.Identity)
	return id, ok
}

// ServerOptions returns the interceptors that authenticate and authorise
// every call.
func (a Auth) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(a.unary), grpc.ChainStreamInterceptor(a.stream)}
}

func (a Auth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if exempt(info.FullMethod) {
		return handler(ctx, req)
	}
	ctx, err := a.admit(ctx, info.FullMethod, req)
	if err != nil {
		return nil, Status(a.Log, info.FullMethod, err)
	}
	return handler(ctx, req)
}

func (a Auth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if exempt(info.FullMethod) || info.FullMethod == "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" ||
		info.FullMethod == "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" {
		return handler(srv, ss)
	}
	ctx, err := a.admit(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return Status(a.Log, info.FullMethod, err)
	}
	return handler(srv, &identifiedStream{ServerStream: ss, ctx: ctx})
}

type callIDKey struct{}

// callID returns the call's request id: the caller's, or a new one when
// it sent none; one not of the form of a request id is refused.
func callID(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(MetadataRequestID)
	switch {
	case len(v) == 0 || v[0] == "":
		return "call-" + rand.Text(), nil
	case !spa.ValidRequestID(v[0]):
		return "", &spa.Error{Kind: spa.KindInvalid, Message: "invalid request metadata", Violations: []spa.Violation{{
			Field: "metadata." + MetadataRequestID, Description: "must be 8-64 characters of A-Z a-z 0-9 . _ - (use a UUID)"}}}
	}
	return v[0], nil
}

// admit names the call, authenticates it and checks its method against
// the caller's role. A refused GetReferral is recorded in the access log.
func (a Auth) admit(ctx context.Context, method string, req any) (context.Context, error) {
	id, err := callID(ctx)
	if err != nil {
		return ctx, err
	}
	ctx = context.WithValue(ctx, callIDKey{}, id)
	_ = grpc.SetHeader(ctx, metadata.Pairs(MetadataRequestID, id))
	caller, err := a.authenticate(ctx)
	if err != nil {
		return ctx, err
	}
	ctx = WithIdentity(ctx, caller)
	if err := authz.Method(caller.Role, method); err != nil {
		if r, ok := req.(interface{ GetReferralId() string }); ok && a.App != nil && method == "/spa.v1.ReferralService/GetReferral" {
			// Recorded even when the metadata is bad: the attempt counts.
			m, merr := meta(ctx)
			if merr != nil {
				m.CorrelationID, m.Purpose = "", "" // what cannot be recorded
			}
			if rerr := a.App.RecordRefusedRead(ctx, m, r.GetReferralId()); rerr != nil {
				return ctx, rerr
			}
		}
		return ctx, err
	}
	return ctx, nil
}

// authenticate returns the caller's identity: from its verified client
// certificate, or in the development mode from metadata.
func (a Auth) authenticate(ctx context.Context) (identity.Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	claimed := len(md.Get(MetadataActorODS)) > 0 || len(md.Get(MetadataActorRole)) > 0 || len(md.Get(MetadataActorUser)) > 0
	if a.Dev {
		return devIdentity(md)
	}
	if claimed {
		return identity.Identity{}, &spa.Error{Kind: spa.KindInvalid, Message: "the caller's identity comes from its certificate; metadata may not state it",
			Violations: []spa.Violation{{Field: "metadata." + MetadataActorODS, Description: "not accepted: identity comes from the client certificate"}}}
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return identity.Identity{}, unauthenticated("no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return identity.Identity{}, unauthenticated("no verified client certificate")
	}
	if info.State.Version < tls.VersionTLS13 {
		return identity.Identity{}, unauthenticated("TLS 1.3 is required")
	}
	id, err := identity.FromCertificate(info.State.VerifiedChains[0][0])
	if err != nil {
		return identity.Identity{}, unauthenticated(err.Error())
	}
	return id, nil
}

// devIdentity reads the identity a caller states in the development mode.
func devIdentity(md metadata.MD) (identity.Identity, error) {
	get := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	id := identity.Identity{ODS: get(MetadataActorODS), Role: authz.Role(get(MetadataActorRole)), User: get(MetadataActorUser)}
	if id.ODS == "" && id.Role == "" {
		return id, unauthenticated(fmt.Sprintf("development mode: state who you are with the %s and %s metadata (spa-ctl --as ODS/ROLE)", MetadataActorODS, MetadataActorRole))
	}
	var vs []spa.Violation
	if !spa.IsODSCode(id.ODS) {
		vs = append(vs, spa.Violation{Field: "metadata." + MetadataActorODS, Description: "must be an ODS code: 1-9 upper-case letters or digits"})
	}
	if !id.Role.Valid() {
		vs = append(vs, spa.Violation{Field: "metadata." + MetadataActorRole, Description: fmt.Sprintf("must be a role: %v", authz.Roles)})
	}
	if why := spa.CheckLabel(id.User); why != "" {
		vs = append(vs, spa.Violation{Field: "metadata." + MetadataActorUser, Description: why})
	}
	if len(vs) > 0 {
		return id, &spa.Error{Kind: spa.KindInvalid, Message: "invalid request metadata", Violations: vs}
	}
	return id, nil
}

func unauthenticated(why string) error {
	return &spa.Error{Kind: spa.KindUnauthenticated, Message: "unauthenticated: " + why}
}

// identifiedStream is a server stream whose context carries the caller.
type identifiedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identifiedStream) Context() context.Context { return s.ctx }
