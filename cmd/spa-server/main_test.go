package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/referraltest"
	spaserver "spa/internal/server"
	"spa/internal/spa"
)

// server is a running realMain.
type server struct {
	addr   string
	conn   *grpc.ClientConn
	client spav1.ReferralServiceClient
	stop   func() error
}

// startServer runs the real main in the development mode with args (plus
// --listen 127.0.0.1:0) and returns once it serves gRPC and reports
// SERVING. Its connection calls as each call's party (owner).
func startServer(t testing.TB, args ...string) *server {
	t.Helper()
	return startServerWith(t, append(newOwner().dialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials())), args...)
}

// startServerWith is startServer with the connection's dial options.
func startServerWith(t testing.TB, dial []grpc.DialOption, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- spaserver.Run(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), func(string) string { return "" }, log, func(a net.Addr) { addrs <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		cancel()
		t.Fatalf("server exited: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server did not start in 30s")
	}
	conn, err := grpc.NewClient(addr.String(), dial...)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: addr.String(), conn: conn, client: spav1.NewReferralServiceClient(conn)}
	var once sync.Once
	var stopErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
			conn.Close()
		})
		return stopErr
	}
	t.Cleanup(func() { s.stop() })
	waitServing(t, conn)
	return s
}

// waitServing polls the health service until SERVING or 30s pass.
func waitServing(t testing.TB, conn *grpc.ClientConn) {
	t.Helper()
	hc := healthpb.NewHealthClient(conn)
	await.True(t, 30*time.Second, "health SERVING", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: spav1.ReferralService_ServiceDesc.ServiceName})
		return err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
}

