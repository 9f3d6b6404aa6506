package app

import (
	"context"

	"google.golang.org/protobuf/proto"

	"spa/internal/authz"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
)

// ListProviders returns providers and their capacity from the read model.
// A provider sees only its own registration, on one page.
func (a *App) ListProviders(ctx context.Context, meta Meta, req *spav1.ListProvidersRequest) (*spav1.ListProvidersResponse, error) {
	if _, _, err := codec.ProviderQueryFromProto(req).Validate(); err != nil {
		return nil, err
	}
	c, ok := authz.Of(meta.Actor)
	if !ok || c.Role != authz.Provider {
		return a.reads.ListProviders(ctx, req)
	}
	// The read model lists providers, not one: page through for its own,
	// so that neither a row nor a page token shows another provider.
	q := proto.Clone(req).(*spav1.ListProvidersRequest)
	q.PageToken, q.PageSize = "", 500
	for {
		res, err := a.reads.ListProviders(ctx, q)
		if err != nil {
			return nil, err
		}
		own := &spav1.ListProvidersResponse{Sequence: res.GetSequence()}
		for _, p := range res.GetProviders() {
			if p.GetDetails().GetOds() == c.ODS {
				own.Providers = []*spav1.Provider{p}
				return own, nil
			}
		}
		if res.GetNextPageToken() == "" {
			return own, nil
		}
		q.PageToken = res.GetNextPageToken()
	}
}
