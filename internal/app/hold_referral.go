package app

import (
	"context"

	"spa/internal/spa"
)

// HoldReferral puts a referral on hold (a coordinator's decision) and
// returns the event's sequence.
func (a *App) HoldReferral(ctx context.Context, meta Meta, c spa.HoldReferral) (uint64, error) {
	_, seq, err := update(ctx, a, meta, spa.AggregateReferral, c.ReferralID, "", false, one(spa.DecideHold, c))
	return seq, err
}

// ReleaseHold lifts a referral's hold and returns the event's sequence.
func (a *App) ReleaseHold(ctx context.Context, meta Meta, c spa.ReleaseHold) (uint64, error) {
	_, seq, err := update(ctx, a, meta, spa.AggregateReferral, c.ReferralID, "", false, one(spa.DecideReleaseHold, c))
	return seq, err
}
