package app

import (
	"context"
	"time"

	"spa/internal/spa"
)

// WithdrawReferral withdraws a referral and returns the event's sequence.
func (a *App) WithdrawReferral(ctx context.Context, meta Meta, c spa.WithdrawReferral) (uint64, error) {
	_, seq, err := update(ctx, a, meta, spa.AggregateReferral, c.ReferralID, "", false, func(r spa.Referral, now time.Time) (spa.Event, error) {
		return spa.DecideWithdraw(r, c, now)
	})
	return seq, err
}
