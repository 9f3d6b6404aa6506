package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/authz"
	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/identity"
	"spa/internal/pki"
	"spa/internal/referraltest"
)

// accessTable is who may call what, written out by hand: for each method,
// five cells in the order of authz.Roles (discharge team, provider,
// coordinator, auditor, admin), each two letters: may a caller of the
// organisation that owns the object (own), and of another one (other)?
// y: allowed, n: PERMISSION_DENIED. For the coordinator, auditor and admin
// "own" is the SPA and "other" another organisation: their reach does not
// depend on it.
var accessTable = map[string]string{
	"ReferralService.SubmitReferral":         "yn nn nn nn nn",
	"ReferralService.RecordCriteriaToReside": "yn nn nn nn nn",
	"ReferralService.AmendReferral":          "yn nn nn nn nn",
	"ReferralService.RecordInfectionTest":    "yn nn nn nn nn",
	"ReferralService.RecordPatientLeft":      "yn nn nn nn nn",
	"ReferralService.WithdrawReferral":       "yn nn yy nn nn",
	"ReferralService.HoldReferral":           "yn nn yy nn nn",
	"ReferralService.ReleaseHold":            "yn nn yy nn nn",
	"ReferralService.GetReferral":            "yn yn yy nn nn",
	"ReferralService.ListReferrals":          "yn nn yy nn nn",

	"ProviderService.RegisterProvider": "nn yn nn nn yy",
	"ProviderService.UpdateCapacity":   "nn yn nn nn yy",
	"ProviderService.ListProviders":    "nn yy yy nn yy",

	"AssignmentService.AcceptOffer":            "nn yn nn nn nn",
	"AssignmentService.DeclineOffer":           "nn yn nn nn nn",
	"AssignmentService.StartCare":              "nn yn nn nn nn",
	"AssignmentService.CompleteAssignment":     "nn yn nn nn nn",
	"AssignmentService.UpdateAssignmentStatus": "nn yn nn nn nn",
	"AssignmentService.ListAssignments":        "nn yn yy nn nn",
	"AssignmentService.WatchAssignments":       "nn yn yy nn nn",

	"AuditService.ReplayEvents": "nn nn nn yy nn",
	"AuditService.ListAccess":   "nn nn nn yy nn",

	"PolicyService.SwitchPolicy": "nn nn nn nn yy",
	"PolicyService.ListPolicies": "yy yy yy yy yy",
}

// The fixture's organisations: the referral's site and the provider it is
// offered to own it; the others own nothing of it.
const (
	ownSite, otherSite         = "RH802", "RJ224"
	ownProvider, otherProvider = "STP11", "STP12"
	spaOrg, otherOrg           = "SPA", "X26"
)

// tlsServer is a spa-server with TLS and a client certificate per
// identity.
type tlsServer struct {
	addr  string
	certs string
}

func startTLSServer(t *testing.T, ids []identity.Identity, args ...string) tlsServer {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	issue := func(name string, spec pki.Spec) {
		spec.ValidFor = time.Hour
		cert, key, err := ca.Issue(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WritePair(dir, name, cert, key); err != nil {
			t.Fatal(err)
		}
	}
	issue("server", pki.Spec{CommonName: "spa-server", Server: true, DNSNames: []string{"localhost"}})
	for _, id := range ids {
		issue(id.ODS+"-"+string(id.Role), pki.Spec{CommonName: id.String(), Client: true, URIs: []*url.URL{id.URI()}})
	}
	s := startServerWith(t, []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t, dir, ids[0])))}, append([]string{"--tls-cert", filepath.Join(dir, "server.crt"), "--tls-key", filepath.Join(dir, "server.key"),
		"--tls-client-ca", filepath.Join(dir, "ca.crt")}, args...)...)
	return tlsServer{addr: s.addr, certs: dir}
}

