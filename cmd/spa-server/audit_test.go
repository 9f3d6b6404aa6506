package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/natsauth"
	"spa/internal/referraltest"
)

// watch reads a provider's stream after a cursor until stop says so or the
// stream ends; it returns the events seen and the last cursor.
func watch(ctx context.Context, c spav1.AssignmentServiceClient, ods string, after uint64, stop func(events int) bool) ([]*spav1.StoredEvent, uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchAssignments(ctx, &spav1.WatchAssignmentsRequest{ProviderOds: ods, AfterSequence: after})
	if err != nil {
		return nil, after, err
	}
	var got []*spav1.StoredEvent
	for !stop(len(got)) {
		res, err := stream.Recv()
		if err != nil {
			return got, after, err
		}
		if res.GetCursor() < after {
			return got, after, fmt.Errorf("cursor went back from %d to %d", after, res.GetCursor())
		}
		after = res.GetCursor()
		if !res.GetHeartbeat() {
			got = append(got, res.GetEvent())
		}
	}
	return got, after, nil
}

func replayAll(t *testing.T, c spav1.AuditServiceClient, req *spav1.ReplayEventsRequest) []*spav1.StoredEvent {
	t.Helper()
	stream, err := c.ReplayEvents(callCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	var out []*spav1.StoredEvent
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.GetEvent())
	}
}

// TestWatchResumes disconnects a provider's watcher again and again while
// referrals are being submitted and routed to it; resuming from its last
// cursor each time, it must see exactly the events addressed to it, in
// order, none twice.
func TestWatchResumes(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir(), "--watch-heartbeat", "50ms", "--scheduler=false")
	c := clientsOf(s)
	audit := spav1.NewAuditServiceClient(s.conn)
	addProvider(t, c, "NQR01", 1000, nil, spav1.Service_SERVICE_HOME_CARE_REABLEMENT)
	const n = 60
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := c.referrals.SubmitReferral(callCtx(t), &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("watch-%04d", i), Referral: referraltest.Details(i)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var seen []*spav1.StoredEvent
	var cursor uint64
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < n {
		if time.Now().After(deadline) {
			t.Fatalf("saw %d offers of %d", len(seen), n)
		}
		// Take up to 7 events, then drop the connection.
		got, next, err := watch(callCtx(t), c.assignments, "NQR01", cursor, func(k int) bool { return k >= 7 || len(seen)+k >= n })
		if err != nil {
			t.Fatal(err)
		}
		seen, cursor = append(seen, got...), next
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var want []*spav1.StoredEvent
	for _, e := range replayAll(t, audit, &spav1.ReplayEventsRequest{ProviderOds: "NQR01", EventTypes: []string{"OfferMade", "AssignmentStatusChanged"}}) {
		if e.GetSequence() <= seen[len(seen)-1].GetSequence() {
			want = append(want, e)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("watched %d events, the log has %d addressed to NQR01", len(seen), len(want))
	}
	for i := range seen {
		if seen[i].GetSequence() != want[i].GetSequence() || !proto.Equal(seen[i].GetEnvelope(), want[i].GetEnvelope()) {
			t.Fatalf("event %d: watched %d, log %d", i, seen[i].GetSequence(), want[i].GetSequence())
		}
	}
}

// TestManyWatchers has 200 providers watch at once; each gets exactly the
// one offer addressed to it.
func TestManyWatchers(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir(), "--watch-heartbeat", "200ms", "--scheduler=false")
	c := clientsOf(s)
	const n = 200
	ods := func(i int) string { return fmt.Sprintf("W%04d", i) }
	for i := range n {
		addProvider(t, c, ods(i), 1, nil, spav1.Service_SERVICE_HOME_CARE_REABLEMENT)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			got, _, err := watch(ctx, c.assignments, ods(i), 0, func(k int) bool { return k >= 1 })
			if err != nil {
				errs <- fmt.Errorf("%s: %w", ods(i), err)
				return
			}
			if o := got[0].GetEnvelope().GetOfferMade(); o == nil || o.GetProviderOds() != ods(i) {
				errs <- fmt.Errorf("%s received %v", ods(i), got[0])
			}
		}()
	}
	start := time.Now()
	for i := range n {
		if _, err := c.referrals.SubmitReferral(callCtx(t), &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("many-%04d", i), Referral: referraltest.Details(i)}); err != nil {
			t.Fatal(err)
		}
	}
	submitted := time.Since(start)
	wg.Wait()
	t.Logf("%d referrals submitted in %s; every watcher had its offer %s after the first submission", n, submitted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestReplayAndAccessLog: a referral's replay equals what was appended (its
// history as the read model holds it), and every read is in the access log.
func TestReplayAndAccessLog(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir(), "--scheduler=false")
	c := clientsOf(s)
	audit := spav1.NewAuditServiceClient(s.conn)
	addProvider(t, c, "NQR01", 5, nil, spav1.Service_SERVICE_HOME_CARE_REABLEMENT)
	sub, err := c.referrals.SubmitReferral(callCtx(t), &spav1.SubmitReferralRequest{RequestId: "replay-test-1", Referral: referraltest.Details(1)})
	if err != nil {
		t.Fatal(err)
	}
	r := waitReferral(t, c, sub.GetReferralId(), "offered", hasStatus(spav1.ReferralStatus_REFERRAL_STATUS_OFFERED))
	got := replayAll(t, audit, &spav1.ReplayEventsRequest{ReferralId: sub.GetReferralId()})
	if len(got) != len(r.GetHistory()) {
		t.Fatalf("replayed %d events, history has %d", len(got), len(r.GetHistory()))
	}
	for i, e := range got {
		h := r.GetHistory()[i]
		if e.GetSequence() != h.GetSequence() || !proto.Equal(e.GetEnvelope(), h.GetEnvelope()) {
			t.Fatalf("event %d: replayed %v, appended %v", i, e, h)
		}
	}
	if got[0].GetSequence() != sub.GetSequence() || got[0].GetEnvelope().GetReferralSubmitted().GetRequestId() != "replay-test-1" {
		t.Fatalf("first event %v", got[0])
	}
	// Filters: by type, and by sequence range.
	offers := replayAll(t, audit, &spav1.ReplayEventsRequest{ReferralId: sub.GetReferralId(), EventTypes: []string{"OfferMade"}})
	if len(offers) != 1 || offers[0].GetEnvelope().GetOfferMade() == nil {
		t.Fatalf("OfferMade only: %v", offers)
	}
	ranged := replayAll(t, audit, &spav1.ReplayEventsRequest{FromSequence: got[1].GetSequence(), ToSequence: got[1].GetSequence()})
	if len(ranged) != 1 || ranged[0].GetSequence() != got[1].GetSequence() {
		t.Fatalf("one sequence: %v", ranged)
	}

	ctx := metadata.AppendToOutgoingContext(callCtx(t), "spa-actor-ods", "RJZ30", "spa-actor-role", "coordinator", "spa-purpose", "direct-care",
		"x-request-id", "ward-round-42")
	got1, err := c.referrals.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: sub.GetReferralId()})
	if err != nil {
		t.Fatal(err)
	}
	access, err := audit.ListAccess(callCtx(t), &spav1.ListAccessRequest{ReferralId: sub.GetReferralId()})
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, a := range access.GetRecords() {
		methods = append(methods, a.GetMethod())
	}
	last := access.GetRecords()[len(access.GetRecords())-1]
	if !slices.Contains(methods, "/spa.v1.AuditService/ReplayEvents") || last.GetMethod() != "/spa.v1.ReferralService/GetReferral" ||
		last.GetActor().GetOds() != "RJZ30" || last.GetPurpose() != "direct-care" || last.GetRequestId() != "ward-round-42" ||
		last.GetNhsNumber() != got1.GetReferral().GetDetails().GetPatient().GetNhsNumber() {
		t.Fatalf("access log %v", access.GetRecords())
	}
	// The patient's reads, by NHS number: the same records.
	byPatient, err := audit.ListAccess(callCtx(t), &spav1.ListAccessRequest{NhsNumber: last.GetNhsNumber()})
	if err != nil {
		t.Fatal(err)
	}
	if len(byPatient.GetRecords()) != len(access.GetRecords()) {
		t.Fatalf("by patient: %d records, by referral %d", len(byPatient.GetRecords()), len(access.GetRecords()))
	}
}

