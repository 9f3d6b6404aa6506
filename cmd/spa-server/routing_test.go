package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/referraltest"
	"spa/internal/spa"
)

// clients bundles the API's services on one connection.
type clients struct {
	referrals   spav1.ReferralServiceClient
	providers   spav1.ProviderServiceClient
	assignments spav1.AssignmentServiceClient
}

func clientsOf(s *server) clients {
	return clients{spav1.NewReferralServiceClient(s.conn), spav1.NewProviderServiceClient(s.conn), spav1.NewAssignmentServiceClient(s.conn)}
}

// addProvider registers a provider in Bromley with units of each service.
func addProvider(t testing.TB, c clients, ods string, units int32, adjust func(d *spav1.ProviderDetails), services ...spav1.Service) {
	t.Helper()
	ctx := callCtx(t)
	d := &spav1.ProviderDetails{Ods: ods, Name: "Provider " + ods, Boroughs: []string{"Bromley"}, Services: services}
	if adjust != nil {
		adjust(d)
	}
	if _, err := c.providers.RegisterProvider(ctx, &spav1.RegisterProviderRequest{Provider: d}); err != nil {
		t.Fatalf("register %s: %v", ods, err)
	}
	var caps []*spav1.Capacity
	for _, s := range services {
		caps = append(caps, &spav1.Capacity{Service: s, AvailableUnits: units, Open: true, AsOf: timestamppb.New(time.Now().Add(-time.Minute))})
	}
	if _, err := c.providers.UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: ods, Capacity: caps}); err != nil {
		t.Fatalf("capacity %s: %v", ods, err)
	}
}

// waitReferral polls a referral until cond holds or 30s pass.
func waitReferral(t testing.TB, c clients, id string, what string, cond func(r *spav1.GetReferralResponse) bool) *spav1.GetReferralResponse {
	t.Helper()
	var r *spav1.GetReferralResponse
	await.True(t, 30*time.Second, id+" "+what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		r, err = c.referrals.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: id})
		return err == nil && cond(r)
	})
	return r
}

func hasStatus(st spav1.ReferralStatus) func(*spav1.GetReferralResponse) bool {
	return func(r *spav1.GetReferralResponse) bool { return r.GetReferral().GetStatus() == st }
}

func liveAssignment(r *spav1.GetReferralResponse) *spav1.Assignment {
	as := r.GetReferral().GetAssignments()
	return as[len(as)-1]
}

