package app

import (
	"context"

	"spa/internal/spa"
)

// RecordPatientLeft records that the patient left hospital and returns the
// event's sequence.
func (a *App) RecordPatientLeft(ctx context.Context, meta Meta, c spa.RecordPatientLeft) (uint64, error) {
	_, seq, err := update(ctx, a, meta, spa.AggregateReferral, c.ReferralID, "", false, one(spa.DecidePatientLeft, c))
	return seq, err
}
