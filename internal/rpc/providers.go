package rpc

import (
	"context"

	"spa/internal/app"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// Providers implements spav1.ProviderServiceServer on the application.
type Providers struct {
	spav1.UnimplementedProviderServiceServer
	app *app.App
}

var _ spav1.ProviderServiceServer = (*Providers)(nil)

// NewProviders returns the ProviderService. Register it together with
// ErrorInterceptor.
func NewProviders(a *app.App) *Providers { return &Providers{app: a} }

// RegisterProvider implements spav1.ProviderServiceServer.
func (s *Providers) RegisterProvider(ctx context.Context, req *spav1.RegisterProviderRequest) (*spav1.RegisterProviderResponse, error) {
	m, err := commandMeta(ctx, req)
	if err != nil {
		return nil, err
	}
	seq, unchanged, err := s.app.RegisterProvider(ctx, m, spa.RegisterProvider{Details: codec.ProviderDetailsFromProto(req.GetProvider())})
	if err != nil {
		return nil, err
	}
	return &spav1.RegisterProviderResponse{Sequence: seq, Unchanged: unchanged}, nil
}

// UpdateCapacity implements spav1.ProviderServiceServer.
func (s *Providers) UpdateCapacity(ctx context.Context, req *spav1.UpdateCapacityRequest) (*spav1.UpdateCapacityResponse, error) {
	m, err := commandMeta(ctx, req)
	if err != nil {
		return nil, err
	}
	seq, unchanged, err := s.app.UpdateCapacity(ctx, m, spa.UpdateCapacity{ProviderODS: req.GetProviderOds(), Capacity: codec.CapacitiesFromProto(req.GetCapacity())})
	if err != nil {
		return nil, err
	}
	return &spav1.UpdateCapacityResponse{Sequence: seq, Unchanged: unchanged}, nil
}

// ListProviders implements spav1.ProviderServiceServer.
func (s *Providers) ListProviders(ctx context.Context, req *spav1.ListProvidersRequest) (*spav1.ListProvidersResponse, error) {
	m, err := meta(ctx)
	if err != nil {
		return nil, err
	}
	return s.app.ListProviders(ctx, m, req)
}
