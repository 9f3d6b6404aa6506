package app

import (
	"context"

	"spa/internal/spa"
)

// WithdrawReferral withdraws a referral and returns the event's sequence.
func (a *App) WithdrawReferral(ctx context.Context, meta Meta, c spa.WithdrawReferral) (uint64, error) {
	_, seq, err := update(ctx, a, meta, spa.AggregateReferral, c.ReferralID, "", false, one(spa.DecideWithdraw, c))
	return seq, err
}
