package main

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"spa/internal/authz"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/rpc"
	"spa/internal/spa"
)

// owner makes a test's calls to a development-mode server as the party
// each belongs to, so that tests about routing, clocks or retries need
// not say who calls: a submission as its site's discharge team, a
// provider's registration, capacity and answers as that provider, the
// board and holds as a coordinator, policy as an admin, audit as an
// auditor. A call that states an identity is sent as it is.
// TestAccessTable checks who may do what; these tests do not.
type owner struct {
	mu        sync.Mutex
	sites     map[string]string // referral id -> site
	providers map[string]string // assignment id -> provider
	lookup    spav1.ReferralServiceClient
}

func newOwner() *owner {
	return &owner{sites: map[string]string{}, providers: map[string]string{}}
}

// dialOptions returns the interceptors that state the identities.
func (o *owner) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(o.unary), grpc.WithChainStreamInterceptor(o.stream)}
}

func (o *owner) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if stated(ctx) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	ods, role, err := o.partyOf(ctx, cc, method, req)
	if err != nil {
		return err
	}
	if !spa.IsODSCode(ods) {
		ods = "SPA" // a request with a bad organisation is refused for it, whoever sends it
	}
	if err := invoker(as(ctx, ods, role), method, req, reply, cc, opts...); err != nil {
		return err
	}
	if res, ok := reply.(*spav1.SubmitReferralResponse); ok {
		o.mu.Lock()
		o.sites[res.GetReferralId()] = req.(*spav1.SubmitReferralRequest).GetReferral().GetEpisode().GetSiteOds()
		o.mu.Unlock()
	}
	return nil
}

func (o *owner) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if !stated(ctx) {
		role := authz.Coordinator
		if method == "/spa.v1.AuditService/ReplayEvents" {
			role = authz.Auditor
		}
		ctx = as(ctx, "SPA", role)
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// partyOf returns who a call belongs to.
func (o *owner) partyOf(ctx context.Context, cc *grpc.ClientConn, method string, req any) (string, authz.Role, error) {
	switch r := req.(type) {
	case *spav1.SubmitReferralRequest:
		return r.GetReferral().GetEpisode().GetSiteOds(), authz.DischargeTeam, nil
	case *spav1.RecordCriteriaToResideRequest, *spav1.AmendReferralRequest, *spav1.RecordInfectionTestRequest, *spav1.RecordPatientLeftRequest:
		site, err := o.siteOf(ctx, cc, req.(interface{ GetReferralId() string }).GetReferralId())
		return site, authz.DischargeTeam, err
	case *spav1.RegisterProviderRequest:
		return r.GetProvider().GetOds(), authz.Provider, nil
	case *spav1.UpdateCapacityRequest:
		return r.GetProviderOds(), authz.Provider, nil
	case interface{ GetAssignmentId() string }:
		p, err := o.providerOf(ctx, cc, r.GetAssignmentId())
		return p, authz.Provider, err
	case *spav1.SwitchPolicyRequest:
		return "SPA", authz.Admin, nil
	case *spav1.ListAccessRequest:
		return "SPA", authz.Auditor, nil
	}
	return "SPA", authz.Coordinator, nil
}

// siteOf returns a referral's site, as submitted through this owner or as
// a coordinator reads it.
func (o *owner) siteOf(ctx context.Context, cc *grpc.ClientConn, id string) (string, error) {
	o.mu.Lock()
	site, ok := o.sites[id]
	o.mu.Unlock()
	if ok {
		return site, nil
	}
	res, err := spav1.NewReferralServiceClient(cc).GetReferral(as(ctx, "SPA", authz.Coordinator), &spav1.GetReferralRequest{ReferralId: id})
	if err != nil {
		return "SPA", nil // the call itself reports the unknown referral
	}
	return res.GetReferral().GetDetails().GetEpisode().GetSiteOds(), nil
}

// providerOf returns the provider an assignment is addressed to, as a
// coordinator reads it.
func (o *owner) providerOf(ctx context.Context, cc *grpc.ClientConn, id string) (string, error) {
	o.mu.Lock()
	p, ok := o.providers[id]
	o.mu.Unlock()
	if ok {
		return p, nil
	}
	res, err := spav1.NewReferralServiceClient(cc).GetReferral(as(ctx, "SPA", authz.Coordinator), &spav1.GetReferralRequest{ReferralId: spa.ReferralOfAssignment(id)})
	if err != nil {
		return "SPA", nil
	}
	for _, a := range res.GetReferral().GetAssignments() {
		if a.GetAssignmentId() == id {
			o.mu.Lock()
			o.providers[id] = a.GetProviderOds()
			o.mu.Unlock()
			return a.GetProviderOds(), nil
		}
	}
	return "SPA", nil
}

// stated reports whether ctx's call states an identity already.
func stated(ctx context.Context) bool {
	md, _ := metadata.FromOutgoingContext(ctx)
	return len(md.Get(rpc.MetadataActorRole)) > 0 || len(md.Get(rpc.MetadataActorODS)) > 0
}

// as returns ctx stating an identity to a development-mode server, and a
// purpose for reads: direct care, or audit for an auditor.
func as(ctx context.Context, ods string, role authz.Role) context.Context {
	purpose := "direct-care"
	if role == authz.Auditor {
		purpose = "audit"
	}
	return metadata.AppendToOutgoingContext(ctx, rpc.MetadataActorODS, ods, rpc.MetadataActorRole, string(role), rpc.MetadataPurpose, purpose)
}
