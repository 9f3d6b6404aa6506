package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/audit"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/signing"
	"spa/internal/spa"
)

var jsonLine = protojson.MarshalOptions{}

// replayRequest reads the replay filters shared by replay and verify.
func (c *ctl) replayRequest(name string, args []string) (*spav1.ReplayEventsRequest, []string, error) {
	fs := c.flags(name)
	req := &spav1.ReplayEventsRequest{}
	fs.StringVar(&req.ReferralId, "referral", "", "only this referral's events")
	fs.StringVar(&req.ProviderOds, "provider", "", "only events on or addressed to this provider")
	types := fs.String("type", "", "only these event types, comma separated (e.g. OfferMade,ClockAlerted)")
	from := fs.String("from", "", "stored at or after this time (RFC 3339)")
	to := fs.String("to", "", "stored before this time (RFC 3339)")
	fs.Uint64Var(&req.FromSequence, "from-seq", 0, "from this sequence")
	fs.Uint64Var(&req.ToSequence, "to-seq", 0, "up to this sequence")
	fs.BoolVar(&req.IncludeData, "data", false, "include each event's stored bytes and hash (what verify checks)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, errUsage
	}
	if *types != "" {
		req.EventTypes = strings.Split(*types, ",")
	}
	for _, t := range []struct {
		s   string
		dst **timestamppb.Timestamp
	}{{*from, &req.FromTime}, {*to, &req.ToTime}} {
		if t.s == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.s)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %q is not an RFC 3339 time", name, t.s)
		}
		*t.dst = timestamppb.New(v)
	}
	return req, fs.Args(), nil
}

// replay streams events to fn.
func (c *ctl) replayEach(ctx context.Context, req *spav1.ReplayEventsRequest, fn func(*spav1.StoredEvent) error) error {
	stream, err := c.audit.ReplayEvents(ctx, req)
	if err != nil {
		return describe(err)
	}
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return describe(err)
		}
		if err := fn(res.GetEvent()); err != nil {
			return err
		}
	}
}

// replay writes the matching events as JSON lines.
func (c *ctl) replay(ctx context.Context, args []string) error {
	req, _, err := c.replayRequest("replay", args)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(c.stdout)
	defer w.Flush()
	return c.replayEach(ctx, req, func(e *spav1.StoredEvent) error {
		b, err := jsonLine.Marshal(e)
		if err != nil {
			return err
		}
		w.Write(b)
		return w.WriteByte('\n')
	})
}