// TestRoutingScenarios runs the all-in-one server through the pathways:
// Home First to a home-care provider with room; a care home resident who
// tested positive in 2020 to a designated step-down bed, never a care home;
// a fast-tracked end-of-life patient to a hospice. Each decision names its
// rule and policy version.
func TestRoutingScenarios(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	c := clientsOf(s)
	ctx := callCtx(t)
	addProvider(t, c, "NQR01", 3, nil, spav1.Service_SERVICE_HOME_CARE_REABLEMENT)
	addProvider(t, c, "VLAXL", 5, func(d *spav1.ProviderDetails) { d.AcceptsInfectionPositive = true }, spav1.Service_SERVICE_CARE_HOME_BED)
	addProvider(t, c, "STP01", 2, nil, spav1.Service_SERVICE_DESIGNATED_STEP_DOWN_BED)
	addProvider(t, c, "HOS01", 1, nil, spav1.Service_SERVICE_HOSPICE_BED, spav1.Service_SERVICE_HOSPICE_AT_HOME)

	submit := func(name string, occurred time.Time, adjust func(d *spav1.ReferralDetails)) string {
		t.Helper()
		d := referraltest.Details(len(name))
		adjust(d)
		req := &spav1.SubmitReferralRequest{RequestId: "routing-" + name, Referral: d}
		if !occurred.IsZero() {
			req.OccurredAt = timestamppb.New(occurred)
		}
		res, err := c.referrals.SubmitReferral(ctx, req)
		if err != nil {
			t.Fatalf("submit %s: %v", name, err)
		}
		return res.GetReferralId()
	}
	offered := hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_OFFERED)

	t.Run("home first", func(t *testing.T) {
		id := submit("home-first", time.Time{}, func(d *spav1.ReferralDetails) {})
		r := waitReferral(t, c, id, "offered", offered)
		a := liveAssignment(r)
		if a.GetProviderOds() != "NQR01" || a.GetService() != spav1.Service_SERVICE_HOME_CARE_REABLEMENT || r.GetReferral().GetPathway() != spav1.Pathway_PATHWAY_P1_HOME_FIRST ||
			r.GetReferral().GetDecisionRule() != "home-first" || r.GetReferral().GetPolicyVersion() != "2023.1" {
			t.Fatalf("home first: %v", r.GetReferral())
		}
	})

	t.Run("positive care home resident in 2020", func(t *testing.T) {
		when := time.Date(2020, 6, 1, 11, 0, 0, 0, time.UTC)
		id := submit("care-home-2020", when, func(d *spav1.ReferralDetails) {
			d.AdmittedFrom = spav1.AdmittedFrom_ADMITTED_FROM_CARE_HOME
			d.Episode.AdmissionDate, d.DischargeReadyDate = "2020-05-20", "2020-05-30"
			d.Needs.OngoingBeddedCare = true
			d.InfectionTest = &spav1.InfectionTest{Type: spav1.InfectionTestType_INFECTION_TEST_TYPE_PCR,
				TakenAt: timestamppb.New(when.Add(-20 * time.Hour)), Result: spav1.InfectionTestResult_INFECTION_TEST_RESULT_POSITIVE}
		})
		r := waitReferral(t, c, id, "offered", offered)
		a := liveAssignment(r)
		if a.GetProviderOds() != "STP01" || a.GetService() != spav1.Service_SERVICE_DESIGNATED_STEP_DOWN_BED ||
			r.GetReferral().GetDecisionRule() != "infection-overlay" || r.GetReferral().GetPolicyVersion() != "2020.1-infection-overlay" {
			t.Fatalf("overlay: %v", r.GetReferral())
		}
		for _, e := range r.GetHistory() {
			if d := e.GetEnvelope().GetPathwayDecided(); d != nil && (d.GetIsolationDays() != 14 || d.GetInputs()["test"] == "") {
				t.Fatalf("decision %v", d)
			}
			if o := e.GetEnvelope().GetOfferMade(); o != nil && o.GetService() == spav1.Service_SERVICE_CARE_HOME_BED {
				t.Fatalf("offered straight to a care home: %v", o)
			}
		}
	})

	t.Run("urgent community response", func(t *testing.T) {
		addProvider(t, c, "UCR01", 2, nil, spav1.Service_SERVICE_URGENT_COMMUNITY_RESPONSE)
		id := submit("urgent", time.Time{}, func(d *spav1.ReferralDetails) { d.Needs.UrgentCommunityResponse = true })
		r := waitReferral(t, c, id, "offered", offered)
		if a := liveAssignment(r); a.GetProviderOds() != "UCR01" || a.GetService() != spav1.Service_SERVICE_URGENT_COMMUNITY_RESPONSE ||
			r.GetReferral().GetPathway() != spav1.Pathway_PATHWAY_P1_HOME_FIRST || r.GetReferral().GetDecisionRule() != "urgent-community-response" {
			t.Fatalf("urgent community response: %v", r.GetReferral())
		}
	})

	t.Run("end of life fast track", func(t *testing.T) {
		id := submit("end-of-life", time.Time{}, func(d *spav1.ReferralDetails) {
			d.EndOfLife = &spav1.EndOfLife{FastTrack: true, PreferredPlace: spav1.PlaceOfCare_PLACE_OF_CARE_HOSPICE}
		})
		r := waitReferral(t, c, id, "offered", offered)
		if a := liveAssignment(r); a.GetProviderOds() != "HOS01" || a.GetService() != spav1.Service_SERVICE_HOSPICE_BED ||
			r.GetReferral().GetPathway() != spav1.Pathway_PATHWAY_END_OF_LIFE || r.GetReferral().GetDecisionRule() != "end-of-life" {
			t.Fatalf("end of life: %v", r.GetReferral())
		}
	})

	t.Run("decline, accept, start, complete; the queue", func(t *testing.T) {
		addProvider(t, c, "NQR02", 1, nil, spav1.Service_SERVICE_STEP_DOWN_BED)
		addProvider(t, c, "NQR03", 1, nil, spav1.Service_SERVICE_STEP_DOWN_BED)
		id := submit("step-down", time.Time{}, func(d *spav1.ReferralDetails) { d.Needs.ShortTermBedBasedCare = true })
		r := waitReferral(t, c, id, "offered", offered)
		first := liveAssignment(r)
		if _, err := c.assignments.DeclineOffer(ctx, &spav1.DeclineOfferRequest{AssignmentId: first.GetAssignmentId(), Reason: "no bed for bariatric care"}); err != nil {
			t.Fatal(err)
		}
		r = waitReferral(t, c, id, "offered again", func(r *spav1.GetReferralResponse) bool {
			return len(r.GetReferral().GetAssignments()) == 2 && r.GetReferral().GetStatus() == spav1.ReferralStatus_REFERRAL_STATUS_OFFERED
		})
		second := liveAssignment(r)
		if second.GetProviderOds() == first.GetProviderOds() {
			t.Fatalf("offered to the provider that declined: %v", r.GetReferral().GetAssignments())
		}
		// Illegal: starting care before accepting names the current state.
		_, err := c.assignments.StartCare(ctx, &spav1.StartCareRequest{AssignmentId: second.GetAssignmentId()})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "requested") {
			t.Fatalf("start before accept: %v", err)
		}
		for _, step := range []func() error{
			func() error {
				_, err := c.assignments.AcceptOffer(ctx, &spav1.AcceptOfferRequest{AssignmentId: second.GetAssignmentId()})
				return err
			},
			func() error {
				_, err := c.referrals.RecordPatientLeft(ctx, &spav1.RecordPatientLeftRequest{ReferralId: id})
				return err
			},
			func() error {
				_, err := c.assignments.StartCare(ctx, &spav1.StartCareRequest{AssignmentId: second.GetAssignmentId()})
				return err
			},
			func() error {
				_, err := c.assignments.CompleteAssignment(ctx, &spav1.CompleteAssignmentRequest{AssignmentId: second.GetAssignmentId()})
				return err
			},
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		waitReferral(t, c, id, "completed", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_COMPLETED))

		// Both providers say they are full: the next referral waits in
		// the queue, and is offered as soon as capacity appears.
		for _, ods := range []string{first.GetProviderOds(), second.GetProviderOds()} {
			if _, err := c.providers.UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: ods, Capacity: []*spav1.Capacity{
				{Service: spav1.Service_SERVICE_STEP_DOWN_BED, AvailableUnits: 0, Open: true, AsOf: timestamppb.Now()}}}); err != nil {
				t.Fatal(err)
			}
		}
		queued := submit("queued", time.Time{}, func(d *spav1.ReferralDetails) { d.Needs.ShortTermBedBasedCare = true })
		waitReferral(t, c, queued, "in the no-capacity queue", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_AWAITING_CAPACITY))
		board, err := c.referrals.ListReferrals(ctx, &spav1.ListReferralsRequest{Status: spav1.ReferralStatus_REFERRAL_STATUS_AWAITING_CAPACITY})
		if err != nil || !slices.ContainsFunc(board.GetReferrals(), func(r *spav1.ReferralSummary) bool { return r.GetReferralId() == queued }) {
			t.Fatalf("no-capacity queue: %v %v", board, err)
		}
		// The bed the completed patient took stays taken until a count
		// leaves it out; the provider that declined has nothing taken.
		// It declares a bed free, and the queued referral is offered it.
		freed := first.GetProviderOds()
		if _, err := c.providers.UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: freed, Capacity: []*spav1.Capacity{
			{Service: spav1.Service_SERVICE_STEP_DOWN_BED, AvailableUnits: 1, Open: true, AsOf: timestamppb.Now()}}}); err != nil {
			t.Fatal(err)
		}
		r = waitReferral(t, c, queued, "offered from the queue", offered)
		if liveAssignment(r).GetProviderOds() != freed {
			t.Fatalf("offered to %v, want %s", liveAssignment(r), freed)
		}
		mine, err := c.assignments.ListAssignments(ctx, &spav1.ListAssignmentsRequest{ProviderOds: freed, MinSequence: r.GetReferral().GetVersion()})
		if err != nil || len(mine.GetAssignments()) != 2 || mine.GetAssignments()[0].GetReferralId() != queued || mine.GetAssignments()[1].GetReferralId() != id {
			t.Fatalf("%s's assignments, newest first: %v %v", freed, mine, err)
		}

		// Withdrawing the referral cancels the offer and frees the bed.
		if _, err := c.referrals.WithdrawReferral(ctx, &spav1.WithdrawReferralRequest{ReferralId: queued, Reason: spav1.WithdrawalReason_WITHDRAWAL_REASON_DETERIORATED}); err != nil {
			t.Fatal(err)
		}
		waitReferral(t, c, queued, "offer cancelled", func(r *spav1.GetReferralResponse) bool {
			return liveAssignment(r).GetStatus() == spav1.TaskStatus_TASK_STATUS_CANCELLED
		})
		await.True(t, 30*time.Second, "the withdrawn referral's bed freed", func() bool {
			ps, err := c.providers.ListProviders(ctx, &spav1.ListProvidersRequest{Service: spav1.Service_SERVICE_STEP_DOWN_BED})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps.GetProviders() {
				for _, cp := range p.GetCapacity() {
					if p.GetDetails().GetOds() == freed && cp.GetService() == spav1.Service_SERVICE_STEP_DOWN_BED {
						return cp.GetAvailableUnits() == 1
					}
				}
			}
			return false
		})
	})
}

