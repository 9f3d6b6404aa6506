package spa

import (
	"testing"
	"time"
)

// TestDecideSwitchPolicy: a switch names a known rule, a reason and a UK
// date today or later; the same switch
// again decides nothing; the policies in force follow the switches.
func TestDecideSwitchPolicy(t *testing.T) {
	t.Parallel()
	overlay := func(on bool, from string) SwitchPolicy {
		return SwitchPolicy{Rule: PolicyRuleInfectionOverlay, On: on, EffectiveFrom: from, Reason: "guidance"}
	}
	var l PolicyLog
	e, err := DecideSwitchPolicy(l, overlay(true, "2026-12-01"), now)
	if err != nil || e == nil {
		t.Fatalf("switch: %v, %v", e, err)
	}
	l.Apply(Record{Sequence: 7, Event: e})
	if e, err := DecideSwitchPolicy(l, overlay(true, "2026-12-01"), now); e != nil || err != nil {
		t.Fatalf("the same switch again: %v, %v; want nothing", e, err)
	}
	for _, c := range []SwitchPolicy{{}, overlay(true, "2026-11-21"), overlay(true, "1/12/2026"), {Rule: 9, EffectiveFrom: "2026-12-01", Reason: "x"}} {
		if _, err := DecideSwitchPolicy(l, c, now); KindOf(err) != KindInvalid {
			t.Errorf("%+v: %v; want invalid", c, err)
		}
	}
	ps := DefaultPolicies.WithSwitches(l.Switches)
	if p := ps.At(time.Date(2026, 12, 1, 0, 0, 0, 0, london())); !p.InfectionOverlay || p.Version != "2026-12-01-overlay-on" || p.IsolationDays != 10 {
		t.Fatalf("in force from the switch: %+v", p)
	}
	if p := ps.At(time.Date(2026, 11, 30, 23, 59, 0, 0, london())); p.InfectionOverlay {
		t.Fatalf("in force before the switch: %+v", p)
	}
}

// TestSwitchFromToday: a switch from the day it is recorded is in force
// from the instant it was recorded, not the midnight before: what the day
// decided before it stands.
func TestSwitchFromToday(t *testing.T) {
	t.Parallel()
	recorded := time.Date(2026, 12, 1, 14, 0, 0, 0, london())
	e, err := DecideSwitchPolicy(PolicyLog{}, SwitchPolicy{Rule: PolicyRuleInfectionOverlay, On: true, EffectiveFrom: "2026-12-01", Reason: "outbreak"}, recorded)
	if err != nil {
		t.Fatal(err)
	}
	ps := DefaultPolicies.WithSwitches([]PolicySwitched{e.(PolicySwitched)})
	if p := ps.At(recorded.Add(-time.Minute)); p.InfectionOverlay {
		t.Fatalf("in force at 13:59, before it was recorded: %+v", p)
	}
	if p := ps.At(recorded); !p.InfectionOverlay {
		t.Fatalf("not in force when recorded: %+v", p)
	}
	// A hold released by the switch is dated when it was recorded.
	held := referralAt(time.Date(2026, 11, 30, 16, 0, 0, 0, london()), submitted(fromCareHome),
		ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay})
	on := DefaultPolicies.Switch(true, time.Date(2026, 11, 1, 0, 0, 0, 0, london()))
	off, err := DecideSwitchPolicy(PolicyLog{}, SwitchPolicy{Rule: PolicyRuleInfectionOverlay, EffectiveFrom: "2026-12-01", Reason: "outbreak over"}, recorded)
	if err != nil {
		t.Fatal(err)
	}
	if at, ok := PolicyStep(held, on.WithSwitches([]PolicySwitched{off.(PolicySwitched)}), recorded.Add(time.Minute)); !ok || !at.Equal(recorded) {
		t.Fatalf("release at %v (%v), want when the switch was recorded", at, ok)
	}
}

// TestSwitchReplacesALaterOne: a date mistyped far ahead is put right by
// a switch from an earlier date, which replaces it.
func TestSwitchReplacesALaterOne(t *testing.T) {
	t.Parallel()
	var l PolicyLog
	for i, from := range []string{"2062-12-01", "2026-12-01"} {
		e, err := DecideSwitchPolicy(l, SwitchPolicy{Rule: PolicyRuleInfectionOverlay, On: true, EffectiveFrom: from, Reason: "guidance"}, now)
		if err != nil || e == nil {
			t.Fatalf("switch from %s: %v, %v", from, e, err)
		}
		l.Apply(Record{Sequence: uint64(i + 1), Event: e})
	}
	ps := DefaultPolicies.WithSwitches(l.Switches)
	if p := ps.At(time.Date(2030, 1, 1, 0, 0, 0, 0, london())); !p.InfectionOverlay || p.Version != "2026-12-01-overlay-on" {
		t.Fatalf("in force in 2030: %+v", p)
	}
	if p := ps.At(time.Date(2063, 1, 1, 0, 0, 0, 0, london())); p.Version != "2026-12-01-overlay-on" {
		t.Fatalf("the mistyped switch still comes: %+v", p)
	}
}
