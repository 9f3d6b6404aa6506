package app

import (
	"context"
	"fmt"
	"time"

	"spa/internal/spa"
)

// ActorScheduler is the role the clock scheduler acts in.
const ActorScheduler = "spa-scheduler"

// RaiseAlerts appends a referral's alerts due by now, earliest first, each
// under the sequence it was decided on and with an id fixed by the alert's
// identity (its clock's start included), so that a takeover by another
// worker raises none twice and a reset clock raises its own.
func (a *App) RaiseAlerts(ctx context.Context, id string, hours spa.OperatingHours, now time.Time) error {
	actor := spa.Actor{Role: ActorScheduler, User: a.worker}
	return a.steps(ctx, id, nil, func(recs []spa.Record, r spa.Referral, last uint64) ([]spa.Append, error) {
		due := spa.DueAlerts(r, hours, now)
		if len(due) == 0 {
			return nil, nil
		}
		d := due[0]
		eventID := fmt.Sprintf("clock-%s-%s-%d-%d-%d", id, d.Event.Clock, d.Event.Level, d.Event.DelayDays, d.Event.StartedAt.Unix())
		rec := stepRecord(recs, eventID, d.At, actor, "", d.Event)
		return []spa.Append{{Record: rec, Expected: last, Guard: true}}, nil
	})
}
