package app

import (
	"context"
	"strings"

	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// ReplayEvents calls fn with every stored event matching f, in log order.
// Before the first event of each referral reaches fn, the read is recorded
// in the access log.
func (a *App) ReplayEvents(ctx context.Context, meta Meta, f spa.EventFilter, fn func(spa.StoredEvent) error) error {
	if err := spa.JoinInvalid(f.Validate(), purpose(meta)); err != nil {
		return err
	}
	seen := map[string]bool{}
	return a.log.Replay(ctx, f, func(e spa.StoredEvent) error {
		if id := referralOfSubject(e.Subject); id != "" && !seen[id] {
			seen[id] = true
			if env, err := codec.UnmarshalEnvelope(e.Data); err == nil && env.GetReferralSubmitted() != nil {
				// The log names the patient itself: no read model needed.
				a.patients.remember(id, env.GetReferralSubmitted().GetDetails().GetPatient().GetNhsNumber())
			}
			if err := a.recordReads(ctx, meta, e.Sequence, id); err != nil {
				return err
			}
		}
		return fn(e)
	})
}

// ListAccess returns a page of who read a referral's data, or any of a
// patient's referrals, oldest first: one record per referral read. It
// reads an index of the access log that has applied every record
// acknowledged before the call (ADR 33).
func (a *App) ListAccess(ctx context.Context, meta Meta, q spa.AccessQuery) (*spav1.ListAccessResponse, error) {
	_, _, invalid := q.Validate()
	if err := spa.JoinInvalid(invalid, purpose(meta)); err != nil {
		return nil, err
	}
	last, err := a.access.Last(ctx)
	if err != nil {
		return nil, err
	}
	return a.reads.ListAccess(ctx, codec.AccessQueryToProto(q), last)
}

// referralOfSubject returns the referral id of a referral subject, or "".
func referralOfSubject(subject string) string {
	id, ok := strings.CutPrefix(subject, "spa."+string(spa.AggregateReferral)+".")
	if !ok {
		return ""
	}
	return id
}
