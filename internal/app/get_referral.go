package app

import (
	"context"
	"errors"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// GetReferral returns a referral's state and history from the read model.
// The read is recorded in the access log; so is a refused one.
func (a *App) GetReferral(ctx context.Context, meta Meta, req *spav1.GetReferralRequest) (*spav1.GetReferralResponse, error) {
	if err := spa.JoinInvalid(spa.ValidateGet(req.GetReferralId()), purpose(meta)); err != nil {
		return nil, err
	}
	res, err := a.reads.GetReferral(ctx, req)
	if err != nil {
		return nil, err
	}
	if res, err = authorizeRead(meta, res); err != nil {
		return nil, errors.Join(err, a.RecordRefusedRead(ctx, meta, req.GetReferralId()))
	}
	nhs := res.GetReferral().GetDetails().GetPatient().GetNhsNumber()
	a.patients.remember(req.GetReferralId(), nhs)
	return res, a.recordAccess(ctx, meta, spa.Accessed{ReferralID: req.GetReferralId(), NHSNumber: nhs})
}
