package rpc_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/app"
	"spa/internal/authz"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/identity"
	"spa/internal/rpc"
	"spa/internal/spa"
)

// now is the API's clock: 10:00 UK time on 22 November 2026.
var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// The fixture: a provider with capacity, and a referral offered to it.
var (
	fixtureRequestID  = "fixture-request-0001"
	fixtureReferral   = spa.ReferralIDFor(fixtureRequestID)
	fixtureAssignment = spa.AssignmentIDFor(fixtureReferral, 1)
	fixtureProvider   = "VLAXL"
)

// validRequests are one valid request of each command and query, by
// method name, on the fixture.
func validRequests() map[protoreflect.FullName]proto.Message {
	hourAgo := timestamppb.New(now.Add(-time.Hour))
	return map[protoreflect.FullName]proto.Message{
		"spa.v1.ReferralService.SubmitReferral": &spav1.SubmitReferralRequest{RequestId: fixtureRequestID, OccurredAt: timestamppb.New(now.Add(-2 * time.Hour)),
			Referral: &spav1.ReferralDetails{
				Patient: &spav1.Patient{NhsNumber: "9434765919", GivenName: "Margaret", FamilyName: "Thompson", BirthDate: "1942-03-14",
					Postcode: "BR1 3JH", Borough: "Bromley"},
				Episode:       &spav1.Episode{SiteOds: "RH802", Ward: "Darwin Ward", AdmissionDate: "2026-11-16"},
				AdmittedFrom:  spav1.AdmittedFrom_ADMITTED_FROM_CARE_HOME,
				Needs:         &spav1.Needs{Mobility: spav1.Mobility_MOBILITY_HOIST, CarersPerTransfer: 2, Equipment: []string{"hoist"}},
				InfectionTest: &spav1.InfectionTest{Type: spav1.InfectionTestType_INFECTION_TEST_TYPE_PCR, TakenAt: timestamppb.New(now.Add(-3 * time.Hour)), Result: spav1.InfectionTestResult_INFECTION_TEST_RESULT_NEGATIVE},
				HospitalLead:  &spav1.Contact{Name: "Ada Obi", Phone: "020 8000 1234"},
			}},
		"spa.v1.ReferralService.RecordCriteriaToReside": &spav1.RecordCriteriaToResideRequest{ReferralId: fixtureReferral,
			CriteriaMet: []spav1.CriterionToReside{spav1.CriterionToReside_CRITERION_TO_RESIDE_OXYGEN}, AssessedOn: "2026-11-22", OccurredAt: hourAgo},
		"spa.v1.ReferralService.RecordInfectionTest": &spav1.RecordInfectionTestRequest{ReferralId: fixtureReferral, OccurredAt: hourAgo,
			Test: &spav1.InfectionTest{Type: spav1.InfectionTestType_INFECTION_TEST_TYPE_LATERAL_FLOW, TakenAt: hourAgo, Result: spav1.InfectionTestResult_INFECTION_TEST_RESULT_POSITIVE}},
		"spa.v1.ReferralService.AmendReferral": &spav1.AmendReferralRequest{ReferralId: fixtureReferral, Reason: "OT reassessment: two carers",
			Changes:    &spav1.ReferralChanges{Needs: &spav1.Needs{Mobility: spav1.Mobility_MOBILITY_HOIST, CarersPerTransfer: 2, Equipment: []string{"hoist"}}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"needs"}}},
		"spa.v1.PolicyService.SwitchPolicy": &spav1.SwitchPolicyRequest{Rule: spav1.PolicyRule_POLICY_RULE_INFECTION_OVERLAY, On: true,
			EffectiveFrom: "2026-12-01", Reason: "guidance of 1 December"},
		"spa.v1.PolicyService.ListPolicies":        &spav1.ListPoliciesRequest{},
		"spa.v1.ReferralService.WithdrawReferral":  &spav1.WithdrawReferralRequest{ReferralId: fixtureReferral, Reason: spav1.WithdrawalReason_WITHDRAWAL_REASON_DIED, Note: "peacefully"},
		"spa.v1.ReferralService.HoldReferral":      &spav1.HoldReferralRequest{ReferralId: fixtureReferral, Reason: spav1.HoldReason_HOLD_REASON_HOUSING},
		"spa.v1.ReferralService.ReleaseHold":       &spav1.ReleaseHoldRequest{ReferralId: fixtureReferral, Note: "flat found"},
		"spa.v1.ReferralService.RecordPatientLeft": &spav1.RecordPatientLeftRequest{ReferralId: fixtureReferral, LeftAt: hourAgo},
		"spa.v1.ReferralService.GetReferral":       &spav1.GetReferralRequest{ReferralId: fixtureReferral, MinSequence: 1},
		"spa.v1.ReferralService.ListReferrals": &spav1.ListReferralsRequest{Status: spav1.ReferralStatus_REFERRAL_STATUS_OFFERED, SiteOds: "RH802",
			PageSize: 20},
		"spa.v1.ProviderService.RegisterProvider": &spav1.RegisterProviderRequest{Provider: &spav1.ProviderDetails{Ods: fixtureProvider, Name: "Elmwood Care Home",
			Boroughs: []string{"Bromley", "Bexley"}, Services: []spav1.Service{spav1.Service_SERVICE_CARE_HOME_BED, spav1.Service_SERVICE_DESIGNATED_STEP_DOWN_BED}}},
		"spa.v1.ProviderService.UpdateCapacity": &spav1.UpdateCapacityRequest{ProviderOds: fixtureProvider, Capacity: []*spav1.Capacity{
			{Service: spav1.Service_SERVICE_CARE_HOME_BED, AvailableUnits: 2, Open: true, AsOf: hourAgo}}},
		"spa.v1.ProviderService.ListProviders":            &spav1.ListProvidersRequest{Borough: "Bromley", Service: spav1.Service_SERVICE_CARE_HOME_BED, PageSize: 20},
		"spa.v1.AssignmentService.AcceptOffer":            &spav1.AcceptOfferRequest{AssignmentId: fixtureAssignment},
		"spa.v1.AssignmentService.DeclineOffer":           &spav1.DeclineOfferRequest{AssignmentId: fixtureAssignment, Reason: "no bed until Friday"},
		"spa.v1.AssignmentService.StartCare":              &spav1.StartCareRequest{AssignmentId: fixtureAssignment},
		"spa.v1.AssignmentService.CompleteAssignment":     &spav1.CompleteAssignmentRequest{AssignmentId: fixtureAssignment},
		"spa.v1.AssignmentService.UpdateAssignmentStatus": &spav1.UpdateAssignmentStatusRequest{AssignmentId: fixtureAssignment, Status: spav1.TaskStatus_TASK_STATUS_RECEIVED},
		"spa.v1.AssignmentService.ListAssignments":        &spav1.ListAssignmentsRequest{ProviderOds: fixtureProvider, Status: spav1.TaskStatus_TASK_STATUS_REQUESTED, PageSize: 20},
		"spa.v1.AssignmentService.WatchAssignments":       &spav1.WatchAssignmentsRequest{ProviderOds: fixtureProvider, AfterSequence: 2},
		"spa.v1.AuditService.ListAccess":                  &spav1.ListAccessRequest{ReferralId: fixtureReferral, PageSize: 20},
		"spa.v1.AuditService.ReplayEvents": &spav1.ReplayEventsRequest{ReferralId: fixtureReferral, EventTypes: []string{"ReferralSubmitted", "OfferMade"},
			FromTime: timestamppb.New(now.Add(-24 * time.Hour)), ToTime: timestamppb.New(now), FromSequence: 1, ToSequence: 9, IncludeData: true},
	}
}

