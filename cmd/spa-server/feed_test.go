package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"spa/internal/authz"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/spa"
)

// TestThousandWatchers has 1,000 providers watch one server at once, each
// as itself (a provider watches only its own), from cursor 0, while two
// offers for each are appended to the log: every watcher receives exactly
// its own two, in order. It logs what a watch costs the process (server
// and client share it): goroutines and heap per open watch.
func TestThousandWatchers(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 watches: not with -short")
	}
	// Not parallel: it runs alone, so as not to slow the others.
	const n = 1000
	natsURL := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dir := t.TempDir()
	// All watches come from one address: one caller to the limits.
	s := startServer(t, "--data-dir", dir, "--nats-listen", natsURL, "--scheduler=false", "--watch-heartbeat", "500ms",
		"--limit-streams", fmt.Sprint(n+10), "--no-sync")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	store := serverStore(t, ctx, natsURL, dir)
	ods := func(i int) string { return fmt.Sprintf("W%04d", i) }

	idleG, idleHeap := usage()
	type received struct {
		seqs []uint64
		err  error
	}
	results := make([]received, n)
	var wg sync.WaitGroup
	var running sync.WaitGroup // each watch has had its first message
	wctx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	for i := range n {
		wg.Add(1)
		running.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			first := true
			defer func() {
				if first {
					running.Done()
				}
			}()
			stream, err := spav1.NewAssignmentServiceClient(s.conn).WatchAssignments(as(wctx, ods(i), authz.Provider), &spav1.WatchAssignmentsRequest{ProviderOds: ods(i)})
			if err != nil {
				r.err = err
				return
			}
			for len(r.seqs) < 2 {
				res, err := stream.Recv()
				if err != nil {
					r.err = err
					return
				}
				if first {
					first = false
					running.Done()
				}
				if e := res.GetEvent(); e != nil {
					if p := e.GetEnvelope().GetOfferMade().GetProviderOds(); p != ods(i) {
						r.err = fmt.Errorf("received an offer for %q", p)
						return
					}
					r.seqs = append(r.seqs, e.GetSequence())
				}
			}
		}()
	}
	running.Wait()
	openG, openHeap := usage()

	// Two offers for each provider, appended by 8 writers.
	start := time.Now()
	want := make([][]uint64, n)
	var writers sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := w; i < n; i += 8 {
				for k := range 2 {
					id := spa.ReferralIDFor(fmt.Sprintf("thousand-%d-%d", k, i))
					at := time.Now().UTC()
					rec := spa.Record{EventID: "offer-" + id, AggregateID: id, OccurredAt: at, RecordedAt: at, Actor: spa.Actor{ODS: "SPA", Role: "router"},
						Event: spa.OfferMade{AssignmentID: id + "-1", ProviderODS: ods(i), Service: spa.ServiceHomeCareReablement}}
					seq, err := store.Append(ctx, rec, 0)
					if err != nil {
						errs <- err
						return
					}
					want[i] = append(want[i], seq)
				}
			}
		}()
	}
	writers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	appended := time.Since(start)
	wg.Wait()
	delivered := time.Since(start)
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("%s: %v", ods(i), r.err)
		}
		if fmt.Sprint(r.seqs) != fmt.Sprint(want[i]) {
			t.Fatalf("%s received %v, the log has %v", ods(i), r.seqs, want[i])
		}
	}
	t.Logf("%d watches: %.1f goroutines and %.1f KiB of heap each in this process (server and client); %d offers appended in %s, all delivered %s after the first",
		n, float64(openG-idleG)/n, float64(openHeap-idleHeap)/1024/n, 2*n, appended.Round(time.Millisecond), delivered.Round(time.Millisecond))
}

// usage returns the process's goroutines and live heap bytes.
func usage() (int, int64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), int64(m.HeapAlloc)
}

// serverStore connects to a running all-in-one server's NATS as the
// server identity and returns its event store, to append to the log
// directly.
func serverStore(t *testing.T, ctx context.Context, natsURL, dir string) *jetstream.Store {
	t.Helper()
	opts, err := natsauth.Client{Identity: natsauth.Server, NkeyFile: natsauth.SeedFile(filepath.Join(dir, "nats"), natsauth.Server)}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+natsURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	store, err := jetstream.Open(ctx, nc, jetstream.Requirements{})
	if err != nil {
		t.Fatal(err)
	}
	return store
}
