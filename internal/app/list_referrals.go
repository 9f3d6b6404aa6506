package app

import (
	"context"

	"google.golang.org/protobuf/proto"

	"spa/internal/authz"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// ListReferrals returns a page of the board from the read model; each row
// read is recorded in the access log. A discharge team sees only its own
// site's referrals.
func (a *App) ListReferrals(ctx context.Context, meta Meta, req *spav1.ListReferralsRequest) (*spav1.ListReferralsResponse, error) {
	if site := ownSite(meta, req.GetSiteOds()); site != req.GetSiteOds() {
		req = proto.Clone(req).(*spav1.ListReferralsRequest)
		req.SiteOds = site
	}
	_, _, invalid := codec.ListQueryFromProto(req).Validate()
	if err := spa.JoinInvalid(invalid, purpose(meta)); err != nil {
		return nil, err
	}
	if err := checkList(meta, func(c authz.Caller) error { return c.Site(req.GetSiteOds()) }); err != nil {
		return nil, err
	}
	res, err := a.reads.ListReferrals(ctx, req)
	if err != nil {
		return nil, err
	}
	read := make([]spa.Accessed, len(res.GetReferrals()))
	for i, r := range res.GetReferrals() {
		read[i] = spa.Accessed{ReferralID: r.GetReferralId(), NHSNumber: r.GetNhsNumber()}
		a.patients.remember(r.GetReferralId(), r.GetNhsNumber())
	}
	return res, a.recordAccess(ctx, meta, read...)
}
