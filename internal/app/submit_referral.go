package app

import (
	"context"

	"spa/internal/authz"

	"spa/internal/spa"
)

// Submitted is the answer to SubmitReferral.
type Submitted struct {
	ReferralID string
	// Sequence is the stream sequence of the ReferralSubmitted event.
	Sequence uint64
	// Replayed is true when an earlier identical submission was found.
	Replayed bool
}

// SubmitReferral registers a referral. The referral id is derived from the
// request id, so a retry, however late, finds the first submission: the
// same details return it (Replayed, nothing appended), other details fail
// with KindAlreadyExists.
func (a *App) SubmitReferral(ctx context.Context, meta Meta, c spa.SubmitReferral) (Submitted, error) {
	c.Normalise()
	if cl, ok := authz.Of(meta.Actor); ok && spa.IsODSCode(c.Details.Episode.SiteODS) {
		// (A bad or missing site is reported with the other bad fields.)
		if err := cl.Site(c.Details.Episode.SiteODS); err != nil {
			return Submitted{}, err
		}
	}
	id := spa.ReferralIDFor(c.RequestID)
	r, seq, err := update(ctx, a, meta, spa.AggregateReferral, id, c.RequestID, true, one(spa.DecideSubmit, c))
	if err != nil {
		return Submitted{}, err
	}
	if seq == 0 {
		return Submitted{ReferralID: r.ID, Sequence: r.SubmittedSequence, Replayed: true}, nil
	}
	return Submitted{ReferralID: id, Sequence: seq}, nil
}