// methods returns every method of every spa.v1 service, by full name.
func methods(tb testing.TB) []protoreflect.MethodDescriptor {
	tb.Helper()
	var out []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("spa.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			s := fd.Services().Get(i)
			for j := range s.Methods().Len() {
				out = append(out, s.Methods().Get(j))
			}
		}
		return true
	})
	if len(out) == 0 {
		tb.Fatal("no spa.v1 services are registered")
	}
	slices.SortFunc(out, func(a, b protoreflect.MethodDescriptor) int {
		return strings.Compare(string(a.FullName()), string(b.FullName()))
	})
	return out
}

// newRequest returns an empty request of method m.
func newRequest(tb testing.TB, m protoreflect.MethodDescriptor) proto.Message {
	tb.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
	if err != nil {
		tb.Fatalf("%s: %v", m.FullName(), err)
	}
	return mt.New().Interface()
}

// api is every service of the API, as the server registers them, on an
// App over in-memory fakes that hold the fixture. Requests go through the
// generated gRPC handlers, as the server runs them.
type api struct {
	services map[string]service
	log      *slog.Logger
}

type service struct {
	desc *grpc.ServiceDesc
	impl any
}

func newAPI(tb testing.TB) *api {
	tb.Helper()
	store := &fixtureStore{recs: map[string][]spa.Record{}, keep: true}
	a := app.New(store, emptyModel{}, app.WithClock(func() time.Time { return now }), app.WithAudit(emptyLog{}, emptyLog{}))
	x := &api{log: slog.New(slog.DiscardHandler), services: map[string]service{}}
	for _, s := range []service{
		{&spav1.ReferralService_ServiceDesc, rpc.NewReferrals(a)},
		{&spav1.ProviderService_ServiceDesc, rpc.NewProviders(a)},
		{&spav1.AssignmentService_ServiceDesc, rpc.NewAssignments(a, time.Second, nil)},
		{&spav1.AuditService_ServiceDesc, rpc.NewAudit(a)},
		{&spav1.PolicyService_ServiceDesc, rpc.NewPolicies(a, spa.DefaultPolicies)},
	} {
		x.services[s.desc.ServiceName] = s
	}

	// Build the fixture through the API, then offer the referral.
	valid := validRequests()
	for _, name := range []protoreflect.FullName{"spa.v1.ProviderService.RegisterProvider", "spa.v1.ProviderService.UpdateCapacity", "spa.v1.ReferralService.SubmitReferral"} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			tb.Fatal(err)
		}
		if err := x.call(tb, context.Background(), d.(protoreflect.MethodDescriptor), valid[name]); err != nil {
			tb.Fatalf("fixture: %s: %v", name, err)
		}
	}
	offer := spa.Record{EventID: "offer", AggregateID: fixtureReferral, OccurredAt: now.Add(-time.Hour), RecordedAt: now.Add(-time.Hour),
		Event: spa.OfferMade{AssignmentID: fixtureAssignment, ProviderODS: fixtureProvider, Service: spa.ServiceCareHomeBed}}
	reserved := offer
	reserved.AggregateID, reserved.Event = fixtureProvider, spa.CapacityReserved{Service: spa.ServiceCareHomeBed, ReferralID: fixtureReferral, AssignmentID: fixtureAssignment}
	if _, err := store.AppendBatch(context.Background(), []spa.Append{{Record: offer}, {Record: reserved}}); err != nil {
		tb.Fatal(err)
	}
	store.freeze()
	return x
}

