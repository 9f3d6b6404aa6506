package rpc

import (
	"context"

	"spa/internal/app"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// Policies implements spav1.PolicyServiceServer on the application.
type Policies struct {
	spav1.UnimplementedPolicyServiceServer
	app  *app.App
	base spa.Policies
}

var _ spav1.PolicyServiceServer = (*Policies)(nil)

// NewPolicies returns the PolicyService; base are the built-in dated
// policies the recorded switches apply to. Register it together with
// ErrorInterceptor.
func NewPolicies(a *app.App, base spa.Policies) *Policies { return &Policies{app: a, base: base} }

// SwitchPolicy implements spav1.PolicyServiceServer.
func (s *Policies) SwitchPolicy(ctx context.Context, req *spav1.SwitchPolicyRequest) (*spav1.SwitchPolicyResponse, error) {
	m, err := commandMeta(ctx, req)
	if err != nil {
		return nil, err
	}
	seq, unchanged, superseded, err := s.app.SwitchPolicy(ctx, m, spa.SwitchPolicy{
		Rule: spa.PolicyRule(req.GetRule()), On: req.GetOn(), EffectiveFrom: req.GetEffectiveFrom(), Reason: req.GetReason(),
	})
	if err != nil {
		return nil, err
	}
	res := &spav1.SwitchPolicyResponse{Sequence: seq, Unchanged: unchanged}
	for _, sw := range superseded {
		res.Superseded = append(res.Superseded, sw.EffectiveFrom+" "+map[bool]string{true: "on", false: "off"}[sw.On])
	}
	return res, nil
}

// ListPolicies implements spav1.PolicyServiceServer.
func (s *Policies) ListPolicies(ctx context.Context, _ *spav1.ListPoliciesRequest) (*spav1.ListPoliciesResponse, error) {
	if _, err := meta(ctx); err != nil {
		return nil, err
	}
	ps, err := s.app.Policies(ctx, s.base)
	if err != nil {
		return nil, err
	}
	return codec.PoliciesToProto(ps), nil
}