// TestWatchesCleanUp opens 60 watches, receives from each, and cancels or
// breaks them: their consumers leave the server at once, and the
// server's goroutines return to their idle level. It counts the
// process's goroutines, so it does not run in parallel with the other
// tests (whose servers start and stop goroutines meanwhile).
func TestWatchesCleanUp(t *testing.T) {
	natsURL := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dir := t.TempDir()
	s := startServer(t, "--data-dir", dir, "--watch-heartbeat", "50ms", "--scheduler=false", "--nats-listen", natsURL)
	c := clientsOf(s)
	opts, err := natsauth.Client{Identity: natsauth.Auditor, NkeyFile: natsauth.SeedFile(filepath.Join(dir, "nats"), natsauth.Auditor)}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+natsURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := callCtx(t)
	consumers := func() int {
		info, err := js.Stream(ctx, "SPA_EVENTS")
		if err != nil {
			t.Fatal(err)
		}
		return info.CachedInfo().State.Consumers
	}
	// Idle: the routers' consumer and the projector's ordered one.
	var idleConsumers, idleGoroutines int
	stable := 0
	await.True(t, time.Minute, "idle level", func() bool {
		n, g := consumers(), runtime.NumGoroutine()
		if n == idleConsumers && g == idleGoroutines {
			stable++
		} else {
			stable = 0
		}
		idleConsumers, idleGoroutines = n, g
		return stable >= 10
	})

	const watches = 60
	var wg sync.WaitGroup
	for i := range watches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := c.assignments.WatchAssignments(wctx, &spav1.WatchAssignmentsRequest{ProviderOds: fmt.Sprintf("C%04d", i)})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := stream.Recv(); err != nil { // a heartbeat: the watch runs
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	during := consumers()
	await.True(t, time.Minute, "consumers back to idle", func() bool { return consumers() == idleConsumers })
	var after int
	await.True(t, time.Minute, "goroutines back to idle", func() bool {
		after = runtime.NumGoroutine()
		return after <= idleGoroutines
	})
	t.Logf("%d watches opened and cancelled: consumers %d idle, %d right after, %d after; goroutines %d idle, %d after",
		watches, idleConsumers, during, consumers(), idleGoroutines, after)
}
