package app

import (
	"context"
	"strings"

	"spa/internal/spa"
)

// UpdateCapacity records a provider's declared vacancies. It returns the
// event's sequence and false, or, when every count is recorded already as
// sent (a retry), the provider's current version and true.
func (a *App) UpdateCapacity(ctx context.Context, meta Meta, c spa.UpdateCapacity) (uint64, bool, error) {
	c.ProviderODS = strings.ToUpper(strings.TrimSpace(c.ProviderODS))
	p, seq, err := update(ctx, a, meta, spa.AggregateProvider, c.ProviderODS, "", false, one(spa.DecideUpdateCapacity, c))
	return answer(p.Version, seq, err)
}