func clientTLS(t *testing.T, dir string, id identity.Identity) *tls.Config {
	t.Helper()
	name := id.ODS + "-" + string(id.Role)
	cfg, err := pki.ClientTLS(filepath.Join(dir, "ca.crt"), filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = "localhost"
	return cfg
}

// dial connects as id.
func (s tlsServer) dial(t *testing.T, id identity.Identity) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t, s.certs, id))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestAccessTable calls every method of the API (listed from the service
// descriptors, so a new method without a row fails) as every role, of
// the organisation that owns the object and of another, over TLS with
// client certificates, and checks each answer against accessTable.
func TestAccessTable(t *testing.T) {
	t.Parallel()
	owner := map[authz.Role]string{authz.DischargeTeam: ownSite, authz.Provider: ownProvider, authz.Coordinator: spaOrg, authz.Auditor: spaOrg, authz.Admin: spaOrg}
	other := map[authz.Role]string{authz.DischargeTeam: otherSite, authz.Provider: otherProvider, authz.Coordinator: otherOrg, authz.Auditor: otherOrg, authz.Admin: otherOrg}
	var ids []identity.Identity
	for _, r := range authz.Roles {
		ids = append(ids, identity.Identity{ODS: owner[r], Role: r, User: "own"}, identity.Identity{ODS: other[r], Role: r, User: "other"})
	}
	s := startTLSServer(t, ids, "--data-dir", t.TempDir(), "--watch-heartbeat", "100ms", "--scheduler=false")
	conns := map[identity.Identity]*grpc.ClientConn{}
	for _, id := range ids {
		conns[id] = s.dial(t, id)
	}
	as := func(r authz.Role, own bool) *grpc.ClientConn {
		if own {
			return conns[identity.Identity{ODS: owner[r], Role: r, User: "own"}]
		}
		return conns[identity.Identity{ODS: other[r], Role: r, User: "other"}]
	}

	// The fixture: both providers registered by themselves, a referral of
	// the own site offered to the own provider. Every read states its
	// purpose.
	ctx := metadata.AppendToOutgoingContext(callCtx(t), "spa-purpose", "direct-care")
	for _, own := range []bool{true, false} {
		addProvider(t, clients{providers: spav1.NewProviderServiceClient(as(authz.Provider, own))}, map[bool]string{true: ownProvider, false: otherProvider}[own],
			5, nil, spav1.Service_SERVICE_STEP_DOWN_BED)
	}
	d := referraltest.Details(31)
	d.Needs.ShortTermBedBasedCare = true
	team := spav1.NewReferralServiceClient(as(authz.DischargeTeam, true))
	sub, err := team.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "access-table-fixture", Referral: d})
	if err != nil {
		t.Fatal(err)
	}
	ref := sub.GetReferralId()
	var assignment string
	coordinator := spav1.NewReferralServiceClient(as(authz.Coordinator, true))
	await.True(t, 30*time.Second, "the referral offered to "+ownProvider, func() bool {
		r, err := coordinator.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: ref})
		if err != nil || len(r.GetReferral().GetAssignments()) == 0 {
			return false
		}
		a := r.GetReferral().GetAssignments()[0]
		assignment = a.GetAssignmentId()
		return a.GetProviderOds() == ownProvider
	})

	cell := 0
	requests := func(method string) proto.Message {
		cell++
		rid := fmt.Sprintf("access-table-%03d", cell)
		hourAgo := timestamppb.New(time.Now().Add(-time.Hour))
		switch method {
		case "ReferralService.SubmitReferral":
			return &spav1.SubmitReferralRequest{RequestId: rid, Referral: referraltest.Details(100 + cell)}
		case "ReferralService.RecordCriteriaToReside":
			return &spav1.RecordCriteriaToResideRequest{ReferralId: ref, RequestId: rid, AssessedOn: time.Now().Format("2006-01-02")}
		case "ReferralService.AmendReferral":
			return &spav1.AmendReferralRequest{ReferralId: ref, RequestId: rid, Reason: "reassessed",
				Changes:    &spav1.ReferralChanges{Needs: &spav1.Needs{Mobility: spav1.Mobility_MOBILITY_WALKING_AID, ShortTermBedBasedCare: true, CareCallsPerDay: int32(cell % 4)}},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"needs"}}}
		case "ReferralService.RecordInfectionTest":
			return &spav1.RecordInfectionTestRequest{ReferralId: ref, RequestId: rid, Test: &spav1.InfectionTest{Type: spav1.InfectionTestType_INFECTION_TEST_TYPE_PCR,
				TakenAt: hourAgo, Result: spav1.InfectionTestResult_INFECTION_TEST_RESULT_NEGATIVE}}
		case "ReferralService.RecordPatientLeft":
			return &spav1.RecordPatientLeftRequest{ReferralId: ref, RequestId: rid, LeftAt: hourAgo}
		case "ReferralService.WithdrawReferral":
			return &spav1.WithdrawReferralRequest{ReferralId: ref, RequestId: rid, Reason: spav1.WithdrawalReason_WITHDRAWAL_REASON_NO_LONGER_NEEDED}
		case "ReferralService.HoldReferral":
			return &spav1.HoldReferralRequest{ReferralId: ref, RequestId: rid, Reason: spav1.HoldReason_HOLD_REASON_HOUSING}
		case "ReferralService.ReleaseHold":
			return &spav1.ReleaseHoldRequest{ReferralId: ref, RequestId: rid, Note: "housed"}
		case "ReferralService.GetReferral":
			return &spav1.GetReferralRequest{ReferralId: ref}
		case "ReferralService.ListReferrals":
			return &spav1.ListReferralsRequest{SiteOds: ownSite}
		case "ProviderService.RegisterProvider":
			return &spav1.RegisterProviderRequest{RequestId: rid, Provider: &spav1.ProviderDetails{Ods: ownProvider, Name: "Provider " + ownProvider,
				Boroughs: []string{"Bromley"}, Services: []spav1.Service{spav1.Service_SERVICE_STEP_DOWN_BED}}}
		case "ProviderService.UpdateCapacity":
			return &spav1.UpdateCapacityRequest{ProviderOds: ownProvider, RequestId: rid, Capacity: []*spav1.Capacity{
				{Service: spav1.Service_SERVICE_STEP_DOWN_BED, AvailableUnits: int32(cell % 5), Open: true, AsOf: timestamppb.New(time.Now().Add(-time.Duration(300-cell) * time.Second))}}}
		case "ProviderService.ListProviders":
			return &spav1.ListProvidersRequest{}
		case "AssignmentService.AcceptOffer":
			return &spav1.AcceptOfferRequest{AssignmentId: assignment, RequestId: rid}
		case "AssignmentService.DeclineOffer":
			return &spav1.DeclineOfferRequest{AssignmentId: assignment, RequestId: rid, Reason: "no bed"}
		case "AssignmentService.StartCare":
			return &spav1.StartCareRequest{AssignmentId: assignment, RequestId: rid}
		case "AssignmentService.CompleteAssignment":
			return &spav1.CompleteAssignmentRequest{AssignmentId: assignment, RequestId: rid}
		case "AssignmentService.UpdateAssignmentStatus":
			return &spav1.UpdateAssignmentStatusRequest{AssignmentId: assignment, RequestId: rid, Status: spav1.TaskStatus_TASK_STATUS_ON_HOLD, Reason: "waiting"}
		case "AssignmentService.ListAssignments":
			return &spav1.ListAssignmentsRequest{ProviderOds: ownProvider}
		case "AssignmentService.WatchAssignments":
			return &spav1.WatchAssignmentsRequest{ProviderOds: ownProvider}
		case "AuditService.ReplayEvents":
			return &spav1.ReplayEventsRequest{ReferralId: ref}
		case "AuditService.ListAccess":
			return &spav1.ListAccessRequest{ReferralId: ref}
		case "PolicyService.SwitchPolicy":
			return &spav1.SwitchPolicyRequest{RequestId: rid, Rule: spav1.PolicyRule_POLICY_RULE_INFECTION_OVERLAY, On: cell%2 == 0,
				EffectiveFrom: time.Now().AddDate(0, 0, 30).Format("2006-01-02"), Reason: "access table"}
		case "PolicyService.ListPolicies":
			return &spav1.ListPoliciesRequest{}
		}
		return nil
	}

	methods := apiMethods(t)
	var missing []string
	for _, m := range methods {
		if _, ok := accessTable[m.short]; !ok {
			missing = append(missing, m.short)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("methods without a row in accessTable: %v", missing)
	}
	cells, allowed := 0, 0
	for _, m := range methods {
		row := strings.Fields(accessTable[m.short])
		if len(row) != len(authz.Roles) {
			t.Fatalf("%s: %d cells, want %d", m.short, len(row), len(authz.Roles))
		}
		if requests(m.short) == nil {
			t.Fatalf("%s: no request to send: add one to the test", m.short)
		}
		for i, role := range authz.Roles {
			for j, own := range []bool{true, false} {
				want := row[i][j] == 'y'
				err := invoke(ctx, as(role, own), m, requests(m.short))
				cells++
				whose := map[bool]string{true: "own", false: "other"}[own]
				// Allowed: answered, or refused by the object's state (the
				// cells run in turn on one referral); never anything else.
				switch code := status.Code(err); {
				case want && code != codes.OK && code != codes.FailedPrecondition:
					t.Errorf("%s as %s (%s): %v; want allowed (OK, or FAILED_PRECONDITION from the referral's state)", m.short, role, whose, err)
				case !want && code != codes.PermissionDenied:
					t.Errorf("%s as %s (%s): %v; want PERMISSION_DENIED", m.short, role, whose, err)
				case want:
					allowed++
				}
			}
		}
	}
	t.Logf("%d methods x %d roles x 2 organisations: %d cells, %d allowed, %d denied", len(methods), len(authz.Roles), cells, allowed, cells-allowed)

	// A refused read is in the access log, as refused.
	audit := spav1.NewAuditServiceClient(as(authz.Auditor, true))
	acc, err := audit.ListAccess(ctx, &spav1.ListAccessRequest{ReferralId: ref, PageSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]bool{}
	for _, r := range acc.GetRecords() {
		if r.GetRefused() && r.GetMethod() == "/spa.v1.ReferralService/GetReferral" {
			refused[r.GetActor().GetOds()+"/"+r.GetActor().GetRole()] = true
		}
	}
	for _, who := range []string{otherSite + "/discharge-team", otherProvider + "/provider", spaOrg + "/auditor", spaOrg + "/admin"} {
		if !refused[who] {
			t.Errorf("no refused GetReferral by %s in the access log: %v", who, acc.GetRecords())
		}
	}
}

// apiMethod is a method of the API, from its descriptor.
type apiMethod struct {
	full    string // "/spa.v1.ReferralService/GetReferral"
	short   string // "ReferralService.GetReferral"
	streams bool
	desc    protoreflect.MethodDescriptor
}

// apiMethods lists every method of every spa.v1 service.
func apiMethods(t *testing.T) []apiMethod {
	t.Helper()
	var out []apiMethod
	protoregistry.GlobalFiles.RangeFilesByPackage("spa.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			s := fd.Services().Get(i)
			for j := range s.Methods().Len() {
				m := s.Methods().Get(j)
				out = append(out, apiMethod{full: "/" + string(s.FullName()) + "/" + string(m.Name()), short: string(s.Name()) + "." + string(m.Name()),
					streams: m.IsStreamingServer(), desc: m})
			}
		}
		return true
	})
	if len(out) == 0 {
		t.Fatal("no spa.v1 services are registered")
	}
	slices.SortFunc(out, func(a, b apiMethod) int { return strings.Compare(a.full, b.full) })
	return out
}

