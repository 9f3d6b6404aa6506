package app

import (
	"context"
	"slices"

	"spa/internal/authz"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
)

// ListProviders returns providers and their capacity from the read model.
// A provider sees only its own registration.
func (a *App) ListProviders(ctx context.Context, meta Meta, req *spav1.ListProvidersRequest) (*spav1.ListProvidersResponse, error) {
	if _, _, err := codec.ProviderQueryFromProto(req).Validate(); err != nil {
		return nil, err
	}
	res, err := a.reads.ListProviders(ctx, req)
	if err != nil {
		return nil, err
	}
	if c, ok := authz.Of(meta.Actor); ok && c.Role == authz.Provider {
		res.Providers = slices.DeleteFunc(res.Providers, func(p *spav1.Provider) bool { return c.ProviderOrg(p.GetDetails().GetOds()) != nil })
	}
	return res, nil
}
