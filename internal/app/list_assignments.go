package app

import (
	"context"
	"slices"

	"google.golang.org/protobuf/proto"

	"spa/internal/authz"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// ListAssignments returns a provider's assignments from the read model;
// the referrals they belong to are recorded in the access log. A provider
// sees only its own.
func (a *App) ListAssignments(ctx context.Context, meta Meta, req *spav1.ListAssignmentsRequest) (*spav1.ListAssignmentsResponse, error) {
	if ods := ownProvider(meta, req.GetProviderOds()); ods != req.GetProviderOds() {
		req = proto.Clone(req).(*spav1.ListAssignmentsRequest)
		req.ProviderOds = ods
	}
	_, _, invalid := codec.AssignmentQueryFromProto(req).Validate()
	if err := spa.JoinInvalid(invalid, purpose(meta)); err != nil {
		return nil, err
	}
	if err := checkList(meta, func(c authz.Caller) error { return c.ProviderOrg(req.GetProviderOds()) }); err != nil {
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
	return res, a.recordReads(ctx, meta, res.GetSequence(), ids...)
}
