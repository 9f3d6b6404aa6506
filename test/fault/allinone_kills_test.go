package fault

import (
	"math/rand/v2"
	"testing"
	"time"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/natsauth"
)

// TestAllInOneKills kills the all-in-one spa-server (embedded NATS with
// every write fsynced, its worker inside) with SIGKILL ten times while
// referrals are submitted, and starts it again on the same data
// directory. Submitters retry UNAVAILABLE and lost connections with the
// same request id. Afterwards every acknowledged referral is in the log
// and on the board exactly once, and once the log has settled,
// resubmitting every acknowledged request leaves its last sequence where
// it was.
func TestAllInOneKills(t *testing.T) {
	slow(t)
	t.Parallel() // beside the other light parallel test, once the heavy ones are done
	const kills = 10
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("fault schedule seed %d", seed)

	natsPort, grpcPort := freePort(t), freePort(t)
	url, addr := natsURL(natsPort), localAddr(grpcPort)
	dataDir := t.TempDir()
	const workerID = "fault-aio"
	s := newProc(t, "spa-server", program(t, spaServer), "--listen", addr, "--data-dir", dataDir,
		"--nats-listen", localAddr(natsPort), "--worker-id", workerID, "--scheduler=false")
	s.start()
	conn := dial(t, addr)
	first := waitServing(t, conn, s, time.Now())
	t.Logf("first start to SERVING: %s", first.Round(time.Millisecond))
	client := spav1.NewReferralServiceClient(conn)

	l := startLoad(t, client, "aio", 8, 60, 1500, 3*time.Minute)
	var toServing []time.Duration
	started, servedAt := time.Now(), first // the first run is serving
	// poll reports whether the server is SERVING, and records when it
	// first was since its start.
	poll := func() bool {
		if !s.running() {
			t.Fatalf("spa-server exited by itself: %v", s.exitErr())
		}
		ok := serving(conn)
		if ok && servedAt < 0 {
			servedAt = time.Since(started)
			toServing = append(toServing, servedAt)
		}
		return ok
	}
	beforeServing := 0
	for k := range kills {
		if k%3 == 2 {
			// Early: 0-300ms after the start, while it recovers its
			// JetStream files and catches up, or just after.
			until := started.Add(randDur(rng, 300*time.Millisecond))
			await.True(t, startWithin, "kill moment", func() bool {
				poll()
				return time.Now().After(until)
			})
		} else {
			await.True(t, startWithin, "spa-server SERVING", poll)
			// Under load: once a random number of submissions have
			// been acknowledged by this run.
			target := l.acked() + 20 + rng.IntN(60)
			await.True(t, startWithin, "acknowledgements after the restart", func() bool {
				poll()
				return l.acked() >= target || l.finished()
			})
		}
		if servedAt < 0 {
			beforeServing++
		}
		s.kill()
		s.start()
		started, servedAt = time.Now(), -1
	}
	await.True(t, startWithin, "spa-server SERVING after the last kill", poll)
	l.end()
	acks := l.check()
	if len(acks) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	gap, gapAt := longestGap(acks, l.begun)

	onBoard, missing, dupBoard := checkBoard(t, client, l, acks)
	audit := spav1.NewAuditServiceClient(conn)
	logged, lost, dupLog := checkLog(t, audit, acks)

	// Let the routers finish (prompts a killed run held come back after
	// their ack wait), then resubmit everything: the log must not move.
	nc := connect(t, url, embeddedAs(t, dataDir, natsauth.Admin)...)
	ev := newEvents(t, nc)
	last, settled := ev.settle(t, workerApplied(nc, workerID))
	replayed := resubmit(t, client, l, acks)
	info, err := ev.info()
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != last {
		t.Errorf("resubmitting appended: the log's last sequence is %d, was %d", info.State.LastSeq, last)
	}
	ctlRebuild(t, url, embeddedNkey(dataDir, natsauth.Admin), workerID)

	t.Logf("kills: %d (%d before the server reported SERVING)", kills, beforeServing)
	t.Logf("acknowledged: %d, on the board: %d, lost: %d (log) %d (board), duplicates: %d (log) %d (board)", len(acks), onBoard, lost, missing, dupLog, dupBoard)
	t.Logf("in the log: %d submissions; log settled at sequence %d after %s; resubmitted: %d replays, last sequence then %d",
		logged, last, settled.Round(time.Millisecond), replayed, info.State.LastSeq)
	t.Logf("longest time without an acknowledgement: %s, from %s into the load", gap.Round(time.Millisecond), gapAt.Sub(l.begun).Round(time.Millisecond))
	t.Logf("restart to SERVING (gRPC health; %d of the %d restarts got that far before the next kill): %s", len(toServing), kills, durations(toServing))
}