// callCtx is a context for a test's calls: its deadline only keeps a stuck
// test from hanging, so it is generous for a loaded machine.
func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	ctx := callCtx(t)

	// Submit, then read back with the consistency token.
	req := &spav1.SubmitReferralRequest{RequestId: "0b4f5c4e-e2e-submit", Referral: referraltest.Details(1)}
	sub, err := s.client.SubmitReferral(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if sub.GetSequence() == 0 || sub.GetReplayed() {
		t.Fatalf("submit = %v", sub)
	}
	got, err := s.client.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: sub.GetReferralId(), MinSequence: sub.GetSequence()})
	if err != nil {
		t.Fatal(err)
	}
	// The router may already have moved it on (a pathway, the no-capacity
	// queue); the submission is its first event.
	if got.GetReferral().GetVersion() < sub.GetSequence() || got.GetHistory()[0].GetSequence() != sub.GetSequence() ||
		got.GetHistory()[0].GetEnvelope().GetReferralSubmitted().GetRequestId() != req.GetRequestId() {
		t.Fatalf("read back %v", got)
	}

	// A retry returns the same referral and appends nothing.
	again, err := s.client.SubmitReferral(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetReferralId() != sub.GetReferralId() || again.GetSequence() != sub.GetSequence() || !again.GetReplayed() {
		t.Fatalf("retry = %v, first %v", again, sub)
	}
	// The same request id with other details is refused.
	other := &spav1.SubmitReferralRequest{RequestId: req.GetRequestId(), Referral: referraltest.Details(2)}
	if _, err := s.client.SubmitReferral(ctx, other); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("reused request id: %v, want AlreadyExists", err)
	}

	// Criteria met again resets the Discharge Ready Date.
	crit, err := s.client.RecordCriteriaToReside(ctx, &spav1.RecordCriteriaToResideRequest{
		ReferralId: sub.GetReferralId(), CriteriaMet: []spav1.CriterionToReside{spav1.CriterionToReside_CRITERION_TO_RESIDE_OXYGEN},
		AssessedOn: time.Now().Format(spa.DateLayout)})
	if err != nil {
		t.Fatal(err)
	}
	if crit.GetStatus() != spav1.ReferralStatus_REFERRAL_STATUS_NOT_READY || crit.GetDischargeReadyDate() != "" {
		t.Fatalf("criteria = %v", crit)
	}

	// Concurrent changes to one referral: each is retried on the new state or
	// answered with Aborted; none is applied on stale state.
	const racers = 12
	var wg sync.WaitGroup
	seqs := make(chan uint64, racers)
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.client.RecordInfectionTest(ctx, &spav1.RecordInfectionTestRequest{ReferralId: sub.GetReferralId(), Test: &spav1.InfectionTest{
				Type: spav1.InfectionTestType_INFECTION_TEST_TYPE_PCR, TakenAt: timestamppb.Now(), Result: spav1.InfectionTestResult_INFECTION_TEST_RESULT_NEGATIVE}})
			switch status.Code(err) {
			case codes.OK:
				seqs <- res.GetSequence()
			case codes.Aborted:
			default:
				t.Errorf("racer: %v", err)
			}
		}()
	}
	wg.Wait()
	close(seqs)
	var accepted []uint64
	for seq := range seqs {
		accepted = append(accepted, seq)
	}
	slices.Sort(accepted)
	if len(accepted) == 0 {
		t.Fatal("no racer succeeded")
	}
	hist, err := s.client.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: sub.GetReferralId(), MinSequence: accepted[len(accepted)-1]})
	if err != nil {
		t.Fatal(err)
	}
	var tests []uint64
	for _, e := range hist.GetHistory() {
		if e.GetEnvelope().GetInfectionTestRecorded() != nil {
			tests = append(tests, e.GetSequence())
		}
	}
	if diff := cmp.Diff(accepted, tests); diff != "" {
		t.Fatalf("history holds exactly the accepted changes (-accepted +history):\n%s", diff)
	}

	// Withdraw, then a second withdrawal fails on the state.
	if _, err := s.client.WithdrawReferral(ctx, &spav1.WithdrawReferralRequest{ReferralId: sub.GetReferralId(), Reason: spav1.WithdrawalReason_WITHDRAWAL_REASON_DETERIORATED}); err != nil {
		t.Fatal(err)
	}
	_, err = s.client.WithdrawReferral(ctx, &spav1.WithdrawReferralRequest{ReferralId: sub.GetReferralId(), Reason: spav1.WithdrawalReason_WITHDRAWAL_REASON_DIED})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second withdrawal: %v", err)
	}
	if _, err := s.client.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: spa.ReferralIDFor("never-submitted")}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown referral: %v", err)
	}

	// Board: filter and read-your-writes.
	board, err := s.client.ListReferrals(ctx, &spav1.ListReferralsRequest{Status: spav1.ReferralStatus_REFERRAL_STATUS_WITHDRAWN, SiteOds: "RH802", MinSequence: hist.GetReferral().GetVersion() + 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(board.GetReferrals()) != 1 || board.GetReferrals()[0].GetReferralId() != sub.GetReferralId() {
		t.Fatalf("board = %v", board)
	}

	// A consistency token beyond the log's end is refused at once, not
	// after the deadline.
	start := time.Now()
	_, err = s.client.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: sub.GetReferralId(), MinSequence: 1 << 40})
	if status.Code(err) != codes.OutOfRange {
		t.Fatalf("token from the future: %v, want OutOfRange", err)
	}
	t.Logf("a token beyond the log was refused in %s", time.Since(start).Round(time.Millisecond))
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	ctx := callCtx(t)
	ok, err := s.client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "valid-first-request", Referral: referraltest.Details(3)})
	if err != nil {
		t.Fatal(err)
	}

	bad := referraltest.Details(4)
	bad.Patient.NhsNumber = "9434765918"
	bad.Patient.BirthDate = time.Now().AddDate(1, 0, 0).Format(spa.DateLayout)
	bad.Episode.Ward = ""
	tests := []struct {
		name   string
		call   func() error
		fields []string
	}{
		{"submit: NHS number, future birth date, missing ward", func() error {
			_, err := s.client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "invalid-request-1", Referral: bad})
			return err
		}, []string{"referral.patient.nhs_number", "referral.patient.birth_date", "referral.episode.ward"}},
		{"submit: nothing", func() error {
			_, err := s.client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{})
			return err
		}, []string{"request_id", "referral.patient.nhs_number", "referral.patient.given_name", "referral.patient.family_name",
			"referral.patient.birth_date", "referral.patient.postcode", "referral.patient.borough", "referral.episode.site_ods",
			"referral.episode.ward", "referral.episode.admission_date", "referral.admitted_from", "referral.needs.mobility",
			"referral.hospital_lead.name", "referral.hospital_lead.phone"}},
		{"criteria: unknown code, bad date", func() error {
			_, err := s.client.RecordCriteriaToReside(ctx, &spav1.RecordCriteriaToResideRequest{ReferralId: ok.GetReferralId(),
				CriteriaMet: []spav1.CriterionToReside{99}, AssessedOn: "22/11/2026"})
			return err
		}, []string{"criteria_met[0]", "assessed_on"}},
		{"test: empty", func() error {
			_, err := s.client.RecordInfectionTest(ctx, &spav1.RecordInfectionTestRequest{ReferralId: ok.GetReferralId()})
			return err
		}, []string{"test.type", "test.result", "test.taken_at"}},
		{"withdraw: bad id, no reason", func() error {
			_, err := s.client.WithdrawReferral(ctx, &spav1.WithdrawReferralRequest{ReferralId: "ref-nope"})
			return err
		}, []string{"referral_id", "reason"}},
		{"withdraw: a wildcard for an id", func() error {
			_, err := s.client.WithdrawReferral(ctx, &spav1.WithdrawReferralRequest{ReferralId: "*", Reason: spav1.WithdrawalReason_WITHDRAWAL_REASON_DIED})
			return err
		}, []string{"referral_id"}},
		{"get: bad id", func() error {
			_, err := s.client.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: "spa.referral.>"})
			return err
		}, []string{"referral_id"}},
		{"metadata: bad actor", func() error {
			mctx := metadata.AppendToOutgoingContext(ctx, "spa-actor-ods", "not an ods", "spa-actor-user", strings.Repeat("u", 65))
			_, err := s.client.WithdrawReferral(mctx, &spav1.WithdrawReferralRequest{ReferralId: ok.GetReferralId(), Reason: spav1.WithdrawalReason_WITHDRAWAL_REASON_DIED})
			return err
		}, []string{"metadata.spa-actor-ods", "metadata.spa-actor-role", "metadata.spa-actor-user"}},
		{"metadata: a request id that is none", func() error {
			mctx := metadata.AppendToOutgoingContext(ctx, "x-request-id", "not a request id!")
			_, err := s.client.ListReferrals(mctx, &spav1.ListReferralsRequest{})
			return err
		}, []string{"metadata.x-request-id"}},
		{"hold: no reason", func() error {
			_, err := s.client.HoldReferral(ctx, &spav1.HoldReferralRequest{ReferralId: ok.GetReferralId()})
			return err
		}, []string{"reason"}},
		{"hold: no reason, a request id too short", func() error {
			_, err := s.client.HoldReferral(ctx, &spav1.HoldReferralRequest{ReferralId: ok.GetReferralId(), RequestId: "short"})
			return err
		}, []string{"reason", "request_id"}},
		{"capacity: a request id with a space", func() error {
			_, err := spav1.NewProviderServiceClient(s.conn).UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{RequestId: "not an id at all"})
			return err
		}, []string{"provider_ods", "capacity", "request_id"}},
		{"decline: no reason, bad id", func() error {
			_, err := spav1.NewAssignmentServiceClient(s.conn).DeclineOffer(ctx, &spav1.DeclineOfferRequest{AssignmentId: "a1"})
			return err
		}, []string{"assignment_id", "reason"}},
		{"capacity: nothing", func() error {
			_, err := spav1.NewProviderServiceClient(s.conn).UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{})
			return err
		}, []string{"provider_ods", "capacity"}},
		{"replay: bad filters", func() error {
			stream, err := spav1.NewAuditServiceClient(s.conn).ReplayEvents(ctx, &spav1.ReplayEventsRequest{
				ReferralId: "ref-x", EventTypes: []string{"Nonsense"}, FromSequence: 9, ToSequence: 3})
			if err == nil {
				_, err = stream.Recv()
			}
			return err
		}, []string{"referral_id", "event_types[0]", "to_sequence"}},
		{"watch: bad provider", func() error {
			stream, err := spav1.NewAssignmentServiceClient(s.conn).WatchAssignments(ctx, &spav1.WatchAssignmentsRequest{ProviderOds: "not ods"})
			if err == nil {
				_, err = stream.Recv()
			}
			return err
		}, []string{"provider_ods"}},
		{"board: bad filters", func() error {
			_, err := s.client.ListReferrals(ctx, &spav1.ListReferralsRequest{Status: 42, SiteOds: "rh 802", PageSize: -1, PageToken: "x"})
			return err
		}, []string{"status", "site_ods", "page_size", "page_token"}},
	}
	for _, tt := range tests {
		err := tt.call()
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", tt.name, err)
			continue
		}
		var fields []string
		for _, d := range st.Details() {
			if br, isBR := d.(*errdetails.BadRequest); isBR {
				for _, v := range br.GetFieldViolations() {
					fields = append(fields, v.GetField())
				}
			}
		}
		if diff := cmp.Diff(tt.fields, fields); diff != "" {
			t.Errorf("%s: field violations (-want +got):\n%s", tt.name, diff)
		}
	}

	// Nothing accepted was lost or changed by the bad requests.
	got, err := s.client.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: ok.GetReferralId(), MinSequence: ok.GetSequence()})
	if err != nil {
		t.Fatal(err)
	}
	// Only the router (deciding a pathway) has added to it.
	for _, e := range got.GetHistory()[1:] {
		if e.GetEnvelope().GetActor().GetRole() != "spa-router" {
			t.Fatalf("accepted referral changed by a bad request: %v", e)
		}
	}
	if got.GetHistory()[0].GetSequence() != ok.GetSequence() {
		t.Fatalf("accepted referral changed: %v", got)
	}
	board, err := s.client.ListReferrals(ctx, &spav1.ListReferralsRequest{})
	if err != nil || len(board.GetReferrals()) != 1 {
		t.Fatalf("board after bad requests: %v, %v", board, err)
	}
}

func TestHealthReflectionAndShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, "--data-dir", dir, "--shutdown-grace", "1h", "--watch-heartbeat", "20ms")
	ctx := callCtx(t)

	stream, err := rpb.NewServerReflectionClient(s.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range res.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	if !slices.Contains(names, "spa.v1.ReferralService") || !slices.Contains(names, "grpc.health.v1.Health") {
		t.Fatalf("reflection lists %v", names)
	}
	stream.CloseSend()

	sub, err := s.client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "shutdown-test-1", Referral: referraltest.Details(5)})
	if err != nil {
		t.Fatal(err)
	}
	// A provider's watch stream is open: shutdown ends it with UNAVAILABLE
	// rather than wait for it (the grace period is an hour).
	watchCtx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	watcher, err := spav1.NewAssignmentServiceClient(s.conn).WatchAssignments(watchCtx, &spav1.WatchAssignmentsRequest{ProviderOds: "NQR01"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.Recv(); err != nil { // a heartbeat: the stream is up
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := watcher.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	if err := s.stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	if err := <-ended; status.Code(err) != codes.Unavailable {
		t.Fatalf("watch stream ended with %v, want Unavailable", err)
	}
	// Everything was closed cleanly: a new server on the same data directory
	// opens the same files and still has the referral.
	s2 := startServer(t, "--data-dir", dir)
	if _, err := s2.client.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: sub.GetReferralId(), MinSequence: sub.GetSequence()}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SPA_LISTEN": "127.0.0.1:6000", "SPA_WORKER": "false", "SPA_NATS_URL": "nats://127.0.0.1:4222", "SPA_SIGNING_KEY": "k"}
	c, err := spaserver.ParseConfig([]string{"--data-dir", "x"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.Listen != "127.0.0.1:6000" || c.Worker || c.DataDir != "x" {
		t.Fatalf("env fallbacks: %+v, %v", c, err)
	}
	c, err = spaserver.ParseConfig([]string{"--listen", "127.0.0.1:7000"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.Listen != "127.0.0.1:7000" {
		t.Fatalf("flag over env: %+v, %v", c, err)
	}
	for _, args := range [][]string{
		{"--listen", "nonsense"},
		{"--min-replicas", "0"},
		{"--min-replicas", "3"},
		{"--worker-id", "has.a.dot"},
		{"--nats-url", "nats://127.0.0.1:4222", "--no-sync"},
		{"--nats-url", "nats://127.0.0.1:4222"},
		{"--checkpoint-every", "-1s"},
		{"--data-dir", ""},
		{"--worker=false"},
		{"--operating-hours", "20:00-08:00"},
		{"--operating-hours", "8am-8pm"},
		{"--infection-overlay", "maybe"},
		{"--infection-overlay-from", "2026-12-01"},
		{"--infection-overlay", "on", "--infection-overlay-from", "01/12/2026"},
		{"stray"},
		{"--listen", "0.0.0.0:50051"},     // plaintext beyond loopback
		{"--listen", "192.0.2.10:50051"},  // so too
		{"--tls-cert", "server.crt"},      // TLS needs the key and client CA too
		{"--nats-listen", "0.0.0.0:4222"}, // the embedded NATS has no TLS
	} {
		if _, err := spaserver.ParseConfig(args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("spaserver.ParseConfig(%v) accepted", args)
		}
	}
	for _, listen := range []string{"127.0.0.1:50051", "[::1]:50051", "localhost:50051"} {
		if c, err := spaserver.ParseConfig([]string{"--listen", listen}, func(string) string { return "" }, io.Discard); err != nil || !c.Dev() {
			t.Errorf("development mode on %s: %v", listen, err)
		}
	}
	if c, err := spaserver.ParseConfig([]string{"--listen", "0.0.0.0:50051", "--tls-cert", "a", "--tls-key", "b", "--tls-client-ca", "c"}, func(string) string { return "" }, io.Discard); err != nil || c.Dev() {
		t.Errorf("TLS on every interface: %v", err)
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// rawCodec sends a request's bytes as they are, to send what no protobuf
// library would.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	return v.([]byte), nil
}
func (rawCodec) Unmarshal(data []byte, v any) error {
	return proto.Unmarshal(data, v.(proto.Message))
}

// TestMalformedRequestBytes: bytes that are not a valid request (a string
// with invalid UTF-8, a truncated field) are answered INVALID_ARGUMENT
// naming the request, on unary and streaming methods alike.
func TestMalformedRequestBytes(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	ctx := callCtx(t)
	badUTF8 := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff\xfe")
	truncated := protowire.AppendTag(nil, 1, protowire.BytesType)
	for name, data := range map[string][]byte{"invalid UTF-8": badUTF8, "truncated": truncated} {
		check := func(method string, err error) {
			t.Helper()
			st := status.Convert(err)
			var fields []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						fields = append(fields, v.GetField())
					}
				}
			}
			if st.Code() != codes.InvalidArgument || !slices.Equal(fields, []string{"(request)"}) {
				t.Errorf("%s to %s: %v %v, want InvalidArgument naming the request", name, method, err, fields)
			}
		}
		out := new(spav1.GetReferralResponse)
		check("GetReferral", s.conn.Invoke(ctx, "/spa.v1.ReferralService/GetReferral", data, out, grpc.ForceCodec(rawCodec{})))
		stream, err := s.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/spa.v1.AuditService/ReplayEvents", grpc.ForceCodec(rawCodec{}))
		if err == nil {
			if err = stream.SendMsg(data); err == nil {
				_ = stream.CloseSend()
				err = stream.RecvMsg(new(spav1.ReplayEventsResponse))
			}
		}
		check("ReplayEvents", err)
	}
}
