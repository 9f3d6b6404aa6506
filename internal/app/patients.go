package app

import (
	"context"
	"errors"
	"sync"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
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

// of returns a referral's NHS number: remembered, or read from reads once
// it has applied sequence seen. A referral the read model does not know
// is "": its reads are filed under an unknown patient rather than not
// recorded.
func (p *patients) of(ctx context.Context, reads ReadModel, referralID string, seen uint64) (string, error) {
	p.mu.Lock()
	nhs, ok := p.m[referralID]
	p.mu.Unlock()
	if ok {
		return nhs, nil
	}
	res, err := reads.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: referralID, MinSequence: seen})
	var de *spa.Error
	if errors.As(err, &de) && de.Kind == spa.KindNotFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	nhs = res.GetReferral().GetDetails().GetPatient().GetNhsNumber()
	p.remember(referralID, nhs)
	return nhs, nil
}
