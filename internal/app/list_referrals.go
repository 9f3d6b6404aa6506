package app

import (
	"context"

	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
)

// ListReferrals returns a page of the board from the read model.
func (a *App) ListReferrals(ctx context.Context, req *spav1.ListReferralsRequest) (*spav1.ListReferralsResponse, error) {
	if _, _, err := codec.ListQueryFromProto(req).Validate(); err != nil {
		return nil, err
	}
	return a.reads.ListReferrals(ctx, req)
}
