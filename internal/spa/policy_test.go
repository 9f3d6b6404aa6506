package spa

import (
	"testing"
	"time"
)

// TestDecideSwitchPolicy: a switch names a known rule, a reason and a UK
// date today or later, not before the last switch's; the same switch
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
	if _, err := DecideSwitchPolicy(l, overlay(false, "2026-11-30"), now); KindOf(err) != KindFailedPrecondition {
		t.Fatalf("a switch before the last: %v", err)
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
