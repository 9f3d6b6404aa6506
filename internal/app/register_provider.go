package app

import (
	"context"

	"spa/internal/spa"
)

// RegisterProvider registers a provider or replaces its details. It returns
// the event's sequence and false, or, when the same details are registered
// already, the provider's current version and true.
func (a *App) RegisterProvider(ctx context.Context, meta Meta, c spa.RegisterProvider) (uint64, bool, error) {
	c.Normalise()
	p, seq, err := update(ctx, a, meta, spa.AggregateProvider, c.Details.ODS, "", false, one(spa.DecideRegisterProvider, c))
	return answer(p.Version, seq, err)
}
