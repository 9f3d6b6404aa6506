package app

import (
	"context"
	"sync"
	"time"

	spav1 "spa/internal/gen/spa/v1"
)

// patients remembers the NHS number of each referral it was asked about,
// so that the access log can file a read under its patient without asking
// the read model each time. A referral's patient never changes (no
// amendment changes it), so what is remembered is never stale. Safe for
// concurrent use; the zero value is ready.
type patients struct {
	mu sync.Mutex
	m  map[string]string // referral id -> NHS number
}

// maxPatients bounds the memory: past it, the map starts again.
const maxPatients = 100_000

// remember notes a referral's patient.
func (p *patients) remember(referralID, nhs string) {
	if nhs == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil || len(p.m) >= maxPatients {
		p.m = map[string]string{}
	}
	p.m[referralID] = nhs
}

// lookupWait bounds the wait for a read model to name a patient.
const lookupWait = 5 * time.Second

// of returns a referral's NHS number: remembered, or read from reads once
// it has applied sequence seen. When no read model can say within
// lookupWait (none knows the referral, all are halted or behind) it is
// "": the read is filed under an unknown patient, still under its
// referral, rather than held up: replaying the log for audit must not
// depend on a read model. Only ctx ending is an error.
func (p *patients) of(ctx context.Context, reads ReadModel, referralID string, seen uint64) (string, error) {
	p.mu.Lock()
	nhs, ok := p.m[referralID]
	p.mu.Unlock()
	if ok {
		return nhs, nil
	}
	lctx, cancel := context.WithTimeout(ctx, lookupWait)
	defer cancel()
	res, err := reads.GetReferral(lctx, &spav1.GetReferralRequest{ReferralId: referralID, MinSequence: seen})
	if err != nil {
		return "", ctx.Err()
	}
	nhs = res.GetReferral().GetDetails().GetPatient().GetNhsNumber()
	p.remember(referralID, nhs)
	return nhs, nil
}