// TestBedNeverPromisedTwice: a provider with one bed, offered to a patient
// still on the ward, re-reports the bed free (and its client retries):
// the next referral waits in the queue rather than being offered the same
// bed, and is offered it once the first offer is declined.
func TestBedNeverPromisedTwice(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	c := clientsOf(s)
	ctx := callCtx(t)
	addProvider(t, c, "STP09", 1, nil, spav1.Service_SERVICE_STEP_DOWN_BED)
	submit := func(name string) string {
		t.Helper()
		d := referraltest.Details(len(name))
		d.Needs.ShortTermBedBasedCare = true
		res, err := c.referrals.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "twice-" + name, Referral: d})
		if err != nil {
			t.Fatalf("submit %s: %v", name, err)
		}
		return res.GetReferralId()
	}
	first := submit("first")
	r := waitReferral(t, c, first, "offered", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_OFFERED))

	// The home counts its bed free again: the patient has not arrived.
	again := &spav1.UpdateCapacityRequest{ProviderOds: "STP09", Capacity: []*spav1.Capacity{
		{Service: spav1.Service_SERVICE_STEP_DOWN_BED, AvailableUnits: 1, Open: true, AsOf: timestamppb.Now()}}}
	res, err := c.providers.UpdateCapacity(ctx, again)
	if err != nil || res.GetUnchanged() {
		t.Fatalf("re-declared: %v, %v", res, err)
	}
	retried, err := c.providers.UpdateCapacity(ctx, again)
	if err != nil || !retried.GetUnchanged() || retried.GetSequence() != res.GetSequence() {
		t.Fatalf("the same declaration retried: %v, %v; want unchanged at sequence %d", retried, err, res.GetSequence())
	}
	ps, err := c.providers.ListProviders(ctx, &spav1.ListProvidersRequest{Service: spav1.Service_SERVICE_STEP_DOWN_BED, MinSequence: res.GetSequence()})
	if err != nil || len(ps.GetProviders()) != 1 {
		t.Fatalf("providers: %v, %v", ps, err)
	}
	if cp := ps.GetProviders()[0].GetCapacity()[0]; cp.GetDeclaredUnits() != 1 || cp.GetReservedUnits() != 1 || cp.GetAvailableUnits() != 0 {
		t.Fatalf("capacity after the re-declaration: %v; want 1 declared, 1 reserved, 0 available", cp)
	}

	second := submit("second")
	waitReferral(t, c, second, "in the no-capacity queue", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_AWAITING_CAPACITY))

	if _, err := c.assignments.DeclineOffer(ctx, &spav1.DeclineOfferRequest{AssignmentId: liveAssignment(r).GetAssignmentId(), Reason: "cannot meet needs"}); err != nil {
		t.Fatal(err)
	}
	got := waitReferral(t, c, second, "offered the freed bed", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_OFFERED))
	if liveAssignment(got).GetProviderOds() != "STP09" {
		t.Fatalf("offered to %v", liveAssignment(got))
	}

	// The first referral waits: its only provider declined it. Once that
	// provider declares again, it is offered the referral again.
	waitReferral(t, c, first, "in the no-capacity queue", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_AWAITING_CAPACITY))
	if _, err := c.providers.UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: "STP09", RequestId: "twice-friday-count", Capacity: []*spav1.Capacity{
		{Service: spav1.Service_SERVICE_STEP_DOWN_BED, AvailableUnits: 2, Open: true, AsOf: timestamppb.Now()}}}); err != nil {
		t.Fatal(err)
	}
	reoffered := waitReferral(t, c, first, "offered again after the new count", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_OFFERED))
	if a := liveAssignment(reoffered); a.GetProviderOds() != "STP09" || len(reoffered.GetReferral().GetAssignments()) != 2 {
		t.Fatalf("offered again: %v", reoffered.GetReferral().GetAssignments())
	}
}

