package app

import (
	"context"

	"google.golang.org/protobuf/proto"

	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
)

// ListReferrals returns a page of the board from the read model; each row
// read is recorded in the access log. A discharge team sees only its own
// site's referrals.
func (a *App) ListReferrals(ctx context.Context, meta Meta, req *spav1.ListReferralsRequest) (*spav1.ListReferralsResponse, error) {
	if _, _, err := codec.ListQueryFromProto(req).Validate(); err != nil {
		return nil, err
	}
	site, err := site(meta, req.GetSiteOds())
	if err != nil {
		return nil, err
	}
	if site != req.GetSiteOds() {
		req = proto.Clone(req).(*spav1.ListReferralsRequest)
		req.SiteOds = site
	}
	res, err := a.reads.ListReferrals(ctx, req)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(res.GetReferrals()))
	for i, r := range res.GetReferrals() {
		ids[i] = r.GetReferralId()
	}
	return res, a.recordAccess(ctx, meta, ids...)
}
