package app

import (
	"context"

	"spa/internal/spa"
)

// SwitchPolicy records a switch of a dated rule set. It returns the
// event's sequence and false, or, when the same switch is the last one
// recorded, the policy's version and true (nothing appended); and the
// switches recorded earlier that it replaces. The workers route by the
// switches in the log.
func (a *App) SwitchPolicy(ctx context.Context, meta Meta, c spa.SwitchPolicy) (uint64, bool, []spa.PolicySwitched, error) {
	l, seq, err := update(ctx, a, meta, spa.AggregatePolicy, spa.PolicyID(c.Rule), "", false, one(spa.DecideSwitchPolicy, c))
	version, unchanged, err := answer(l.Version, seq, err)
	if err != nil || unchanged {
		return version, unchanged, nil, err
	}
	return version, false, l.Superseded(), nil
}

// Policies returns the policy versions in force as the log has them: base
// (the built-in dated policies) with every recorded switch applied.
func (a *App) Policies(ctx context.Context, base spa.Policies) (spa.Policies, error) {
	var switches []spa.PolicySwitched
	for _, r := range []spa.PolicyRule{spa.PolicyRuleInfectionOverlay} {
		recs, _, err := a.store.Load(ctx, spa.AggregatePolicy, spa.PolicyID(r))
		if err != nil {
			return nil, err
		}
		var l spa.PolicyLog
		for _, rec := range recs {
			l.Apply(rec)
		}
		switches = append(switches, l.Switches...)
	}
	return base.WithSwitches(switches), nil
}