// TestAcceptRetriedAfterALostReply: a provider accepts with a request id,
// loses the reply, and retries after care started: it gets the first
// answer (the same sequence), not FAILED_PRECONDITION, and nothing is
// appended; the same request id on a decline is ALREADY_EXISTS.
func TestAcceptRetriedAfterALostReply(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	c := clientsOf(s)
	ctx := callCtx(t)
	addProvider(t, c, "STP11", 1, nil, spav1.Service_SERVICE_STEP_DOWN_BED)
	d := referraltest.Details(11)
	d.Needs.ShortTermBedBasedCare = true
	sub, err := c.referrals.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "lost-reply-submit", Referral: d})
	if err != nil {
		t.Fatal(err)
	}
	a := liveAssignment(waitReferral(t, c, sub.GetReferralId(), "offered", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_OFFERED)))
	accept := &spav1.AcceptOfferRequest{AssignmentId: a.GetAssignmentId(), RequestId: "lost-reply-accept"}
	first, err := c.assignments.AcceptOffer(ctx, accept)
	if err != nil {
		t.Fatal(err)
	}
	started, err := c.assignments.StartCare(ctx, &spav1.StartCareRequest{AssignmentId: a.GetAssignmentId(), RequestId: "lost-reply-start"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.assignments.AcceptOffer(ctx, accept)
	if err != nil || again.GetSequence() != first.GetSequence() {
		t.Fatalf("accept retried: %v, %v; want sequence %d", again, err, first.GetSequence())
	}
	_, err = c.assignments.DeclineOffer(ctx, &spav1.DeclineOfferRequest{AssignmentId: a.GetAssignmentId(), Reason: "no bed", RequestId: "lost-reply-accept"})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("the accept's request id on a decline: %v; want ALREADY_EXISTS", err)
	}
	r, err := c.referrals.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: sub.GetReferralId(), MinSequence: started.GetSequence()})
	if err != nil {
		t.Fatal(err)
	}
	if v := r.GetReferral().GetVersion(); v != started.GetSequence() {
		t.Fatalf("referral at version %d after the retries, want %d (the start of care)", v, started.GetSequence())
	}
}

