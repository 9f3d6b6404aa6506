package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	spav1 "spa/internal/gen/spa/v1"
)

// parseEnum finds value name (e.g. "care_home_bed") of an enum with prefix.
func parseEnum(values map[string]int32, prefix, name, flagName string) (int32, error) {
	if name == "" {
		return 0, nil
	}
	v, ok := values[prefix+strings.ToUpper(name)]
	if !ok || v == 0 {
		var names []string
		for k, n := range values {
			if n != 0 {
				names = append(names, strings.ToLower(strings.TrimPrefix(k, prefix)))
			}
		}
		return 0, fmt.Errorf("unknown %s %q (one of %s)", flagName, name, strings.Join(names, ", "))
	}
	return v, nil
}

func (c *ctl) listProviders(ctx context.Context, args []string) error {
	fs := c.flags("providers")
	borough := fs.String("borough", "", "filter by borough served")
	service := fs.String("service", "", "filter by service, e.g. care_home_bed")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	s, err := parseEnum(spav1.Service_value, "SERVICE_", *service, "--service")
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tNAME\tBOROUGHS\tSERVICE\tAVAILABLE\tDECLARED\tRESERVED\tOPEN\tAS OF")
	err = c.pages(ctx, func(ctx context.Context, token string) (string, error) {
		res, err := c.providers.ListProviders(ctx, &spav1.ListProvidersRequest{Borough: *borough, Service: spav1.Service(s), PageToken: token})
		for _, p := range res.GetProviders() {
			d := p.GetDetails()
			for _, cp := range p.GetCapacity() {
				asOf := "-"
				if cp.GetAsOf() != nil {
					asOf = cp.GetAsOf().AsTime().Local().Format("2006-01-02 15:04")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%v\t%s\n", d.GetOds(), d.GetName(), strings.Join(d.GetBoroughs(), ","),
					enumName(cp.GetService().String(), "SERVICE_"), cp.GetAvailableUnits(), cp.GetDeclaredUnits(), cp.GetReservedUnits(), cp.GetOpen(), asOf)
			}
		}
		return res.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

// declareCapacity declares a provider's vacancies of one service.
func (c *ctl) declareCapacity(ctx context.Context, args []string) error {
	fs := c.flags("capacity")
	provider := fs.String("provider", "", "the provider's ODS code (required)")
	service := fs.String("service", "", "the service, e.g. care_home_bed (required)")
	units := fs.Int("units", -1, "units free as counted (required)")
	closed := fs.Bool("closed", false, "closed to admissions")
	asOf := fs.String("as-of", "", "when the units were counted, RFC 3339 (default now)")
	requestID := requestIDFlag(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	s, err := parseEnum(spav1.Service_value, "SERVICE_", *service, "--service")
	if err != nil {
		return err
	}
	if *provider == "" || s == 0 || *units < 0 || fs.NArg() != 0 {
		return fmt.Errorf("capacity: give --provider, --service and --units (0 or more)")
	}
	// Whole seconds, so that the as-of the retry hint names is the one sent.
	at := time.Now().Truncate(time.Second)
	if *asOf != "" {
		if at, err = time.Parse(time.RFC3339, *asOf); err != nil {
			return fmt.Errorf("capacity: --as-of: %w", err)
		}
	}
	req := &spav1.UpdateCapacityRequest{ProviderOds: *provider, Capacity: []*spav1.Capacity{{
		Service: spav1.Service(s), AvailableUnits: int32(min(*units, math.MaxInt32)), Open: !*closed, AsOf: timestamppb.New(at)}}}
	again := []string{"--as-of", at.UTC().Format(time.RFC3339Nano)}
	return c.command(ctx, *requestID, func(ctx context.Context, id string) error {
		req.RequestId = id
		res, err := c.providers.UpdateCapacity(ctx, req)
		switch {
		case err != nil:
		case res.GetUnchanged():
			fmt.Fprintf(c.stdout, "%s: already declared (sequence %d)\n", *provider, res.GetSequence())
		default:
			fmt.Fprintf(c.stdout, "%s: declared (sequence %d)\n", *provider, res.GetSequence())
		}
		return err
	}, again...)
}

func (c *ctl) listAssignments(ctx context.Context, args []string) error {
	fs := c.flags("assignments")
	provider := fs.String("provider", "", "the provider's ODS code (required)")
	st := fs.String("status", "", "filter by status, e.g. requested")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	s, err := parseEnum(spav1.TaskStatus_value, "TASK_STATUS_", strings.ReplaceAll(*st, "-", "_"), "--status")
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ASSIGNMENT\tSERVICE\tSTATUS\tOFFERED\tREASON")
	err = c.pages(ctx, func(ctx context.Context, token string) (string, error) {
		res, err := c.assignments.ListAssignments(ctx, &spav1.ListAssignmentsRequest{ProviderOds: strings.ToUpper(*provider), Status: spav1.TaskStatus(s), PageToken: token})
		for _, a := range res.GetAssignments() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.GetAssignmentId(), enumName(a.GetService().String(), "SERVICE_"),
				enumName(a.GetStatus().String(), "TASK_STATUS_"), a.GetOfferedAt().AsTime().Local().Format("2006-01-02 15:04"), or(a.GetReason(), "-"))
		}
		return res.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

// answer sends a provider's answer to an offer.
func (c *ctl) answer(ctx context.Context, verb string, args []string) error {
	fs := c.flags(verb)
	reason := fs.String("reason", "", "why (required to decline)")
	requestID := requestIDFlag(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%s: give one ASSIGNMENT_ID", verb)
	}
	id := fs.Arg(0)
	return c.command(ctx, *requestID, func(ctx context.Context, requestID string) error {
		var err error
		switch verb {
		case "accept":
			_, err = c.assignments.AcceptOffer(ctx, &spav1.AcceptOfferRequest{AssignmentId: id, RequestId: requestID})
		case "decline":
			_, err = c.assignments.DeclineOffer(ctx, &spav1.DeclineOfferRequest{AssignmentId: id, Reason: *reason, RequestId: requestID})
		case "start":
			_, err = c.assignments.StartCare(ctx, &spav1.StartCareRequest{AssignmentId: id, RequestId: requestID})
		case "complete":
			_, err = c.assignments.CompleteAssignment(ctx, &spav1.CompleteAssignmentRequest{AssignmentId: id, RequestId: requestID})
		}
		if err == nil {
			fmt.Fprintf(c.stdout, "%s: %sed\n", id, strings.TrimSuffix(verb, "e"))
		}
		return err
	})
}

func (c *ctl) left(ctx context.Context, args []string) error {
	fs := c.flags("left")
	requestID := requestIDFlag(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("left: give one REFERRAL_ID")
	}
	return c.command(ctx, *requestID, func(ctx context.Context, requestID string) error {
		res, err := c.client.RecordPatientLeft(ctx, &spav1.RecordPatientLeftRequest{ReferralId: fs.Arg(0), RequestId: requestID})
		if err == nil {
			fmt.Fprintf(c.stdout, "%s: patient left hospital (sequence %d)\n", fs.Arg(0), res.GetSequence())
		}
		return err
	})
}
