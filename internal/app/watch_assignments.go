package app

import (
	"context"
	"time"

	"spa/internal/authz"
	"spa/internal/spa"
)

// WatchAssignments calls fn with every event addressed to a provider after
// sequence after, as it is appended, and with a heartbeat (an empty event
// carrying the last sequence seen) every interval without one, until ctx
// ends. A provider watches only its own. Each delivery is recorded in the access log before fn sees it.
func (a *App) WatchAssignments(ctx context.Context, meta Meta, provider string, after uint64, interval time.Duration, fn func(spa.StoredEvent) error) error {
	_, _, invalid := (spa.AssignmentQuery{ProviderODS: provider}).Validate()
	if err := spa.JoinInvalid(invalid, purpose(meta)); err != nil {
		return err
	}
	if err := checkList(meta, func(c authz.Caller) error { return c.ProviderOrg(provider) }); err != nil {
		return err
	}
	return a.log.Watch(ctx, provider, after, interval, func(e spa.StoredEvent) error {
		if id := referralOfSubject(e.Subject); id != "" {
			if err := a.recordReads(ctx, meta, e.Sequence, id); err != nil {
				return err
			}
		}
		return fn(e)
	})
}
