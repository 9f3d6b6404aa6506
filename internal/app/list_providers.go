package app

import (
	"context"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// ListProviders returns providers and their capacity from the read model.
func (a *App) ListProviders(ctx context.Context, req *spav1.ListProvidersRequest) (*spav1.ListProvidersResponse, error) {
	if err := spa.ValidateProviderQuery(req.GetBorough(), spa.Service(req.GetService())); err != nil {
		return nil, err
	}
	return a.reads.ListProviders(ctx, req)
}
