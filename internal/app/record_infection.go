package app

import (
	"context"

	"spa/internal/spa"
)

// RecordInfectionTest records a test result and returns the event's
// sequence.
func (a *App) RecordInfectionTest(ctx context.Context, meta Meta, c spa.RecordInfectionTest) (uint64, error) {
	_, seq, err := update(ctx, a, meta, spa.AggregateReferral, c.ReferralID, "", false, one(spa.DecideRecordTest, c))
	return seq, err
}