// TestAmendReferral: a ward amends the needs of a referral offered to a
// home care provider so that it needs a step-down bed: the offer is
// cancelled, its unit released, and the referral decided again and
// offered a bed. Once accepted, an amendment is recorded and carried on
// the provider's feed.
func TestAmendReferral(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	c := clientsOf(s)
	ctx := callCtx(t)
	addProvider(t, c, "NQR21", 1, nil, spav1.Service_SERVICE_HOME_CARE_REABLEMENT)
	addProvider(t, c, "STP21", 1, nil, spav1.Service_SERVICE_STEP_DOWN_BED)
	sub, err := c.referrals.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "amend-first", Referral: referraltest.Details(21)})
	if err != nil {
		t.Fatal(err)
	}
	id := sub.GetReferralId()
	first := liveAssignment(waitReferral(t, c, id, "offered home care", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_OFFERED)))
	if first.GetProviderOds() != "NQR21" {
		t.Fatalf("offered to %v", first)
	}
	amend := &spav1.AmendReferralRequest{ReferralId: id, RequestId: "amend-needs-bed", Reason: "OT reassessment: needs 24h rehabilitation",
		Changes:    &spav1.ReferralChanges{Needs: &spav1.Needs{Mobility: spav1.Mobility_MOBILITY_ASSISTED, ShortTermBedBasedCare: true}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"needs"}}}
	res, err := c.referrals.AmendReferral(ctx, amend)
	if err != nil || res.GetUnchanged() {
		t.Fatalf("amend: %v, %v", res, err)
	}
	r := waitReferral(t, c, id, "offered a step-down bed", func(r *spav1.GetReferralResponse) bool {
		return liveAssignment(r).GetProviderOds() == "STP21"
	})
	if r.GetReferral().GetPathway() != spav1.Pathway_PATHWAY_P2_STEP_DOWN || r.GetReferral().GetAssignments()[0].GetStatus() != spav1.TaskStatus_TASK_STATUS_CANCELLED {
		t.Fatalf("after the amendment: %v", r.GetReferral())
	}
	again, err := c.referrals.AmendReferral(ctx, amend)
	if err != nil || again.GetSequence() != res.GetSequence() {
		t.Fatalf("amendment retried: %v, %v; want sequence %d", again, err, res.GetSequence())
	}
	await.True(t, 30*time.Second, "the home care unit released", func() bool {
		ps, err := c.providers.ListProviders(ctx, &spav1.ListProvidersRequest{Service: spav1.Service_SERVICE_HOME_CARE_REABLEMENT})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps.GetProviders() {
			if p.GetDetails().GetOds() == "NQR21" {
				return p.GetCapacity()[0].GetAvailableUnits() == 1
			}
		}
		return false
	})

	bed := liveAssignment(r)
	if _, err := c.assignments.AcceptOffer(ctx, &spav1.AcceptOfferRequest{AssignmentId: bed.GetAssignmentId(), RequestId: "amend-accept"}); err != nil {
		t.Fatal(err)
	}
	risks, err := c.referrals.AmendReferral(ctx, &spav1.AmendReferralRequest{ReferralId: id, RequestId: "amend-risks", Reason: "fell on the ward",
		Changes: &spav1.ReferralChanges{Risks: &spav1.Risks{Falls: true}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"risks"}}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	events, _, err := watch(wctx, c.assignments, "STP21", risks.GetSequence()-1, func(n int) bool { return n >= 1 })
	if err != nil || len(events) == 0 || events[0].GetType() != "ReferralAmended" || !events[0].GetEnvelope().GetReferralAmended().GetDetails().GetRisks().GetFalls() {
		t.Fatalf("the provider's feed after the amendment: %v, %v", events, err)
	}
	got := waitReferral(t, c, id, "amended", func(r *spav1.GetReferralResponse) bool { return r.GetReferral().GetVersion() >= risks.GetSequence() })
	if liveAssignment(got).GetStatus() != spav1.TaskStatus_TASK_STATUS_ACCEPTED || got.GetReferral().GetPathway() != spav1.Pathway_PATHWAY_P2_STEP_DOWN {
		t.Fatalf("an amendment after acceptance changed the routing: %v", got.GetReferral())
	}
}

