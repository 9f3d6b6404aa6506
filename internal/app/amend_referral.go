package app

import (
	"context"

	"spa/internal/spa"
)

// AmendReferral changes details of a referral. It returns the event's
// sequence and false, or, when the details were so already, the
// referral's version and true (nothing appended). The router decides the
// pathway again if the decision no longer fits.
func (a *App) AmendReferral(ctx context.Context, meta Meta, c spa.AmendReferral) (uint64, bool, error) {
	r, seq, err := update(ctx, a, meta, spa.AggregateReferral, c.ReferralID, "", false, one(spa.DecideAmend, c))
	return answer(r.Version, seq, err)
}
