package app

import (
	"context"
	"time"

	"spa/internal/authz"
	"spa/internal/spa"
)

// TransitionAssignment moves an assignment to a new FHIR Task status (a
// provider accepting, declining, starting, completing ...) and returns the
// event's sequence, or the referral's version when the assignment is in
// that status already for the same reason (nothing appended). Only the
// provider an assignment is addressed to may move it. A decline,
// failure or cancellation before care started gives the reserved unit back
// in the same atomic batch; the router then offers the next provider.
func (a *App) TransitionAssignment(ctx context.Context, meta Meta, c spa.TransitionAssignment) (uint64, error) {
	allow := func(r spa.Referral) error {
		if as := r.Assignment(c.AssignmentID); as != nil {
			if cl, ok := authz.Of(meta.Actor); ok {
				return cl.Assignment(as.ProviderODS)
			}
		}
		return nil // an unknown assignment is decide's to report
	}
	r, seq, err := updateIf(ctx, a, meta, spa.AggregateReferral, spa.ReferralOfAssignment(c.AssignmentID), "", false, allow,
		func(r spa.Referral, now time.Time) (spa.Change, error) { return spa.DecideTransition(r, c, now) })
	if err == nil && seq == 0 {
		return r.Version, nil
	}
	return seq, err
}