// TestPolicySwitchedInTheLog: a coordinator switches the infection overlay
// on from today: a care-home-bound patient without a test waits for one,
// under the switched policy's version; the switch is listed and in the log
// with its reason. Switched off again, the wait is released at once.
func TestPolicySwitchedInTheLog(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	c := clientsOf(s)
	ctx := callCtx(t)
	policies := spav1.NewPolicyServiceClient(s.conn)
	today := spa.LocalDate(time.Now())
	on, err := policies.SwitchPolicy(ctx, &spav1.SwitchPolicyRequest{Rule: spav1.PolicyRule_POLICY_RULE_INFECTION_OVERLAY, On: true,
		EffectiveFrom: today, Reason: "outbreak in the borough", RequestId: "policy-on-today"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := policies.ListPolicies(ctx, &spav1.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// From today: in force from the instant it was recorded, and named so.
	last := list.GetVersions()[len(list.GetVersions())-1]
	version := last.GetVersion()
	if !strings.HasPrefix(version, today+"T") || !strings.HasSuffix(version, "-overlay-on") || !last.GetInfectionOverlay() || last.GetTestValidityHours() != 48 {
		t.Fatalf("policies: %v", list.GetVersions())
	}
	d := referraltest.Details(31)
	d.AdmittedFrom = spav1.AdmittedFrom_ADMITTED_FROM_CARE_HOME
	sub, err := c.referrals.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "policy-care-home", Referral: d})
	if err != nil {
		t.Fatal(err)
	}
	r := waitReferral(t, c, sub.GetReferralId(), "waiting for a test", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_HELD))
	if r.GetReferral().GetPolicyVersion() != version || r.GetReferral().GetDecisionRule() != "infection-overlay" {
		t.Fatalf("held under %q by %q", r.GetReferral().GetPolicyVersion(), r.GetReferral().GetDecisionRule())
	}
	switched := replayAll(t, spav1.NewAuditServiceClient(s.conn), &spav1.ReplayEventsRequest{EventTypes: []string{"PolicySwitched"}, IncludeData: true})
	if len(switched) != 1 || switched[0].GetSequence() != on.GetSequence() || switched[0].GetEnvelope().GetPolicySwitched().GetReason() != "outbreak in the borough" {
		t.Fatalf("the switch in the log: %v", switched)
	}
	if _, err := policies.SwitchPolicy(ctx, &spav1.SwitchPolicyRequest{Rule: spav1.PolicyRule_POLICY_RULE_INFECTION_OVERLAY, On: false,
		EffectiveFrom: today, Reason: "outbreak over", RequestId: "policy-off-today"}); err != nil {
		t.Fatal(err)
	}
	waitReferral(t, c, sub.GetReferralId(), "released once the overlay is off", func(r *spav1.GetReferralResponse) bool {
		return r.GetReferral().GetStatus() != spav1.ReferralStatus_REFERRAL_STATUS_HELD
	})
}
