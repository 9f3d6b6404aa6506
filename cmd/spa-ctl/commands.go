package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	spav1 "spa/internal/gen/spa/v1"
)

var jsonOut = protojson.MarshalOptions{Multiline: true, Indent: "  "}

// fileRequest is a request read from a JSON file: it carries a request id.
type fileRequest interface {
	proto.Message
	GetRequestId() string
}

// requestFile reads the request of command verb from the JSON file -f
// (- for stdin), its request_id set by --request-id when given.
func (c *ctl) requestFile(verb string, args []string, req fileRequest) error {
	fs := c.flags(verb)
	name := string(req.ProtoReflect().Descriptor().Name())
	file := fs.String("f", "", "JSON file holding a "+name+" (- for stdin)")
	requestID := fs.String("request-id", "", "idempotency key; overrides the file's request_id")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	if *file == "" {
		return fmt.Errorf("%s: -f FILE is required", verb)
	}
	var data []byte
	var err error
	if *file == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(*file)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	if err := protojson.Unmarshal(data, req); err != nil {
		return fmt.Errorf("%s: %s is not a %s: %w", verb, *file, name, err)
	}
	if *requestID != "" {
		f := req.ProtoReflect().Descriptor().Fields().ByName("request_id")
		req.ProtoReflect().Set(f, protoreflect.ValueOfString(*requestID))
	}
	return nil
}

// amend sends an amendment read from a JSON file.
func (c *ctl) amend(ctx context.Context, args []string) error {
	req := new(spav1.AmendReferralRequest)
	if err := c.requestFile("amend", args, req); err != nil {
		return err
	}
	return c.command(ctx, req.GetRequestId(), func(ctx context.Context, id string) error {
		req.RequestId = id
		res, err := c.client.AmendReferral(ctx, req)
		switch {
		case err != nil:
		case res.GetUnchanged():
			fmt.Fprintf(c.stdout, "%s: already so (sequence %d)\n", req.GetReferralId(), res.GetSequence())
		default:
			fmt.Fprintf(c.stdout, "%s: amended (sequence %d)\n", req.GetReferralId(), res.GetSequence())
		}
		return err
	})
}

func (c *ctl) submit(ctx context.Context, args []string) error {
	req := new(spav1.SubmitReferralRequest)
	if err := c.requestFile("submit", args, req); err != nil {
		return err
	}
	if req.GetRequestId() == "" {
		return fmt.Errorf("submit: set request_id in the file or --request-id (a UUID), so that a retry cannot submit twice")
	}
	var res *spav1.SubmitReferralResponse
	if err := c.call(ctx, func(ctx context.Context) (err error) {
		res, err = c.client.SubmitReferral(ctx, req)
		return err
	}); err != nil {
		return err
	}
	return c.print(res)
}

func (c *ctl) get(ctx context.Context, args []string) error {
	fs := c.flags("get")
	minSeq := fs.Uint64("min-seq", 0, "consistency token: wait until the read model has applied this sequence")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("get: give one REFERRAL_ID")
	}
	var res *spav1.GetReferralResponse
	if err := c.call(ctx, func(ctx context.Context) (err error) {
		res, err = c.client.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: fs.Arg(0), MinSequence: *minSeq})
		return err
	}); err != nil {
		return err
	}
	return c.print(res)
}

func (c *ctl) board(ctx context.Context, args []string) error {
	fs := c.flags("board")
	st := fs.String("status", "", "filter by status")
	pw := fs.String("pathway", "", "filter by pathway")
	site := fs.String("site", "", "filter by referring site ODS code")
	size := fs.Int("page-size", 50, "rows per page (1-500)")
	all := fs.Bool("all", false, "fetch every page")
	minSeq := fs.Uint64("min-seq", 0, "consistency token")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	req := &spav1.ListReferralsRequest{SiteOds: strings.ToUpper(*site), PageSize: int32(*size), MinSequence: *minSeq}
	st2, err := parseEnum(spav1.ReferralStatus_value, "REFERRAL_STATUS_", *st, "--status")
	if err != nil {
		return fmt.Errorf("board: %w", err)
	}
	pw2, err := parseEnum(spav1.Pathway_value, "PATHWAY_", *pw, "--pathway")
	if err != nil {
		return fmt.Errorf("board: %w", err)
	}
	req.Status, req.Pathway = spav1.ReferralStatus(st2), spav1.Pathway(pw2)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERRAL\tSTATUS\tPATHWAY\tPROVIDER\tSITE\tWARD\tNHS NUMBER\tPATIENT\tDRD\tDELAY\tCLOCKS")
	rows, more := 0, false
	for {
		var res *spav1.ListReferralsResponse
		if err := c.call(ctx, func(ctx context.Context) (err error) {
			res, err = c.client.ListReferrals(ctx, req)
			return err
		}); err != nil {
			return err
		}
		for _, r := range res.GetReferrals() {
			rows++
			clocks := enumName(r.GetClockLevel().String(), "CLOCK_LEVEL_")
			if len(r.GetBreachedClocks()) > 0 {
				clocks += " (" + strings.Join(r.GetBreachedClocks(), ", ") + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%dd\t%s\n", r.GetReferralId(),
				enumName(r.GetStatus().String(), "REFERRAL_STATUS_"), enumName(r.GetPathway().String(), "PATHWAY_"), or(r.GetProviderOds(), "-"),
				r.GetSiteOds(), r.GetWard(), r.GetNhsNumber(), r.GetPatientName(), or(r.GetDischargeReadyDate(), "-"), r.GetDelayDays(), clocks)
		}
		more = res.GetNextPageToken() != ""
		if !*all || !more {
			break
		}
		req.PageToken = res.GetNextPageToken()
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "%d referrals\n", rows)
	if more {
		fmt.Fprintln(c.stderr, "more on the next page: --all shows every page")
	}
	return nil
}

func (c *ctl) print(m proto.Message) error {
	data, err := jsonOut.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, string(data))
	return err
}

// describe turns a gRPC error into a readable one, listing field violations.
func describe(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", st.Code(), st.Message())
	switch {
	case st.Code() == codes.Unavailable && strings.Contains(st.Message(), "server preface"):
		b.WriteString(" (the server may require TLS: give --tls-ca, --tls-cert and --tls-key)")
	case st.Code() == codes.Unavailable && strings.Contains(st.Message(), "certificate"):
		b.WriteString(" (the server refused this certificate, or --tls-ca does not sign the server's)")
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fmt.Fprintf(&b, "\n  %s: %s", v.GetField(), v.GetDescription())
			}
		}
	}
	return fmt.Errorf("%s", b.String())
}

// enumName turns "PATHWAY_P1_HOME_FIRST" into "p1_home_first", and the
// unspecified value into "-".
func enumName(s, prefix string) string {
	s = strings.ToLower(strings.TrimPrefix(s, prefix))
	if s == "unspecified" {
		return "-"
	}
	return s
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