// call runs req through method m's generated handler and returns the
// handler's error as returned, before the error interceptor maps it.
//
// The call is made as the method's party on the fixture (partyOf), with a
// purpose, unless ctx says otherwise.
func (x *api) call(tb testing.TB, ctx context.Context, m protoreflect.MethodDescriptor, req proto.Message) error {
	tb.Helper()
	if _, ok := rpc.Identity(ctx); !ok {
		ctx = rpc.WithIdentity(ctx, partyOf(m))
	}
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(rpc.MetadataPurpose)) == 0 {
		md = metadata.Join(md, metadata.Pairs(rpc.MetadataPurpose, "direct-care"))
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	return x.handle(tb, ctx, m, req)
}

// handle runs req through method m's generated handler as ctx says.
func (x *api) handle(tb testing.TB, ctx context.Context, m protoreflect.MethodDescriptor, req proto.Message) error {
	tb.Helper()
	s, ok := x.services[string(m.Parent().FullName())]
	if !ok {
		tb.Fatalf("%s: the service is not served here; add it to newAPI", m.FullName())
	}
	for _, h := range s.desc.Methods {
		if h.MethodName == string(m.Name()) {
			_, err := h.Handler(s.impl, ctx, func(in any) error { proto.Merge(in.(proto.Message), req); return nil }, nil)
			return err
		}
	}
	for _, h := range s.desc.Streams {
		if h.StreamName == string(m.Name()) {
			return h.Handler(s.impl, &requestStream{ctx: ctx, req: req})
		}
	}
	tb.Fatalf("%s: no handler", m.FullName())
	return nil
}

