package app

import (
	"context"
	"strings"

	"spa/internal/spa"
)

// UpdateCapacity records a provider's capacity and returns the event's
// sequence.
func (a *App) UpdateCapacity(ctx context.Context, meta Meta, c spa.UpdateCapacity) (uint64, error) {
	c.ProviderODS = strings.ToUpper(strings.TrimSpace(c.ProviderODS))
	_, seq, err := update(ctx, a, meta, spa.AggregateProvider, c.ProviderODS, "", false, one(spa.DecideUpdateCapacity, c))
	return seq, err
}
