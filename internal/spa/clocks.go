package spa

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// ClockLevel is how far a clock has run against its target.
type ClockLevel int32

// Clock levels.
const (
	ClockLevelUnspecified ClockLevel = iota
	ClockWarning
	ClockBreach
	ClockEscalation
	ClockDelayFlag
)

// Clock names. Persisted: never rename.
const (
	ClockSameDayDischarge = "same-day-discharge"
	ClockLeaveHospital    = "leave-hospital"
	ClockUrgentResponse   = "urgent-response"
	ClockReablement       = "reablement"
	ClockEndOfLife        = "end-of-life-package"
	ClockTestValidity     = "test-validity"
	ClockAwaitingCapacity = "awaiting-capacity"
)

// AwaitingCapacityTarget is how long a referral may wait in the
// no-capacity queue before a breach (a warning at 3 hours, an escalation
// to the system discharge lead at 8): a coordinator sees who is stuck.
const AwaitingCapacityTarget = 4 * time.Hour

// Who each level alerts.
const (
	EscalateCoordinator = "spa-coordinator"
	EscalateLead        = "spa-lead"
	EscalateSystem      = "system-discharge-lead"
)

// DelayFlagDays are the delay days flagged after a Discharge Ready Date.
var DelayFlagDays = []int32{7, 14, 21}

// ClockAlerted: a clock reached a level, at the instant its record's
// OccurredAt gives (event time).
type ClockAlerted struct {
	Clock      string
	Level      ClockLevel
	DelayDays  int32
	StartedAt  time.Time
	Target     time.Duration
	EscalateTo string
}

func (ClockAlerted) eventName() string    { return "ClockAlerted" }
func (ClockAlerted) aggregate() Aggregate { return AggregateReferral }

// Alert is a clock level a referral reached. A clock is known by its name
// and its start: a clock that starts again (a reset Discharge Ready Date,
// a new test) raises its alerts again.
type Alert struct {
	Clock      string
	Level      ClockLevel
	DelayDays  int32
	StartedAt  time.Time
	At         time.Time
	EscalateTo string
}

// Interval is a span of time; a zero To is still open.
type Interval struct {
	From, To time.Time
}

// OperatingHours are the SPA's hours each day, as UK wall-clock times in
// minutes after midnight (08:00 is 08:00 GMT in winter and 08:00 BST in
// summer, the clock-change days included); clocks that run in operating
// hours count only these.
type OperatingHours struct {
	Open, Close int
}

// DefaultOperatingHours is 8am-8pm, 7 days a week.
var DefaultOperatingHours = OperatingHours{Open: 8 * 60, Close: 20 * 60}

// Validate checks the hours.
func (h OperatingHours) Validate() error {
	if h.Open < 0 || h.Close > 24*60 || h.Open >= h.Close {
		return fmt.Errorf("operating hours %s-%s: opening must come before closing, within one day", hhmm(h.Open), hhmm(h.Close))
	}
	return nil
}