// verify checks the hash chains of the live log, or of a file written by
// replay --data; given public keys, every event's signature too, and the
// log against the signed checkpoints given (a file, the live stream, or
// both).
func (c *ctl) verify(ctx context.Context, args []string) error {
	fs := c.flags("verify")
	file := fs.String("file", "", "check this JSON lines file (spa-ctl replay --data) instead of the live log")
	partial := fs.Bool("partial", false, "with --file: a filtered export (replay --referral, --provider, --type or --from-seq): check its chains, not that every sequence is there")
	var keys publicKeys
	fs.Var(&keys, "public-key", "a public key events and checkpoints must be signed with (name+hash+base64), or a file of them such as signing.pub; repeatable")
	var files []string
	fs.Func("checkpoints", "check the log against the signed checkpoints in this file (spa-ctl checkpoints --out); repeatable", func(v string) error {
		files = append(files, v)
		return nil
	})
	natsURL := fs.String("nats-url", c.getenv("SPA_NATS_URL"), "with --public-key: also check against every checkpoint in the live checkpoint stream (env SPA_NATS_URL)")
	// Reading the checkpoint stream is the auditor's part on NATS.
	auth := natsauth.Client{Identity: natsauth.Auditor, NkeyFile: c.getenv("SPA_NATS_NKEY"), CredsFile: c.getenv("SPA_NATS_CREDS"),
		CAFile: c.getenv("SPA_NATS_CA"), CertFile: c.getenv("SPA_NATS_CERT"), KeyFile: c.getenv("SPA_NATS_KEY")}
	auth.Register(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("verify: unexpected arguments %v", fs.Args())
	}
	if *partial && *file == "" {
		return fmt.Errorf("verify: --partial applies to --file only: the live log is checked whole")
	}
	var verifiers signing.Verifiers
	if len(keys) > 0 {
		var err error
		if verifiers, err = signing.ParseVerifiers(keys...); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	var notes [][]byte
	for _, f := range files {
		n, err := readCheckpoints(f)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		notes = append(notes, n...)
	}
	if *natsURL != "" && !*partial && len(keys) > 0 {
		opts, err := auth.Options()
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		conn, err := jetstream.DialNow(*natsURL, "spa-ctl", opts...)
		if err != nil {
			return err
		}
		live, err := c.liveCheckpoints(ctx, conn)
		conn.Close()
		if err != nil {
			return fmt.Errorf("verify: the live checkpoints: %w", err)
		}
		notes = append(notes, live...)
	}
	signed, err := audit.NewSigned(verifiers, notes, *partial)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	check := func(e *spav1.StoredEvent) error {
		if b := signed.Check(spa.StoredEvent{Sequence: e.GetSequence(), Subject: e.GetSubject(), Data: e.GetData(), Hash: e.GetHash(), Signature: e.GetSignature()}); b != nil {
			return fmt.Errorf("verify: broken at %w", b)
		}
		return nil
	}
	if *file != "" {
		err = eachLine(*file, check)
	} else {
		err = c.replayEach(ctx, &spav1.ReplayEventsRequest{IncludeData: true}, check)
	}
	if err != nil {
		return err
	}
	if b := signed.Finish(); b != nil {
		return fmt.Errorf("verify: broken at %w", b)
	}
	r := signed.Report()
	what := "every sequence present, every hash and link intact"
	if *partial {
		what = "every hash and link intact (a partial export: sequences not checked)"
	}
	fmt.Fprintf(c.stdout, "verified %d events on %d subjects: %s\n", r.Events, r.Subjects, what)
	switch {
	case !r.Authorship:
		fmt.Fprintln(c.stdout, "authorship NOT checked: anyone able to publish to NATS could have appended these events; give --public-key")
		return nil
	default:
		fmt.Fprintln(c.stdout, "every event signed by a key given")
	}
	switch {
	case *partial:
	case len(notes) == 0:
		fmt.Fprintln(c.stdout, "no checkpoint given: events cut from the end would not show; give --checkpoints or --nats-url")
	case r.Last > r.Covered:
		fmt.Fprintf(c.stdout, "matches %d signed checkpoints up to sequence %d; sequences %d-%d are newer than the last checkpoint: signed, but a cut there shows only once a checkpoint covers them\n",
			r.Checkpoints, r.Covered, r.Covered+1, r.Last)
	default:
		fmt.Fprintf(c.stdout, "matches %d signed checkpoints, the last at sequence %d, the log's end\n", r.Checkpoints, r.Covered)
	}
	return nil
}

func eachLine(path string, fn func(*spav1.StoredEvent) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		e := new(spav1.StoredEvent)
		if err := protojson.Unmarshal(sc.Bytes(), e); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return sc.Err()
}

// timeline prints one referral's history for a person to read.
func (c *ctl) timeline(ctx context.Context, args []string) error {
	fs := c.flags("timeline")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("timeline: give one REFERRAL_ID")
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tWHEN (UK)\tWHO\tWHAT")
	err := c.replayEach(ctx, &spav1.ReplayEventsRequest{ReferralId: fs.Arg(0)}, func(e *spav1.StoredEvent) error {
		env := e.GetEnvelope()
		who := strings.Trim(strings.Join([]string{env.GetActor().GetOds(), env.GetActor().GetRole(), env.GetActor().GetUser()}, " "), " ")
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.GetSequence(), env.GetOccurredAt().AsTime().In(ukTime()).Format("2006-01-02 15:04"), or(who, "-"), summary(env))
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

// summary describes an event in one line: its type and its fields.
func summary(env *spav1.Envelope) string {
	var name string
	var parts []string
	env.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.ContainingOneof() == nil {
			return true
		}
		name = string(fd.Message().Name())
		v.Message().Range(func(f protoreflect.FieldDescriptor, fv protoreflect.Value) bool {
			if f.Name() == "details" {
				parts = append(parts, "details given")
				return true
			}
			s := fieldText(f, fv)
			parts = append(parts, string(f.Name())+"="+s)
			return true
		})
		return false
	})
	sort.Strings(parts)
	if pv := env.GetPolicyVersion(); pv != "" {
		parts = append(parts, "policy="+pv)
	}
	return name + " " + strings.Join(parts, " ")
}

func fieldText(f protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch {
	case f.IsMap():
		var kv []string
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			kv = append(kv, k.String()+":"+mv.String())
			return true
		})
		sort.Strings(kv)
		return "{" + strings.Join(kv, ",") + "}"
	case f.IsList():
		var items []string
		for i := range v.List().Len() {
			items = append(items, fieldText(f, v.List().Get(i)))
		}
		return "[" + strings.Join(items, ",") + "]"
	case f.Kind() == protoreflect.EnumKind:
		if ev := f.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return strings.ToLower(string(ev.Name()))
		}
	case f.Kind() == protoreflect.MessageKind:
		b, _ := protojson.Marshal(v.Message().Interface())
		return string(b)
	}
	return fmt.Sprint(v.Interface())
}

