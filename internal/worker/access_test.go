package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/query"
	"spa/internal/scheduler"
	"spa/internal/spa"
	"spa/internal/worker"
)

// TestAccessIndex: a worker indexes the access log, the records of
// before ADR 33 (one per referral, on its subject) and the calls of since
// (one naming every referral read) alike, and answers by referral and by
// patient, a page at a time, with every record acknowledged before the
// query; after a restart it goes on from where it was.
func TestAccessIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nc := jetstreamtest.Connect(t, jetstreamtest.Start(t))
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	access, err := store.OpenAccessLog(ctx, jetstream.Requirements{})
	if err != nil {
		t.Fatal(err)
	}
	first, second := spa.ReferralIDFor("index-first"), spa.ReferralIDFor("index-second")
	const nhs = "9434765919"
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

	// Two records as written before ADR 33: before the patient was in the
	// subject, and after.
	for i, subject := range []string{"spa.access." + first, "spa.access." + first + "." + nhs} {
		r := &spav1.AccessRecord{ReferralId: first, Actor: &spav1.Actor{Ods: "RJZ30", Role: "coordinator", User: fmt.Sprint("older-", i)},
			Purpose: "direct-care", Method: "/spa.v1.ReferralService/GetReferral", At: timestamppb.New(at), RequestId: fmt.Sprint("older-", i)}
		if i == 1 {
			r.NhsNumber = nhs
		}
		data, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.JetStream().Publish(ctx, subject, data); err != nil {
			t.Fatal(err)
		}
	}
	// A board page of 120 rows, two of them the patient's, and a refused
	// read.
	board := []spa.Accessed{{ReferralID: first, NHSNumber: nhs}}
	for i := range 118 {
		board = append(board, spa.Accessed{ReferralID: spa.ReferralIDFor(fmt.Sprint("row-", i)), NHSNumber: fmt.Sprintf("94347658%02d", i%100)})
	}
	board = append(board, spa.Accessed{ReferralID: second, NHSNumber: nhs})
	record := func(user string, refused bool, read ...spa.Accessed) {
		t.Helper()
		acc := spa.Access{Actor: spa.Actor{ODS: "RJZ30", Role: "coordinator", User: user}, Purpose: "care-coordination",
			Method: "/spa.v1.ReferralService/ListReferrals", At: at.Add(time.Minute), RequestID: user, Refused: refused}
		if err := access.Record(ctx, acc, read); err != nil {
			t.Fatal(err)
		}
	}
	record("board", false, board...)
	record("refused", true, spa.Accessed{ReferralID: first, NHSNumber: nhs})

	reads := query.NewClient(nc)
	list := func(req *spav1.ListAccessRequest) []string {
		t.Helper()
		var got []string
		for {
			last, err := access.Last(ctx)
			if err != nil {
				t.Fatal(err)
			}
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			res, err := reads.ListAccess(qctx, req, last)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.GetRecords() {
				got = append(got, fmt.Sprintf("%s %s %s %t", r.GetRequestId(), r.GetReferralId(), r.GetNhsNumber(), r.GetRefused()))
			}
			if req.PageToken = res.GetNextPageToken(); req.PageToken == "" {
				return got
			}
		}
	}
	cfg := worker.Config{DataDir: t.TempDir(), ID: "access-index", Scheduler: scheduler.Config{Disabled: true}}
	stop := runWorker(t, nc, store, cfg)
	ready := func() {
		t.Helper()
		poll(t, "the access index answers", func() bool {
			_, err := reads.ListAccess(ctx, &spav1.ListAccessRequest{ReferralId: first}, 0)
			return err == nil
		})
	}
	ready()
	byReferral := []string{"older-0 " + first + "  false", "older-1 " + first + " " + nhs + " false", "board " + first + " " + nhs + " false", "refused " + first + " " + nhs + " true"}
	byPatient := []string{"older-1 " + first + " " + nhs + " false", "board " + first + " " + nhs + " false", "board " + second + " " + nhs + " false", "refused " + first + " " + nhs + " true"}
	for _, size := range []int32{1, 3, 100} {
		if got := list(&spav1.ListAccessRequest{ReferralId: first, PageSize: size}); fmt.Sprint(got) != fmt.Sprint(byReferral) {
			t.Errorf("page size %d: the referral's reads\n%q, want\n%q", size, got, byReferral)
		}
		if got := list(&spav1.ListAccessRequest{NhsNumber: nhs, PageSize: size}); fmt.Sprint(got) != fmt.Sprint(byPatient) {
			t.Errorf("page size %d: the patient's reads\n%q, want\n%q", size, got, byPatient)
		}
	}
	if got := list(&spav1.ListAccessRequest{ReferralId: board[60].ReferralID}); len(got) != 1 || got[0] != "board "+board[60].ReferralID+" "+board[60].NHSNumber+" false" {
		t.Errorf("a row of the board: %q", got)
	}

	// A read recorded now is in the next answer; after a restart, too.
	stop()
	record("after-restart", false, spa.Accessed{ReferralID: second, NHSNumber: nhs})
	runWorker(t, nc, store, cfg)
	ready()
	record("while-serving", false, spa.Accessed{ReferralID: second, NHSNumber: nhs})
	want := []string{"board " + second + " " + nhs + " false", "after-restart " + second + " " + nhs + " false", "while-serving " + second + " " + nhs + " false"}
	if got := list(&spav1.ListAccessRequest{ReferralId: second}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after a restart: %q, want %q", got, want)
	}
}

// TestAccessIndexHalts: an access record that cannot be read halts the
// access index at it (it is never stepped over): ListAccess is then
// unavailable, while the worker's read model answers.
func TestAccessIndexHalts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nc := jetstreamtest.Connect(t, jetstreamtest.Start(t))
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	if _, err := store.JetStream().Publish(ctx, jetstream.AccessCallSubject, []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	var logged lockedBuffer
	runWorker(t, nc, store, worker.Config{DataDir: t.TempDir(), ID: "halted-index", Scheduler: scheduler.Config{Disabled: true},
		Log: slog.New(slog.NewTextHandler(&logged, nil))})
	reads := query.NewClient(nc)
	poll(t, "the read model answers and the access index halted at sequence 1", func() bool {
		st, err := reads.WorkerStatus(ctx, "halted-index")
		return err == nil && st.Serving && strings.Contains(logged.String(), "access index halted") && strings.Contains(logged.String(), "sequence=1 ")
	})
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := reads.ListAccess(qctx, &spav1.ListAccessRequest{ReferralId: spa.ReferralIDFor("any")}, 1)
	if k := spa.KindOf(err); k != spa.KindUnavailable {
		t.Fatalf("ListAccess with the index halted: %v (%v), want unavailable", err, k)
	}
}
