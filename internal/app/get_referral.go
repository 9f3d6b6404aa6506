package app

import (
	"context"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// GetReferral returns a referral's state and history from the read model.
func (a *App) GetReferral(ctx context.Context, req *spav1.GetReferralRequest) (*spav1.GetReferralResponse, error) {
	if err := spa.ValidateGet(req.GetReferralId()); err != nil {
		return nil, err
	}
	return a.reads.GetReferral(ctx, req)
}
