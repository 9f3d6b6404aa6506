package fault

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/query"
)

// TestWorkerKills runs a nats-server, a spa-server that takes commands
// (--worker=false) and one spa-worker process, and kills the worker with
// SIGKILL twenty times while referrals are submitted, starting it again
// on the same data directory each time: at random moments after it
// starts, once it answers its status (catching up), and once it serves.
// Afterwards every acknowledged referral is on the board and in the log
// exactly once, resubmitting every one appends nothing, and spa-ctl
// rebuild finds the live read model equal to one rebuilt from the log.
func TestWorkerKills(t *testing.T) {
	slow(t)
	const kills = 20
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("fault schedule seed %d", seed)

	natsPort, grpcPort := freePort(t), freePort(t)
	url, addr := natsURL(natsPort), localAddr(grpcPort)
	natsDir, serverDir, workerDir := t.TempDir(), t.TempDir(), t.TempDir()
	ns := newProc(t, "nats-server", program(t, natsServer), "-a", "127.0.0.1", "-p", itoa(natsPort), "-js", "-sd", natsDir)
	ns.start()
	nc := connect(t, url)
	initStreams(t, url, 1)

	const workerID = "fault-worker"
	key := signingKey(t)
	w := newProc(t, "spa-worker", program(t, spaWorker), "--nats-url", url, "--data-dir", workerDir,
		"--worker-id", workerID, "--scheduler=false", "--signing-key", key)
	s := newProc(t, "spa-server", program(t, spaServer), "--listen", addr, "--nats-url", url,
		"--worker=false", "--data-dir", serverDir, "--signing-key", key)
	w.start()
	s.start()
	conn := dial(t, addr)
	waitServing(t, conn, s, time.Now())
	client := spav1.NewReferralServiceClient(conn)
	wc := query.NewClient(nc)
	status := func() (query.WorkerStatus, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return wc.WorkerStatus(ctx, workerID)
	}

	l := startLoad(t, client, "wk", 8, 50, 1500, 3*time.Minute)
	var toServing []time.Duration
	started, servedAt := time.Now(), time.Duration(0) // the first run serves
	// The worker's state at the last poll: 0 no answer, 1 catching up
	// (answers its status, does not serve queries yet), 2 serving.
	state := 0
	// observe polls the worker's status until cond holds; it records when
	// the worker first serves after its start.
	observe := func(what string, cond func(st query.WorkerStatus, err error) bool) {
		t.Helper()
		await.True(t, startWithin, what, func() bool {
			if !w.running() {
				t.Fatalf("spa-worker exited by itself: %v", w.exitErr())
			}
			st, err := status()
			switch {
			case err != nil:
				state = 0
			case st.Serving:
				state = 2
			default:
				state = 1
			}
			if err == nil && st.Serving && servedAt < 0 {
				servedAt = time.Since(started)
				toServing = append(toServing, servedAt)
			}
			if err == nil && st.Halt != nil {
				t.Fatalf("projection halted: %+v", st.Halt)
			}
			return cond(st, err)
		})
	}
	var modes, killedWhile [4]int
	for k := range kills {
		mode := k % 4
		modes[mode]++
		switch mode {
		case 0: // a random moment 100ms-1s after start: starting, catching up or serving
			until := started.Add(100*time.Millisecond + randDur(rng, 900*time.Millisecond))
			observe("kill moment", func(query.WorkerStatus, error) bool { return time.Now().After(until) })
		case 1: // once it serves, 0-300ms later
			observe("worker serving", func(st query.WorkerStatus, err error) bool { return err == nil && st.Serving })
			until := time.Now().Add(randDur(rng, 300*time.Millisecond))
			observe("kill moment", func(query.WorkerStatus, error) bool { return time.Now().After(until) })
		case 2: // as soon as it answers its status: catching up, if behind
			observe("worker answers its status", func(_ query.WorkerStatus, err error) bool { return err == nil })
		case 3: // very early: 0-200ms after start
			until := started.Add(randDur(rng, 200*time.Millisecond))
			observe("kill moment", func(query.WorkerStatus, error) bool { return time.Now().After(until) })
		}
		w.kill()
		killedWhile[state]++
		// Stay down while the log grows by a random number of
		// acknowledged referrals, so that the next start has some catching
		// up to do; more before a kill on the first status.
		target := l.acked() + rng.IntN(60)
		if (k+1)%4 == 2 {
			target += 100
		}
		await.True(t, startWithin, "the log grows while the worker is down", func() bool { return l.acked() >= target || l.finished() })
		w.start()
		started, servedAt = time.Now(), -1
	}
	observe("worker serving after the last kill", func(st query.WorkerStatus, err error) bool { return err == nil && st.Serving })
	l.end()
	acks := l.check()
	if len(acks) == 0 {
		t.Fatal("nothing was acknowledged")
	}

	onBoard, missing, dupBoard := checkBoard(t, client, l, acks)
	replayed := resubmit(t, client, l, acks)
	audit := spav1.NewAuditServiceClient(conn)
	logged, lost, dupLog := checkLog(t, audit, acks)
	ctlRebuild(t, url, "", workerID)

	t.Logf("kills: %d (modes: %d at 100ms-1s, %d once serving, %d on first status, %d at 0-200ms)", kills, modes[0], modes[1], modes[2], modes[3])
	t.Logf("the worker was killed %d times before it answered its status, %d while catching up, %d while serving", killedWhile[0], killedWhile[1], killedWhile[2])
	t.Logf("acknowledged referrals: %d, on the board: %d, missing: %d, duplicates on the board: %d", len(acks), onBoard, missing, dupBoard)
	t.Logf("in the log: %d submissions; acknowledged but lost: %d, duplicates: %d; resubmitted: %d answered as replays, appending nothing", logged, lost, dupLog, replayed)
	t.Logf("restart to serving (%d of the %d restarts got that far before the next kill): %s", len(toServing), kills, durations(toServing))
}

// initStreams runs `spa-ctl init` until it succeeds (a cluster may still
// be electing its meta leader).
func initStreams(t testing.TB, url string, replicas int) {
	t.Helper()
	start := time.Now()
	for {
		out, errOut, err := runCtl(t, time.Minute, "init", "--nats-url", url, "--replicas", itoa(replicas))
		if err == nil {
			t.Logf("spa-ctl init (%s):\n%s%s", time.Since(start).Round(time.Millisecond), out, errOut)
			return
		}
		if time.Since(start) > startWithin {
			t.Fatalf("spa-ctl init: %v\n%s%s", err, out, errOut)
		}
		sleep(context.Background(), 200*time.Millisecond)
	}
}

// randDur returns a random duration in [0, d).
func randDur(rng *rand.Rand, d time.Duration) time.Duration {
	return time.Duration(rng.Int64N(int64(d)))
}
