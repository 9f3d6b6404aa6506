package app

import (
	"context"
	"strings"
	"time"

	"spa/internal/spa"
)

// UpdateCapacity records a provider's capacity and returns the event's
// sequence.
func (a *App) UpdateCapacity(ctx context.Context, meta Meta, c spa.UpdateCapacity) (uint64, error) {
	c.ProviderODS = strings.ToUpper(strings.TrimSpace(c.ProviderODS))
	_, seq, err := update(ctx, a, meta, spa.AggregateProvider, c.ProviderODS, "", false, func(p spa.Provider, now time.Time) (spa.Event, error) {
		return spa.DecideUpdateCapacity(p, c, now)
	})
	return seq, err
}
