package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/worker"
)

// buildBinary builds a main package into dir.
func buildBinary(t *testing.T, dir, pkg, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
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

// start starts a child process, killed when the test ends; its output is
// shown with -v.
func start(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

// TestExternalNATSWorkerKilled runs the system against a separately started
// nats-server process, with spa-server taking commands (no worker inside)
// and spa-worker as its own process. 1,000 referrals are submitted while the
// worker is killed with SIGKILL, later stopped with SIGTERM, and restarted;
// the board must then hold every referral exactly once, and a read model
// rebuilt from the log must equal the live one.
func TestExternalNATSWorkerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and spa-worker")
	}
	t.Parallel()
	bin := t.TempDir()
	natsBin := buildBinary(t, bin, "github.com/nats-io/nats-server/v2", "nats-server")
	workerBin := buildBinary(t, bin, "spa/cmd/spa-worker", "spa-worker")

	port := freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	start(t, natsBin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir())
	var nc *nats.Conn
	await.True(t, 30*time.Second, "nats-server up", func() bool {
		var err error
		nc, err = nats.Connect(natsURL)
		return err == nil
	})
	defer nc.Close()
	// The streams' owner makes them (spa-ctl init does this on a cluster).
	if _, err := jetstream.Provision(callCtx(t), nc, jetstream.Setup{}); err != nil {
		t.Fatal(err)
	}
	reads := worker.NewClient(nc)
	applied := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := reads.Status(ctx)
		if err != nil {
			return 0
		}
		return st.Applied
	}

	workerDir := t.TempDir()
	runWorker := func() *exec.Cmd {
		// No scheduler: alerts fall due by the wall clock, and the digests
		// compared below must cover a log that has stopped growing.
		return start(t, workerBin, "--nats-url", natsURL, "--data-dir", workerDir, "--scheduler=false")
	}
	w := runWorker()
	s := startServer(t, "--nats-url", natsURL, "--worker=false", "--data-dir", t.TempDir())
	ctx := callCtx(t)

	const total = 1000
	next := 0
	var lastSeq uint64
	submit := func(upTo int) {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		jobs := make(chan int)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					res, err := s.client.SubmitReferral(callCtx(t), &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("restart-test-%04d", i), Referral: referral(i)})
					if err != nil {
						t.Errorf("submit %d: %v", i, err)
						continue
					}
					mu.Lock()
					lastSeq = max(lastSeq, res.GetSequence())
					mu.Unlock()
				}
			}()
		}
		for ; next < upTo; next++ {
			jobs <- next
		}
		close(jobs)
		wg.Wait()
	}

	submit(400)
	t.Logf("worker killed (SIGKILL) after 400 submissions; it had applied sequence %d", applied())
	if err := w.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.Wait()
	submit(700) // while no worker runs
	w = runWorker()
	submit(850)
	// SIGTERM once the worker is past start-up and handles signals.
	await.True(t, 30*time.Second, "restarted worker answers", func() bool { return applied() > 0 })
	t.Logf("worker stopped (SIGTERM) after 850 submissions; it had applied sequence %d", applied())
	if err := w.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(); err != nil {
		t.Fatalf("worker did not stop cleanly on SIGTERM: %v", err)
	}
	w = runWorker()
	submit(total)
	if t.Failed() {
		t.FailNow()
	}

	// Submitting the same 1,000 again changes nothing.
	before := lastSeq
	next = 0
	submit(total)
	if lastSeq != before {
		t.Fatalf("resubmission appended: last sequence %d, was %d", lastSeq, before)
	}

	seen := map[string]bool{}
	req := &spav1.ListReferralsRequest{PageSize: 500, MinSequence: lastSeq}
	for {
		page, err := s.client.ListReferrals(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.GetReferrals() {
			if seen[r.GetReferralId()] {
				t.Fatalf("%s is on the board twice", r.GetReferralId())
			}
			seen[r.GetReferralId()] = true
		}
		if page.GetNextPageToken() == "" {
			break
		}
		req.PageToken = page.GetNextPageToken()
	}
	if len(seen) != total {
		t.Fatalf("board holds %d referrals, want %d", len(seen), total)
	}

	// Rebuild: the same worker, its read model deleted, replays the log from
	// sequence 1 and ends with the same digest. First let routing settle:
	// the model has applied the whole log, and the log stopped growing.
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	streamLast := func() uint64 {
		info, err := js.Stream(ctx, "SPA_EVENTS")
		if err != nil {
			return 0
		}
		return info.CachedInfo().State.LastSeq
	}
	var settled uint64
	stable := 0
	await.True(t, 60*time.Second, "routing settled", func() bool {
		last := streamLast()
		if last == settled && applied() == last {
			stable++
		} else {
			stable = 0
		}
		settled = last
		return stable >= 10 // unchanged for ten polls in a row
	})
	live, err := reads.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.Process.Signal(syscall.SIGTERM)
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(workerDir, worker.ReadModelFile)); err != nil {
		t.Fatal(err)
	}
	runWorker()
	await.True(t, 60*time.Second, "rebuilt model caught up", func() bool { return applied() >= live.Applied })
	rebuilt, err := reads.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rebuilt != live {
		t.Fatalf("rebuilt %+v, live %+v", rebuilt, live)
	}
	t.Logf("board holds %d referrals once each; digest %s at sequence %d equals after rebuild", len(seen), live.Digest, live.Applied)
}
