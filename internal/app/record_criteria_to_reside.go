package app

import (
	"context"

	"spa/internal/spa"
)

// RecordCriteriaToReside records a reassessment and returns the referral's
// state after it (its status and Discharge Ready Date) and the event's
// sequence.
func (a *App) RecordCriteriaToReside(ctx context.Context, meta Meta, c spa.RecordCriteriaToReside) (spa.Referral, uint64, error) {
	return update(ctx, a, meta, spa.AggregateReferral, c.ReferralID, "", false, one(spa.DecideRecordCriteria, c))
}