func ukTime() *time.Location {
	if l, err := time.LoadLocation("Europe/London"); err == nil {
		return l
	}
	return time.UTC
}

// accessLog lists who read a referral's data.
func (c *ctl) accessLog(ctx context.Context, args []string) error {
	fs := c.flags("access-log")
	id := fs.String("referral", "", "the referral")
	patient := fs.String("patient", "", "or the patient's NHS number: every read of any of their referrals")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if (*id == "") == (*patient == "") {
		return errors.New("access-log: give --referral ID or --patient NHS_NUMBER")
	}
	nhs := strings.ReplaceAll(*patient, " ", "")
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN (UK)\tREFERRAL\tORGANISATION\tROLE\tUSER\tPURPOSE\tHOW\tOUTCOME\tREQUEST")
	err := c.pages(ctx, func(ctx context.Context, token string) (string, error) {
		res, err := c.audit.ListAccess(ctx, &spav1.ListAccessRequest{ReferralId: *id, NhsNumber: nhs, PageToken: token})
		for _, r := range res.GetRecords() {
			outcome := "read"
			if r.GetRefused() {
				outcome = "REFUSED"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetAt().AsTime().In(ukTime()).Format("2006-01-02 15:04:05"), r.GetReferralId(),
				or(r.GetActor().GetOds(), "-"), or(r.GetActor().GetRole(), "-"), or(r.GetActor().GetUser(), "-"), or(r.GetPurpose(), "-"), r.GetMethod(),
				outcome, or(r.GetRequestId(), "-"))
		}
		return res.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

// watchFeed prints a provider's live feed, resuming after a cursor; each
// line starts with the cursor to pass as --after next time.
func (c *ctl) watchFeed(ctx context.Context, args []string) error {
	fs := c.flags("watch")
	provider := fs.String("provider", "", "the provider's ODS code (required)")
	after := fs.Uint64("after", 0, "the last cursor seen; 0 starts from the beginning of the log")
	beats := fs.Bool("heartbeats", false, "print heartbeats too")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	stream, err := c.assignments.WatchAssignments(ctx, &spav1.WatchAssignmentsRequest{ProviderOds: strings.ToUpper(*provider), AfterSequence: *after})
	if err != nil {
		return describe(err)
	}
	for {
		res, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: the last cursor printed is where to resume
			}
			return describe(err)
		}
		if res.GetHeartbeat() {
			if *beats {
				fmt.Fprintf(c.stdout, "%d\theartbeat\n", res.GetCursor())
			}
			continue
		}
		env := res.GetEvent().GetEnvelope()
		fmt.Fprintf(c.stdout, "%d\t%s\t%s\t%s\n", res.GetCursor(), env.GetOccurredAt().AsTime().In(ukTime()).Format("2006-01-02 15:04"), env.GetAggregateId(), summary(env))
	}
}
