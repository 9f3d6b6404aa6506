package app

import (
	"context"
	"slices"

	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
)

// ListAssignments returns a provider's assignments from the read model;
// the referrals they belong to are recorded in the access log.
func (a *App) ListAssignments(ctx context.Context, meta Meta, req *spav1.ListAssignmentsRequest) (*spav1.ListAssignmentsResponse, error) {
	if _, _, err := codec.AssignmentQueryFromProto(req).Validate(); err != nil {
		return nil, err
	}
	res, err := a.reads.ListAssignments(ctx, req)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, as := range res.GetAssignments() {
		if !slices.Contains(ids, as.GetReferralId()) {
			ids = append(ids, as.GetReferralId())
		}
	}
	return res, a.recordAccess(ctx, meta, ids...)
}
