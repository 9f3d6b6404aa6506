package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"spa/internal/await"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/referraltest"
	"spa/internal/signing"
	"spa/internal/spa"
	"spa/internal/worker"
)

// TestTwoWorkersNeverOverAllocate races two workers' routers over scarce
// capacity: 200 referrals, 20 units in all. Replaying the log must show
// that no provider's free units ever went below zero, that at most 20
// reservations were live at any point and exactly 20 at the end, and that
// no referral held two live offers.
func TestTwoWorkersNeverOverAllocate(t *testing.T) {
	t.Parallel()
	srv := jetstreamtest.Start(t)
	url := srv.ClientURL()
	nc := jetstreamtest.Connect(t, srv)
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	keys := t.TempDir()
	if _, err := signing.WriteKeyPair(keys, "spa-test"); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--nats-url", url, "--data-dir", t.TempDir(), "--worker-id", "worker-1", "--signing-key", filepath.Join(keys, signing.KeyFile))

	// The second worker runs the very code spa-worker runs.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, nc, store, worker.Config{DataDir: t.TempDir(), ID: "worker-2", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker-2: %v", err)
		}
	})

	c := clientsOf(s)
	home := spav1.Service_SERVICE_HOME_CARE_REABLEMENT
	for i := range 4 {
		addProvider(t, c, fmt.Sprintf("NQR%02d", i+1), 5, nil, home)
	}
	const referrals, units = 200, 20
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if _, err := c.referrals.SubmitReferral(callCtx(t), &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("race-%04d", i), Referral: referraltest.Details(i)}); err != nil {
					t.Errorf("submit %d: %v", i, err)
				}
			}
		}()
	}
	for i := range referrals {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	// Wait until every referral is offered or queued.
	count := func(st spav1.ReferralStatus) int {
		n := 0
		req := &spav1.ListReferralsRequest{Status: st, PageSize: 500}
		res, err := c.referrals.ListReferrals(callCtx(t), req)
		if err == nil {
			n = len(res.GetReferrals())
		}
		return n
	}
	await.True(t, 60*time.Second, "all referrals routed", func() bool {
		return count(spav1.ReferralStatus_REFERRAL_STATUS_OFFERED)+count(spav1.ReferralStatus_REFERRAL_STATUS_AWAITING_CAPACITY) == referrals
	})
	if got := count(spav1.ReferralStatus_REFERRAL_STATUS_OFFERED); got != units {
		t.Fatalf("%d referrals offered, want %d", got, units)
	}

	// Replay the whole log.
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, jetstream.StreamName, natsjs.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	last, err := store.LastSequence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	free := map[string]int32{}
	live := map[string]string{} // assignment -> referral
	liveByReferral := map[string]int{}
	routedBy := map[string]int{}
	maxLive := 0
	for seq := uint64(0); seq < last; {
		msg, err := cons.Next(natsjs.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		md, _ := msg.Metadata()
		seq = md.Sequence.Stream
		rec, err := codec.UnmarshalRecord(seq, msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		if rec.Actor.Role == "spa-router" {
			routedBy[rec.Actor.User]++
		}
		switch e := rec.Event.(type) {
		case spa.CapacityUpdated:
			free[rec.AggregateID] = e.Capacity[0].Available
		case spa.CapacityReserved:
			free[rec.AggregateID]--
			if free[rec.AggregateID] < 0 {
				t.Fatalf("sequence %d: %s promised a unit it did not have", seq, rec.AggregateID)
			}
			if _, dup := live[e.AssignmentID]; dup {
				t.Fatalf("sequence %d: %s reserved twice", seq, e.AssignmentID)
			}
			live[e.AssignmentID] = e.ReferralID
			liveByReferral[e.ReferralID]++
			if liveByReferral[e.ReferralID] > 1 {
				t.Fatalf("sequence %d: %s holds two live offers", seq, e.ReferralID)
			}
		case spa.CapacityReleased:
			free[rec.AggregateID]++
			delete(live, e.AssignmentID)
			liveByReferral[e.ReferralID]--
		}
		maxLive = max(maxLive, len(live))
	}
	if len(live) != units || maxLive != units {
		t.Fatalf("%d live reservations at the end, at most %d at any time; want %d", len(live), maxLive, units)
	}
	t.Logf("%d events; routing steps by worker: %v", last, routedBy)
}
