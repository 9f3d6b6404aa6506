package spa

import (
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
)

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

// Alert is a clock level a referral reached.
type Alert struct {
	Clock      string
	Level      ClockLevel
	DelayDays  int32
	At         time.Time
	EscalateTo string
}

// Interval is a span of time; a zero To is still open.
type Interval struct {
	From, To time.Time
}

// OperatingHours are the SPA's hours each day (UK time), in minutes after
// midnight; clocks that run in operating hours count only these.
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
	name           string
	target         time.Duration
	operatingHours bool
	start, stop    time.Time
}

// clocks lists the referral's clocks that have started.
func (r *Referral) clocks() []clock {
	var cs []clock
	stopAll := r.WithdrawnAt
	first := func(ts ...time.Time) time.Time {
		var out time.Time
		for _, t := range ts {
			if !t.IsZero() && (out.IsZero() || t.Before(out)) {
				out = t
			}
		}
		return out
	}
	if d, err := time.ParseInLocation(DateLayout, r.DischargeReadyDate, london()); err == nil {
		cs = append(cs, clock{name: ClockSameDayDischarge, target: 24 * time.Hour, start: d, stop: first(r.LeftHospitalAt, stopAll)})
	}
	var accepted, started time.Time
	for _, a := range r.Assignments {
		accepted, started = first(accepted, a.AcceptedAt), first(started, a.StartedAt)
		if a.Service == ServiceUrgentCommunityResponse {
			cs = append(cs, clock{name: ClockUrgentResponse, target: 2 * time.Hour, operatingHours: true, start: a.OfferedAt, stop: first(a.StartedAt, a.EndedAt, stopAll)})
		}
	}
	if !accepted.IsZero() {
		cs = append(cs, clock{name: ClockLeaveHospital, target: 2 * time.Hour, start: accepted, stop: first(r.LeftHospitalAt, stopAll)})
		if r.Pathway == PathwayEndOfLife {
			cs = append(cs, clock{name: ClockEndOfLife, target: 48 * time.Hour, start: accepted, stop: first(started, stopAll)})
		}
	}
	if r.Service == ServiceHomeCareReablement && !r.DecidedAt.IsZero() {
		cs = append(cs, clock{name: ClockReablement, target: 48 * time.Hour, start: r.DecidedAt, stop: first(started, stopAll)})
	}
	if r.OverlayApplied && r.LatestTest != nil {
		cs = append(cs, clock{name: ClockTestValidity, target: 48 * time.Hour, start: r.LatestTest.TakenAt, stop: first(r.LeftHospitalAt, stopAll)})
	}
	return cs
}

// Due is a clock alert that has come due.
type Due struct {
	At    time.Time
	Event ClockAlerted
}

// DueAlerts returns the alerts the referral's clocks have reached by now
// and that were not raised yet, earliest first. A clock counts from its
// start to its stop, less the time the referral was on hold (an open hold
// pauses it); the urgent-response clock counts only operating hours. Each
// alert is due at the instant the clock reached it, in event time.
func DueAlerts(r Referral, hours OperatingHours, now time.Time) []Due {
	var out []Due
	raised := func(name string, l ClockLevel, days int32) bool {
		return slices.ContainsFunc(r.Alerts, func(a Alert) bool { return a.Clock == name && a.Level == l && a.DelayDays == days })
	}
	for _, c := range r.clocks() {
		type mark struct {
			level ClockLevel
			after time.Duration
			days  int32
			to    string
		}
		marks := []mark{
			{ClockWarning, c.target * 3 / 4, 0, EscalateCoordinator},
			{ClockBreach, c.target, 0, EscalateLead},
			{ClockEscalation, 2 * c.target, 0, EscalateSystem},
		}
		if c.name == ClockSameDayDischarge {
			for i, d := range DelayFlagDays {
				marks = append(marks, mark{ClockDelayFlag, time.Duration(d) * 24 * time.Hour, d, []string{EscalateCoordinator, EscalateLead, EscalateSystem}[i]})
			}
		}
		for _, m := range marks {
			if raised(c.name, m.level, m.days) {
				continue
			}
			at := advance(c.start, m.after, r.Holds, c.operatingHours, hours)
			if at.IsZero() || at.After(now) || !c.stop.IsZero() && !at.Before(c.stop) {
				continue
			}
			out = append(out, Due{At: at, Event: ClockAlerted{Clock: c.name, Level: m.level, DelayDays: m.days, StartedAt: c.start, Target: c.target, EscalateTo: m.to}})
		}
	}
	slices.SortStableFunc(out, func(a, b Due) int { return a.At.Compare(b.At) })
	return out
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

// dayBounds returns the opening and closing instants of t's UK day.
func dayBounds(t time.Time, h OperatingHours) (time.Time, time.Time) {
	l := t.In(london())
	midnight := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, london())
	return midnight.Add(time.Duration(h.Open) * time.Minute), midnight.Add(time.Duration(h.Close) * time.Minute)
}
