package spa

import (
	"slices"
	"time"
)

// AggregatePolicy is the kind of aggregate a switchable rule set is: its
// switches are stored on spa.policy.<rule>.
const AggregatePolicy Aggregate = "policy"

// PolicyRule is a dated rule set that can be switched on or off.
type PolicyRule int32

// The rules.
const (
	PolicyRuleUnspecified PolicyRule = iota
	PolicyRuleInfectionOverlay
	policyRuleEnd
)

// policyRuleIDs are the rules' aggregate ids. Persisted: never rename.
var policyRuleIDs = map[PolicyRule]string{PolicyRuleInfectionOverlay: "infection-overlay"}

// PolicyID returns the aggregate id of a rule ("" for none).
func PolicyID(r PolicyRule) string { return policyRuleIDs[r] }

// PolicySwitched: a rule set was switched on or off from a UK date.
type PolicySwitched struct {
	Rule PolicyRule
	On   bool
	// EffectiveFrom is an ISO date: in force from its UK midnight, or,
	// when set, from EffectiveAt (a switch from the day it was recorded is
	// in force from the instant it was recorded: what that day decided
	// before it stands).
	EffectiveFrom string
	Reason        string
	EffectiveAt   time.Time
}

// From is the instant the switch comes into force (the zero time for a
// date that is not one).
func (s PolicySwitched) From() time.Time {
	if !s.EffectiveAt.IsZero() {
		return s.EffectiveAt
	}
	from, _ := time.ParseInLocation(DateLayout, s.EffectiveFrom, london())
	return from
}

func (PolicySwitched) eventName() string    { return "PolicySwitched" }
func (PolicySwitched) aggregate() Aggregate { return AggregatePolicy }

// PolicyLog is a rule's switches, rebuilt from its events.
type PolicyLog struct {
	Switches []PolicySwitched
	Version  uint64
}

// Apply evolves the log by one recorded event.
func (l *PolicyLog) Apply(rec Record) {
	l.Version = rec.Sequence
	if e, ok := rec.Event.(PolicySwitched); ok {
		l.Switches = append(l.Switches, e)
	}
}

// Superseded returns the switches recorded before the last one that it
// replaces: those from its instant or later (see Policies.Switch).
func (l PolicyLog) Superseded() []PolicySwitched {
	n := len(l.Switches)
	if n == 0 {
		return nil
	}
	last := l.Switches[n-1]
	var out []PolicySwitched
	for _, s := range l.Switches[:n-1] {
		if s.Rule == last.Rule && !s.From().Before(last.From()) {
			out = append(out, s)
		}
	}
	return out
}

// SwitchPolicy switches a rule set on or off from a date.
type SwitchPolicy struct {
	Rule          PolicyRule
	On            bool
	EffectiveFrom string
	Reason        string
}

// DecideSwitchPolicy decides a switch: a known rule, a reason, a date
// today or later (UK): the past is not rewritten. A switch from today is
// in force from now, not from midnight. A switch replaces the switches
// recorded for later dates (a date mistyped can be put right before it
// comes), and the same switch as the last decides nothing.
func DecideSwitchPolicy(l PolicyLog, c SwitchPolicy, now time.Time) (Event, error) {
	var vs violations
	checkEnum(&vs, "rule", c.Rule, policyRuleEnd, true)
	checkText(&vs, "reason", c.Reason, true, MaxFreeTextLen)
	if c.EffectiveFrom == "" {
		vs.add("effective_from", "is required")
	} else if _, err := time.ParseInLocation(DateLayout, c.EffectiveFrom, london()); err != nil {
		vs.add("effective_from", "must be a date (YYYY-MM-DD)")
	} else if today := LocalDate(now); c.EffectiveFrom < today {
		vs.add("effective_from", "must be today (%s) or later: a switch does not rewrite the past", today)
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	e := PolicySwitched{Rule: c.Rule, On: c.On, EffectiveFrom: c.EffectiveFrom, Reason: c.Reason}
	if c.EffectiveFrom == LocalDate(now) {
		e.EffectiveAt = now.UTC()
	}
	if n := len(l.Switches); n > 0 {
		last := l.Switches[n-1]
		if last.On == c.On && last.EffectiveFrom == c.EffectiveFrom {
			return nil, nil
		}
	}
	return e, nil
}

// WithSwitches returns the policies with the switches applied in the
// order recorded: each switch from its instant stays in force (the
// versions after it, a switch recorded earlier for a later date among
// them, are dropped, see Switch).
func (ps Policies) WithSwitches(switches []PolicySwitched) Policies {
	out := slices.Clone(ps)
	for _, s := range switches {
		from := s.From()
		if from.IsZero() || s.Rule != PolicyRuleInfectionOverlay {
			continue
		}
		out = out.Switch(s.On, from)
	}
	return out
}