// invoke calls m with req on conn; for a stream, until its first message
// (a heartbeat, an event) or its error.
func invoke(ctx context.Context, conn *grpc.ClientConn, m apiMethod, req proto.Message) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reply, err := protoregistry.GlobalTypes.FindMessageByName(m.desc.Output().FullName())
	if err != nil {
		return err
	}
	if !m.streams {
		return conn.Invoke(ctx, m.full, req, reply.New().Interface())
	}
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, m.full)
	if err != nil {
		return err
	}
	if err := st.SendMsg(req); err != nil {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	return st.RecvMsg(reply.New().Interface())
}

// TestIdentityFromCertificate: with TLS a caller is its certificate and
// nothing else: metadata cannot claim an identity, a client without a
// certificate, or with one another CA signed, is not served, and one
// without an identity is unauthenticated. In the development mode a call
// that states no identity is unauthenticated.
func TestIdentityFromCertificate(t *testing.T) {
	t.Parallel()
	team := identity.Identity{ODS: ownSite, Role: authz.DischargeTeam, User: "jane"}
	s := startTLSServer(t, []identity.Identity{team}, "--data-dir", t.TempDir(), "--scheduler=false")
	ctx := metadata.AppendToOutgoingContext(callCtx(t), "spa-purpose", "direct-care")
	get := func(conn *grpc.ClientConn, ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := spav1.NewReferralServiceClient(conn).ListReferrals(ctx, &spav1.ListReferralsRequest{})
		return err
	}
	if err := get(s.dial(t, team), ctx); err != nil {
		t.Fatalf("own certificate: %v", err)
	}
	claim := metadata.AppendToOutgoingContext(ctx, "spa-actor-ods", "X26", "spa-actor-role", "auditor")
	if err := get(s.dial(t, team), claim); status.Code(err) != codes.InvalidArgument {
		t.Errorf("an identity claimed in metadata: %v; want INVALID_ARGUMENT", err)
	}
	if err := get(s.dial(t, team), callCtx(t)); status.Code(err) != codes.InvalidArgument || !strings.Contains(fmt.Sprint(err), "purpose") {
		t.Errorf("a read that states no purpose: %v; want INVALID_ARGUMENT", err)
	}

	// No certificate, a certificate of another CA, a certificate of the
	// CA with no identity in it.
	strange, err := pki.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := pki.LoadCA(s.certs)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pki.LoadPool(filepath.Join(s.certs, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ca   *pki.CA // signs the client's certificate; nil: none
		uris []*url.URL
		want codes.Code
	}{
		{"no certificate", nil, nil, codes.Unavailable},
		{"another CA's", strange, []*url.URL{team.URI()}, codes.Unavailable},
		{"no identity in it", mine, nil, codes.Unauthenticated},
		{"two identities", mine, []*url.URL{team.URI(), (identity.Identity{ODS: "X26", Role: authz.Auditor}).URI()}, codes.Unauthenticated},
	} {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "localhost"}
		if c.ca != nil {
			certPEM, keyPEM, err := c.ca.Issue(pki.Spec{CommonName: "mallory", Client: true, URIs: c.uris, ValidFor: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		if err := get(conn, ctx); status.Code(err) != c.want {
			t.Errorf("%s: %v; want %s", c.name, err, c.want)
		}
		conn.Close()
	}

	dev := startServerWith(t, []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, "--data-dir", t.TempDir(), "--scheduler=false")
	if err := get(dev.conn, ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("development mode, no identity stated: %v; want UNAUTHENTICATED", err)
	}
}

// TestWhatEachSees: lists are narrowed to the caller's own, whole pages
// at a time; a provider sees only its own part of a referral it was
// offered; a request id reused by another organisation is refused, not
// answered.
func TestWhatEachSees(t *testing.T) {
	t.Parallel()
	team := identity.Identity{ODS: ownSite, Role: authz.DischargeTeam}
	otherTeam := identity.Identity{ODS: otherSite, Role: authz.DischargeTeam}
	first := identity.Identity{ODS: ownProvider, Role: authz.Provider}
	second := identity.Identity{ODS: otherProvider, Role: authz.Provider}
	coordinator := identity.Identity{ODS: spaOrg, Role: authz.Coordinator}
	s := startTLSServer(t, []identity.Identity{team, otherTeam, first, second, coordinator}, "--data-dir", t.TempDir(), "--scheduler=false")
	ctx := metadata.AppendToOutgoingContext(callCtx(t), "spa-purpose", "direct-care")
	referrals := func(id identity.Identity) spav1.ReferralServiceClient {
		return spav1.NewReferralServiceClient(s.dial(t, id))
	}

	// Two providers, three beds each; two referrals of the own site, one
	// of the other, each needing a step-down bed.
	for _, p := range []identity.Identity{first, second} {
		addProvider(t, clients{providers: spav1.NewProviderServiceClient(s.dial(t, p))}, p.ODS, 3, nil, spav1.Service_SERVICE_STEP_DOWN_BED)
	}
	var ids []string
	var token uint64 // the consistency token of the last submission
	for i, who := range []identity.Identity{team, team, otherTeam} {
		d := referraltest.Details(40 + i)
		d.Episode.SiteOds, d.Needs.ShortTermBedBasedCare = who.ODS, true
		sub, err := referrals(who).SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("what-each-sees-%d", i), Referral: d})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sub.GetReferralId())
		token = max(token, sub.GetSequence())
	}

	// A discharge team's board, one row a page, without a site: its own
	// two referrals, and the second page follows the first.
	var rows []string
	req := &spav1.ListReferralsRequest{PageSize: 1, MinSequence: token}
	for range 5 {
		page, err := referrals(team).ListReferrals(ctx, req)
		if err != nil {
			t.Fatalf("board page %d: %v", len(rows)+1, err)
		}
		for _, r := range page.GetReferrals() {
			rows = append(rows, r.GetReferralId())
		}
		if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	slices.Sort(rows)
	if want := slices.Sorted(slices.Values(ids[:2])); !slices.Equal(rows, want) {
		t.Errorf("the team's board: %v, want its own %v", rows, want)
	}

	// A provider lists only its own registration, with no page token, and
	// its own assignments without naming itself.
	provs, err := spav1.NewProviderServiceClient(s.dial(t, first)).ListProviders(ctx, &spav1.ListProvidersRequest{PageSize: 1, MinSequence: token})
	if err != nil || len(provs.GetProviders()) != 1 || provs.GetProviders()[0].GetDetails().GetOds() != ownProvider || provs.GetNextPageToken() != "" {
		t.Errorf("a provider's ListProviders: %v %v", provs, err)
	}

	// The first referral is offered to one provider; it declines, and the
	// other is offered it. The one that declined sees its own assignment
	// only, and no history; the other cannot answer or reuse its request.
	var offered *spav1.Assignment
	coord := referrals(coordinator)
	await.True(t, 30*time.Second, "an offer", func() bool {
		r, err := coord.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: ids[0]})
		if err != nil || len(r.GetReferral().GetAssignments()) == 0 {
			return false
		}
		offered = r.GetReferral().GetAssignments()[0]
		return true
	})
	by := map[string]identity.Identity{ownProvider: first, otherProvider: second}
	decliner, next := by[offered.GetProviderOds()], by[map[string]string{ownProvider: otherProvider, otherProvider: ownProvider}[offered.GetProviderOds()]]
	if _, err := spav1.NewAssignmentServiceClient(s.dial(t, decliner)).DeclineOffer(ctx, &spav1.DeclineOfferRequest{
		AssignmentId: offered.GetAssignmentId(), Reason: "no bed for bariatric care", RequestId: "decline-first-offer"}); err != nil {
		t.Fatal(err)
	}
	await.True(t, 30*time.Second, "the second offer", func() bool {
		r, err := coord.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: ids[0]})
		return err == nil && len(r.GetReferral().GetAssignments()) == 2
	})
	seen, err := referrals(next).GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	if as := seen.GetReferral().GetAssignments(); len(as) != 1 || as[0].GetProviderOds() != next.ODS || len(seen.GetHistory()) != 0 {
		t.Errorf("the provider offered second sees assignments %v and %d events of history; want its own assignment only", as, len(seen.GetHistory()))
	}
	_, err = spav1.NewAssignmentServiceClient(s.dial(t, next)).DeclineOffer(ctx, &spav1.DeclineOfferRequest{
		AssignmentId: offered.GetAssignmentId(), Reason: "no bed for bariatric care", RequestId: "decline-first-offer"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("another provider resending the decline of an assignment not its own: %v; want PERMISSION_DENIED", err)
	}
	// Another site reusing the team's submission request id learns nothing.
	d := referraltest.Details(40)
	d.Episode.SiteOds, d.Needs.ShortTermBedBasedCare = otherSite, true
	_, err = referrals(otherTeam).SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "what-each-sees-0", Referral: d})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("another site reusing a request id: %v; want PERMISSION_DENIED", err)
	}
}
