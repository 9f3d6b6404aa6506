package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/query"
	"spa/internal/scheduler"
	"spa/internal/spa"
	"spa/internal/worker"
)

// TestRepliesFit runs a worker behind a NATS server that carries at most
// 32 KiB a message, over a referral with a history far larger than that
// and a provider with 600 assignments: GetReferral answers with the
// newest events that fit and says the history was cut; a page of 500
// assignments is refused as too large (never lost); pages of 100 bring
// every assignment exactly once; a page token used with other filters is
// refused; a consistency token beyond the log is refused at once.
func TestRepliesFit(t *testing.T) {
	t.Parallel()
	srv := jetstreamtest.Start(t, func(o *server.Options) { o.MaxPayload = 32 << 10 })
	nc := jetstreamtest.Connect(t, srv)
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	ctx := context.Background()
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	last := map[string]uint64{}
	appendTo := func(id, eventID string, e spa.Event) {
		t.Helper()
		seq, err := store.Append(ctx, spa.Record{EventID: eventID, AggregateID: id, OccurredAt: at, RecordedAt: at, Event: e}, last[id])
		if err != nil {
			t.Fatal(err)
		}
		last[id] = seq
	}
	submit := func(i int) string {
		id := spa.ReferralIDFor(fmt.Sprintf("replies-%04d", i))
		appendTo(id, id+"-0", spa.ReferralSubmitted{RequestID: fmt.Sprintf("replies-%04d", i), Details: spa.Details{CriteriaMet: []spa.Criterion{spa.CriterionOxygen},
			Episode: spa.Episode{SiteODS: "RJZ30"}, Patient: spa.Patient{Borough: "Bromley"}}})
		return id
	}
	long := submit(0)
	const tests = 1500
	for j := range tests {
		appendTo(long, fmt.Sprintf("%s-%d", long, j+1), spa.InfectionTestRecorded{Test: spa.InfectionTest{Type: spa.TestTypeLateralFlow, TakenAt: at, Result: spa.TestResultNegative}})
	}
	const offers = 600
	for i := 1; i <= offers; i++ {
		id := submit(i)
		appendTo(id, id+"-offer", spa.OfferMade{AssignmentID: spa.AssignmentIDFor(id, 1), ProviderODS: "BUSY1", Service: spa.ServiceHomeCareReablement})
	}

	runWorker(t, nc, store, worker.Config{DataDir: t.TempDir(), ID: "replies", Scheduler: scheduler.Config{Disabled: true}})
	reads := query.NewClient(jetstreamtest.Connect(t, srv))
	end := last[spa.ReferralIDFor(fmt.Sprintf("replies-%04d", offers))]
	poll(t, "worker serving", func() bool {
		st, err := reads.Status(ctx)
		return err == nil && st.Applied >= end
	})

	got, err := reads.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: long, MinSequence: end})
	if err != nil {
		t.Fatal(err)
	}
	h := got.GetHistory()
	if !got.GetHistoryTruncated() || len(h) == 0 || len(h) > tests || h[len(h)-1].GetSequence() != last[long] {
		t.Fatalf("long history: truncated %v, %d events, last %d (want %d)", got.GetHistoryTruncated(), len(h), h[len(h)-1].GetSequence(), last[long])
	}
	for i := 1; i < len(h); i++ {
		if h[i].GetSequence() <= h[i-1].GetSequence() {
			t.Fatalf("history out of order at %d", i)
		}
	}

	if _, err := reads.ListAssignments(ctx, &spav1.ListAssignmentsRequest{ProviderOds: "BUSY1", PageSize: 500}); spa.KindOf(err) != spa.KindTooLarge {
		t.Fatalf("a page larger than a message: %v, want KindTooLarge", err)
	}
	seen := map[string]int{}
	req := &spav1.ListAssignmentsRequest{ProviderOds: "BUSY1", PageSize: 100}
	pages := 0
	for {
		page, err := reads.ListAssignments(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, a := range page.GetAssignments() {
			seen[a.GetAssignmentId()]++
		}
		if page.GetNextPageToken() == "" {
			break
		}
		req.PageToken = page.GetNextPageToken()
	}
	if len(seen) != offers || pages != offers/100 {
		t.Fatalf("%d assignments in %d pages, want %d in %d", len(seen), pages, offers, offers/100)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s listed %d times", id, n)
		}
	}
	req.Status = spav1.TaskStatus_TASK_STATUS_ACCEPTED
	if _, err := reads.ListAssignments(ctx, req); spa.KindOf(err) != spa.KindInvalid {
		t.Fatalf("a page token with other filters: %v, want KindInvalid", err)
	}

	start := time.Now()
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	if _, err := reads.ListReferrals(tctx, &spav1.ListReferralsRequest{MinSequence: end + 1000}); spa.KindOf(err) != spa.KindOutOfRange {
		t.Fatalf("a token beyond the log: %v, want KindOutOfRange", err)
	}
	refused := time.Since(start)
	// However short the deadline, the token is found beyond the log rather
	// than waited for until the deadline. (One of a few tries must say so:
	// a busy machine may take the whole of a short deadline.)
	outOfRange := 0
	for range 5 {
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		_, err := reads.ListReferrals(sctx, &spav1.ListReferralsRequest{MinSequence: end + 1000})
		scancel()
		switch spa.KindOf(err) {
		case spa.KindOutOfRange:
			outOfRange++
		case spa.KindDeadlineExceeded:
		default:
			t.Fatalf("a token beyond the log, 1 s deadline: %v", err)
		}
	}
	if outOfRange == 0 {
		t.Fatal("a token beyond the log with a 1 s deadline: DEADLINE_EXCEEDED every time, want OUT_OF_RANGE")
	}
	t.Logf("history of %d events cut to the newest %d; %d assignments in %d pages; a token beyond the log refused in %s (1 s deadline: %d of 5 OUT_OF_RANGE)",
		tests+1, len(h), offers, pages, refused.Round(time.Millisecond), outOfRange)
}
