package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// listPolicies shows the routing policies in force from each date.
func (c *ctl) listPolicies(ctx context.Context, args []string) error {
	fs := c.flags("policies")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	var res *spav1.ListPoliciesResponse
	if err := c.call(ctx, func(ctx context.Context) (err error) {
		res, err = c.policies.ListPolicies(ctx, &spav1.ListPoliciesRequest{})
		return err
	}); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tVERSION\tINFECTION OVERLAY\tISOLATION DAYS\tTEST VALID FOR")
	for _, v := range res.GetVersions() {
		overlay, isolation, valid := "off", "-", "-"
		if v.GetInfectionOverlay() {
			overlay, isolation, valid = "on", fmt.Sprint(v.GetIsolationDays()), fmt.Sprintf("%dh", v.GetTestValidityHours())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", spa.LocalDate(v.GetEffectiveFrom().AsTime()), v.GetVersion(), overlay, isolation, valid)
	}
	return tw.Flush()
}

// switchPolicy switches a rule set on or off from a date.
func (c *ctl) switchPolicy(ctx context.Context, args []string) error {
	fs := c.flags("policy")
	rule := fs.String("rule", "", "the rule set: infection-overlay")
	on := fs.Bool("on", false, "switch it on")
	off := fs.Bool("off", false, "switch it off")
	from := fs.String("from", "", "UK date it takes effect at midnight, today or later (YYYY-MM-DD)")
	reason := fs.String("reason", "", "why (required)")
	requestID := requestIDFlag(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	r, err := parseEnum(spav1.PolicyRule_value, "POLICY_RULE_", strings.ReplaceAll(*rule, "-", "_"), "--rule")
	if err != nil {
		return err
	}
	if *on == *off {
		return fmt.Errorf("policy: give one of --on and --off")
	}
	req := &spav1.SwitchPolicyRequest{Rule: spav1.PolicyRule(r), On: *on, EffectiveFrom: *from, Reason: *reason}
	return c.command(ctx, *requestID, func(ctx context.Context, id string) error {
		req.RequestId = id
		res, err := c.policies.SwitchPolicy(ctx, req)
		switch {
		case err != nil:
		case res.GetUnchanged():
			fmt.Fprintf(c.stdout, "%s: already switched so (sequence %d)\n", *rule, res.GetSequence())
		default:
			fmt.Fprintf(c.stdout, "%s: switched %s from %s (sequence %d)\n", *rule, map[bool]string{true: "on", false: "off"}[*on], *from, res.GetSequence())
			for _, s := range res.GetSuperseded() {
				fmt.Fprintf(c.stdout, "  replaces the switch recorded for %s\n", s)
			}
		}
		return err
	})
}
