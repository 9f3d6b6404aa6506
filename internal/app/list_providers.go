package app

import (
	"context"

	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
)

// ListProviders returns providers and their capacity from the read model.
func (a *App) ListProviders(ctx context.Context, req *spav1.ListProvidersRequest) (*spav1.ListProvidersResponse, error) {
	if _, _, err := codec.ProviderQueryFromProto(req).Validate(); err != nil {
		return nil, err
	}
	return a.reads.ListProviders(ctx, req)
}