// partyOf is who calls m on the fixture: the first role the method allows,
// of the fixture's site or provider.
func partyOf(m protoreflect.MethodDescriptor) identity.Identity {
	full := "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
	for _, r := range authz.Roles {
		if authz.Method(r, full) == nil {
			ods, ok := map[authz.Role]string{authz.DischargeTeam: "RH802", authz.Provider: fixtureProvider}[r]
			if !ok {
				ods = "SPA"
			}
			return identity.Identity{ODS: ods, Role: r}
		}
	}
	return identity.Identity{ODS: "SPA", Role: authz.Coordinator}
}

// kindCodes are the errors a request may be answered with, and their
// status codes: invalid input, or the fixture's state.
var kindCodes = map[spa.Kind]codes.Code{
	spa.KindInvalid:            codes.InvalidArgument,
	spa.KindNotFound:           codes.NotFound,
	spa.KindFailedPrecondition: codes.FailedPrecondition,
	spa.KindAlreadyExists:      codes.AlreadyExists,
}

// check asserts the API's contract on the error a handler returned for a
// request of method m: none, or a domain error (never an internal one)
// that maps to its status code; invalid input comes with a
// google.rpc.BadRequest naming fields of the request. It returns the
// fields named.
func (x *api) check(tb testing.TB, m protoreflect.MethodDescriptor, err error) []string {
	tb.Helper()
	if err == nil {
		return nil
	}
	kind := spa.KindOf(err)
	want, ok := kindCodes[kind]
	if !ok {
		tb.Fatalf("%s: error of kind %d: %v", m.Name(), kind, err)
	}
	st := status.Convert(rpc.Status(x.log, "/"+string(m.Parent().FullName())+"/"+string(m.Name()), err))
	if st.Code() != want {
		tb.Fatalf("%s: %v is answered with %s, want %s", m.Name(), err, st.Code(), want)
	}
	if want != codes.InvalidArgument {
		return nil
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if !fieldOf(m.Input(), v.GetField()) || v.GetDescription() == "" {
					tb.Errorf("%s: violation %q (%s) does not name a field of %s", m.Name(), v.GetField(), v.GetDescription(), m.Input().Name())
				}
				fields = append(fields, v.GetField())
			}
		}
	}
	if len(fields) == 0 {
		tb.Fatalf("%s: InvalidArgument without field violations: %v", m.Name(), err)
	}
	return fields
}

// fieldOf reports whether path ("capacity[0].as_of", "referral.needs")
// names a field of md, or request metadata ("metadata.spa-actor-ods").
func fieldOf(md protoreflect.MessageDescriptor, path string) bool {
	if strings.HasPrefix(path, "metadata.") {
		return true
	}
	parts := strings.Split(path, ".")
	for i, part := range parts {
		if md == nil {
			return false
		}
		name, index, indexed := strings.Cut(part, "[")
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return false
		}
		if indexed {
			n, ok := strings.CutSuffix(index, "]")
			if _, err := strconv.ParseUint(n, 10, 31); !ok || err != nil || !fd.IsList() {
				return false
			}
		} else if fd.IsList() && i < len(parts)-1 {
			return false
		}
		md = fd.Message()
	}
	return true
}