func hhmm(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// clock is one running (or stopped) clock of a referral.
type clock struct {
	name   string
	target time.Duration
	// escalation is when it escalates, if not at twice the target.
	escalation time.Duration
	// operatingHours: counts only the SPA's operating hours. paused: a
	// hold pauses it.
	operatingHours, paused bool
	start, stop            time.Time
}

// clocks lists the referral's clocks that have started. Holds pause every
// clock of the discharge ("clocks pause") but the validity of a test (a
// test goes stale whatever the hold) and the delay days (calendar days,
// counted by DelayFlags).
func (r *Referral) clocks() []clock {
	var cs []clock
	stopAll := r.WithdrawnAt
	if from, to, ok := r.readyDay(); ok {
		// Same day: by the end of the Discharge Ready Date's UK day (23
		// or 25 hours on a clock-change day).
		// It escalates at the end of the next UK day.
		cs = append(cs, clock{name: ClockSameDayDischarge, target: to.Sub(from), escalation: to.AddDate(0, 0, 1).Sub(from), paused: true, start: from, stop: first(r.LeftHospitalAt, stopAll)})
	}
	var accepted, started, urgentVisit time.Time
	for _, a := range r.Assignments {
		accepted, started = first(accepted, a.AcceptedAt), first(started, a.StartedAt)
		if a.Service == ServiceUrgentCommunityResponse {
			urgentVisit = first(urgentVisit, a.StartedAt)
		}
	}
	if r.Service == ServiceUrgentCommunityResponse || !r.Decided && r.Details.Needs.UrgentCommunityResponse {
		// Asked for and not (yet) routed elsewhere by an earlier rule.
		// From the referral to the first visit, in operating hours.
		cs = append(cs, clock{name: ClockUrgentResponse, target: 2 * time.Hour, operatingHours: true, paused: true, start: r.SubmittedAt, stop: first(urgentVisit, stopAll)})
	}
	if !accepted.IsZero() {
		cs = append(cs, clock{name: ClockLeaveHospital, target: 2 * time.Hour, paused: true, start: accepted, stop: first(r.LeftHospitalAt, stopAll)})
		if r.Pathway == PathwayEndOfLife {
			cs = append(cs, clock{name: ClockEndOfLife, target: 48 * time.Hour, paused: true, start: accepted, stop: first(started, stopAll)})
		}
	}
	if r.Service == ServiceHomeCareReablement {
		// From the referral to care in place (the domain's table). A
		// referral whose clock a version before 0.3 ran from the decision
		// (an alert of it raised) keeps that clock.
		start := r.SubmittedAt
		if slices.ContainsFunc(r.Alerts, func(a Alert) bool { return a.Clock == ClockReablement && a.StartedAt.Equal(r.DecidedAt) }) {
			start = r.DecidedAt
		}
		cs = append(cs, clock{name: ClockReablement, target: 48 * time.Hour, paused: true, start: start, stop: first(started, stopAll)})
	}
	for _, w := range r.Waits {
		// In the no-capacity queue until an offer.
		cs = append(cs, clock{name: ClockAwaitingCapacity, target: AwaitingCapacityTarget, paused: true, start: w.From, stop: first(w.To, stopAll)})
	}
	if r.OverlayApplied && r.LatestTest != nil {
		cs = append(cs, clock{name: ClockTestValidity, target: 48 * time.Hour, start: r.LatestTest.TakenAt, stop: first(r.LeftHospitalAt, stopAll)})
	}
	return cs
}

// readyDay returns the start and end of the Discharge Ready Date's UK day.
func (r *Referral) readyDay() (time.Time, time.Time, bool) {
	d, err := time.ParseInLocation(DateLayout, r.DischargeReadyDate, london())
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	return d, d.AddDate(0, 0, 1), true
}

// first returns the earliest of the non-zero instants, or zero.
func first(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if !t.IsZero() && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	return out
}

// Due is a clock alert that has come due.
type Due struct {
	At    time.Time
	Event ClockAlerted
}

// DueAlerts returns the alerts the referral's clocks have reached by now
// and that were not raised for the clock's start yet, earliest first. A
// clock counts from its start to its stop, less the time the referral was
// on hold if holds pause it (an open hold stops it); the urgent-response
// clock counts only operating hours. A delay flag is due at the UK
// midnight that makes the delay days (DelayDays) reach its number: it
// counts calendar days, as the board does, holds or not. Each alert is due
// at the instant the clock reached it, in event time.
func DueAlerts(r Referral, hours OperatingHours, now time.Time) []Due {
	var out []Due
	pending(r, hours, func(d Due) {
		if !d.At.After(now) {
			out = append(out, d)
		}
	})
	slices.SortStableFunc(out, func(a, b Due) int { return a.At.Compare(b.At) })
	return out
}

// NextAlert returns the instant the referral's next alert falls due (it
// may be past: an alert due and not raised yet), false when none will
// unless the referral changes: DueAlerts(r, hours, now) is empty for every
// now before it, and not empty at it. Only the referral's events change
// it; time passing does not.
//
// With AllDay it is never later than with any other hours (the
// urgent-response clock counts every hour): an index of it, kept by a
// read model that does not know the scheduler's hours, is a safe lower
// bound of when to look at the referral again.
func NextAlert(r Referral, hours OperatingHours) (time.Time, bool) {
	var next time.Time
	pending(r, hours, func(d Due) {
		if next.IsZero() || d.At.Before(next) {
			next = d.At
		}
	})
	return next, !next.IsZero()
}

// AllDay are operating hours of every hour of every day.
var AllDay = OperatingHours{Open: 0, Close: 24 * 60}

// pending calls yield with every alert of the referral's clocks not
// raised for the clock's start yet that a clock will reach before it
// stops, whenever it is due, in the order of the clocks and their levels.
func pending(r Referral, hours OperatingHours, yield func(Due)) {
	raised := func(name string, l ClockLevel, days int32, start time.Time) bool {
		return slices.ContainsFunc(r.Alerts, func(a Alert) bool {
			return a.Clock == name && a.Level == l && a.DelayDays == days && a.StartedAt.Equal(start)
		})
	}
	for _, c := range r.clocks() {
		var pauses []Interval
		if c.paused {
			pauses = r.Holds
		}
		due := func(at time.Time, level ClockLevel, days int32, to string) {
			if raised(c.name, level, days, c.start) || at.IsZero() || !c.stop.IsZero() && !at.Before(c.stop) {
				return
			}
			yield(Due{At: at, Event: ClockAlerted{Clock: c.name, Level: level, DelayDays: days, StartedAt: c.start, Target: c.target, EscalateTo: to}})
		}
		due(advance(c.start, c.target*3/4, pauses, c.operatingHours, hours), ClockWarning, 0, EscalateCoordinator)
		due(advance(c.start, c.target, pauses, c.operatingHours, hours), ClockBreach, 0, EscalateLead)
		due(advance(c.start, cmp.Or(c.escalation, 2*c.target), pauses, c.operatingHours, hours), ClockEscalation, 0, EscalateSystem)
		if c.name == ClockSameDayDischarge {
			for i, d := range DelayFlagDays {
				due(c.start.AddDate(0, 0, int(d)), ClockDelayFlag, d, []string{EscalateCoordinator, EscalateLead, EscalateSystem}[i])
			}
		}
	}
}

// advance returns the instant at which d of counted time has passed since
// start: time in a pause does not count, nor (when inHours) time outside
// the operating hours. Zero when an open pause stops it first.
func advance(start time.Time, d time.Duration, pauses []Interval, inHours bool, hours OperatingHours) time.Time {
	t, left := start, d
	for range 100000 {
		// In a pause: jump to its end.
		if i := slices.IndexFunc(pauses, func(p Interval) bool { return !t.Before(p.From) && (p.To.IsZero() || t.Before(p.To)) }); i >= 0 {
			if pauses[i].To.IsZero() {
				return time.Time{}
			}
			t = pauses[i].To
			continue
		}
		end := time.Time{} // end of the counting stretch from t
		if inHours {
			open, close := dayBounds(t, hours)
			switch {
			case t.Before(open):
				t = open
				continue
			case !t.Before(close):
				next, _ := dayBounds(close.Add(12*time.Hour), hours)
				t = next
				continue
			}
			end = close
		}
		for _, p := range pauses {
			if p.From.After(t) && (end.IsZero() || p.From.Before(end)) {
				end = p.From
			}
		}
		if end.IsZero() || end.Sub(t) >= left {
			return t.Add(left)
		}
		left -= end.Sub(t)
		t = end
	}
	return time.Time{}
}

// dayBounds returns the opening and closing instants of t's UK day: the
// wall-clock times of the hours on that date, whatever its length.
func dayBounds(t time.Time, h OperatingHours) (time.Time, time.Time) {
	l := t.In(london())
	at := func(m int) time.Time { return time.Date(l.Year(), l.Month(), l.Day(), m/60, m%60, 0, 0, london()) }
	return at(h.Open), at(h.Close)
}
