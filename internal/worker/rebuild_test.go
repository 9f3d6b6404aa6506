package worker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/query"
	"spa/internal/scheduler"
	"spa/internal/spa"
	"spa/internal/worker"
)

// TestRebuildFromTheLogWhileServing appends 10,000 events to JetStream,
// then rebuilds the worker's read model from the log while queries run and
// more events arrive: the digests at the swap agree and no query fails.
func TestRebuildFromTheLogWhileServing(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 10,000 events")
	}
	t.Parallel()
	srv := jetstreamtest.Start(t)
	nc := jetstreamtest.Connect(t, srv)
	ctx := context.Background()
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	// Referrals that still meet a criterion to reside: the router has
	// nothing to add, so the log holds exactly what the test appends.
	const referrals, perReferral = 1000, 10
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	last := map[string]uint64{}
	appendEvent := func(i, j int) {
		id := spa.ReferralIDFor(fmt.Sprintf("rebuild-%04d", i))
		var e spa.Event = spa.InfectionTestRecorded{Test: spa.InfectionTest{Type: spa.TestTypeLateralFlow, TakenAt: at, Result: spa.TestResultNegative}}
		if j == 0 {
			e = spa.ReferralSubmitted{RequestID: fmt.Sprintf("rebuild-%04d", i), Details: spa.Details{CriteriaMet: []spa.Criterion{spa.CriterionOxygen},
				Episode: spa.Episode{SiteODS: "RJZ30"}, Patient: spa.Patient{Borough: "Bromley"}}}
		}
		seq, err := store.Append(ctx, spa.Record{EventID: fmt.Sprintf("%s-%d", id, j), AggregateID: id, OccurredAt: at, RecordedAt: at, Event: e}, last[id])
		if err != nil {
			t.Fatal(err)
		}
		last[id] = seq
	}
	for j := range perReferral - 1 {
		for i := range referrals {
			appendEvent(i, j)
		}
	}

	runWorker(t, nc, store, worker.Config{DataDir: t.TempDir(), ID: "rebuilder", Scheduler: scheduler.Config{Disabled: true}})
	reads := query.NewClient(jetstreamtest.Connect(t, srv))
	poll(t, "worker caught up", func() bool {
		st, err := reads.Status(ctx)
		return err == nil && st.Applied == uint64((perReferral-1)*referrals)
	})

	// Queries run throughout; the last thousand events arrive meanwhile.
	qctx, stopQueries := context.WithCancel(ctx)
	var queries, failures atomic.Int64
	var wg sync.WaitGroup
	for q := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; qctx.Err() == nil; i++ {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				var err error
				if q == 0 {
					_, err = reads.ListReferrals(cctx, &spav1.ListReferralsRequest{PageSize: 100})
				} else {
					_, err = reads.GetReferral(cctx, &spav1.GetReferralRequest{ReferralId: spa.ReferralIDFor(fmt.Sprintf("rebuild-%04d", i%referrals))})
				}
				cancel()
				queries.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("query failed during the rebuild: %v", err)
				}
			}
		}()
	}
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		for i := range referrals {
			appendEvent(i, perReferral-1)
		}
	}()
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer rcancel()
	workers, err := reads.Workers(rctx, 200*time.Millisecond)
	if err != nil || len(workers) != 1 || workers[0].Worker != "rebuilder" {
		t.Fatalf("workers: %+v, %v", workers, err)
	}
	if _, err := reads.Rebuild(rctx, "rebuilder", false); err != nil {
		t.Fatal(err)
	}
	// A second start while it runs is refused as busy.
	if st, err := reads.Rebuild(rctx, "rebuilder", false); spa.KindOf(err) != spa.KindFailedPrecondition {
		t.Errorf("second rebuild: %+v, %v; want busy", st, err)
	}
	var res *query.RebuildStatus
	var progress []string
	poll(t, "rebuild finished", func() bool {
		st, err := reads.WorkerStatus(rctx, "rebuilder")
		if err != nil || st.Rebuild == nil {
			return false
		}
		res = st.Rebuild
		if res.State == query.RebuildRunning {
			progress = append(progress, fmt.Sprintf("%s %d/%d", res.Phase, res.Applied, res.Target))
		}
		return res.State != query.RebuildRunning
	})
	<-appended
	stopQueries()
	wg.Wait()
	if res.State != query.RebuildSwapped || res.Error != "" || res.Live != res.Rebuilt || res.ComparedAt < uint64((perReferral-1)*referrals) {
		t.Fatalf("rebuild: %+v", res)
	}
	poll(t, "all events applied after the swap", func() bool {
		st, err := reads.Status(ctx)
		return err == nil && st.Applied == uint64(perReferral*referrals)
	})
	t.Logf("rebuilt and compared at sequence %d of %d; digests %s; swap took %.2f ms; progress seen %v; %d queries ran, %d failed",
		res.ComparedAt, perReferral*referrals, res.Rebuilt[:12], res.SwapMillis, progress, queries.Load(), failures.Load())
}