// requestStream is the server side of a server-streaming call that has
// received req.
type requestStream struct {
	ctx context.Context
	req proto.Message
}

func (s *requestStream) SetHeader(metadata.MD) error  { return nil }
func (s *requestStream) SendHeader(metadata.MD) error { return nil }
func (s *requestStream) SetTrailer(metadata.MD)       {}
func (s *requestStream) Context() context.Context     { return s.ctx }
func (s *requestStream) SendMsg(any) error            { return nil }
func (s *requestStream) RecvMsg(m any) error {
	proto.Merge(m.(proto.Message), s.req)
	return nil
}

// fixtureStore is an event log holding the fixture. Once frozen it checks
// and answers appends without keeping them, so that every request meets
// the same state. Every record appended must encode, and decode to itself,
// as the log's readers need; an append that does not is an internal error.
type fixtureStore struct {
	mu   sync.Mutex
	recs map[string][]spa.Record
	seq  uint64
	keep bool
}

func (s *fixtureStore) freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keep = false
}

func (s *fixtureStore) Load(_ context.Context, agg spa.Aggregate, id string) ([]spa.Record, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := slices.Clone(s.recs[string(agg)+"."+id])
	if len(recs) == 0 {
		return nil, 0, nil
	}
	return recs, recs[len(recs)-1].Sequence, nil
}

func (s *fixtureStore) AppendBatch(_ context.Context, batch []spa.Append) ([]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seqs := make([]uint64, len(batch))
	for i, b := range batch {
		data, err := codec.MarshalRecord(b.Record)
		if err != nil {
			return nil, fmt.Errorf("fixture store: %w", err)
		}
		got, err := codec.UnmarshalRecord(b.Record.Sequence, data)
		if err != nil {
			return nil, fmt.Errorf("fixture store: %w", err)
		}
		if diff := cmp.Diff(b.Record, got); diff != "" {
			return nil, fmt.Errorf("fixture store: the record does not decode to itself (-appended +decoded):\n%s", diff)
		}
		seqs[i] = s.seq + uint64(i) + 1
		if s.keep {
			rec := b.Record
			rec.Sequence = seqs[i]
			key := string(spa.AggregateOf(rec.Event)) + "." + rec.AggregateID
			s.recs[key] = append(s.recs[key], rec)
		}
	}
	if s.keep {
		s.seq += uint64(len(batch))
	}
	return seqs, nil
}

// emptyModel is a read model with nothing in it.
type emptyModel struct{}

func (emptyModel) GetReferral(_ context.Context, req *spav1.GetReferralRequest) (*spav1.GetReferralResponse, error) {
	return nil, spa.Errorf(spa.KindNotFound, "referral %s not found", req.GetReferralId())
}

func (emptyModel) ListReferrals(context.Context, *spav1.ListReferralsRequest) (*spav1.ListReferralsResponse, error) {
	return &spav1.ListReferralsResponse{}, nil
}

func (emptyModel) ListProviders(context.Context, *spav1.ListProvidersRequest) (*spav1.ListProvidersResponse, error) {
	return &spav1.ListProvidersResponse{}, nil
}

func (emptyModel) ListAssignments(context.Context, *spav1.ListAssignmentsRequest) (*spav1.ListAssignmentsResponse, error) {
	return &spav1.ListAssignmentsResponse{}, nil
}

func (emptyModel) ListAccess(context.Context, *spav1.ListAccessRequest, uint64) (*spav1.ListAccessResponse, error) {
	return &spav1.ListAccessResponse{}, nil
}

// emptyLog is an event log and an access log with nothing in them.
type emptyLog struct{}

func (emptyLog) Replay(context.Context, spa.EventFilter, func(spa.StoredEvent) error) error {
	return nil
}

func (emptyLog) Watch(context.Context, string, uint64, time.Duration, func(spa.StoredEvent) error) error {
	return nil
}

func (emptyLog) Record(context.Context, spa.Access, []spa.Accessed) error {
	return nil
}

func (emptyLog) Last(context.Context) (uint64, error) { return 0, nil }
