package fault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/query"
)

// electionWindow is how long after a node's loss the SPA processes' log
// lines are counted; maxElectionLines is the most any one may write then.
const (
	electionWindow   = 10 * time.Second
	maxElectionLines = 200
)

// TestNodeLoss runs SPA as deploy/README.md documents it on a three-node
// JetStream cluster (every write fsynced): spa-ctl init with three
// replicas, one spa-server and two spa-workers. Under a steady load it
// kills the node that leads SPA_EVENTS, measures how long appends stall,
// brings the node back, then kills one worker and brings it back.
// Afterwards no acknowledged event is lost or duplicated, both read models
// hold every referral once and are equal to each other and to a rebuild,
// and SPA_EVENTS still has three current replicas. It prints how many log
// lines each SPA process wrote during the election.
func TestNodeLoss(t *testing.T) {
	slow(t)
	nodes, urls := startCluster(t, 3)
	nc := connect(t, urls)
	ev := newEvents(t, nc)
	await.True(t, startWithin, "JetStream cluster ready", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := ev.js.AccountInfo(ctx)
		return err == nil
	})
	initStreams(t, urls, 3)

	grpcPort := freePort(t)
	addr := localAddr(grpcPort)
	serverDir, w1Dir, w2Dir := t.TempDir(), t.TempDir(), t.TempDir()
	ids := []string{"fault-w1", "fault-w2"}
	key := signingKey(t)
	workers := []*proc{
		newProc(t, "spa-worker-1", program(t, spaWorker), "--nats-url", urls, "--min-replicas", "3", "--data-dir", w1Dir, "--worker-id", ids[0], "--scheduler=false", "--signing-key", key),
		newProc(t, "spa-worker-2", program(t, spaWorker), "--nats-url", urls, "--min-replicas", "3", "--data-dir", w2Dir, "--worker-id", ids[1], "--scheduler=false", "--signing-key", key),
	}
	s := newProc(t, "spa-server", program(t, spaServer), "--nats-url", urls, "--min-replicas", "3", "--worker=false",
		"--listen", addr, "--data-dir", serverDir, "--signing-key", key)
	s.start()
	for _, w := range workers {
		w.start()
	}
	conn := dial(t, addr)
	waitServing(t, conn, s, time.Now())
	applied := workerApplied(nc, ids...)
	await.True(t, startWithin, "both workers serve", func() bool { _, ok := applied(); return ok })
	client := spav1.NewReferralServiceClient(conn)

	l := startLoad(t, client, "node", 16, 40, 4000, 4*time.Minute)
	await.True(t, startWithin, "the load runs steadily", func() bool { return l.acked() >= 200 })

	// Kill the event stream's leader.
	var oldLeader string
	await.True(t, startWithin, "SPA_EVENTS names its leader", func() bool {
		info, err := ev.info()
		if err == nil && info.Cluster != nil {
			oldLeader = info.Cluster.Leader
		}
		return oldLeader != ""
	})
	leader := nodeNamed(t, nodes, oldLeader)
	ackedBefore := l.acked()
	killAt := time.Now()
	leader.kill()
	var newLeader string
	var electedAfter time.Duration
	var recovered ack
	await.True(t, startWithin, "appends resume and the election window passes", func() bool {
		if newLeader == "" {
			if info, err := ev.info(); err == nil && info.Cluster.Leader != "" && info.Cluster.Leader != oldLeader {
				newLeader, electedAfter = info.Cluster.Leader, time.Since(killAt)
			}
		}
		if recovered.at.IsZero() {
			recovered, _ = l.firstSentAfter(killAt)
		}
		return newLeader != "" && !recovered.at.IsZero() && time.Since(killAt) >= electionWindow
	})
	windowEnd := killAt.Add(electionWindow)
	timeline := []string{fmt.Sprintf("killed %s %s into the load", oldLeader, killAt.Sub(l.begun).Round(time.Millisecond)),
		fmt.Sprintf("first acknowledgement of a submission sent after the kill +%s", recovered.at.Sub(killAt).Round(time.Millisecond)),
		fmt.Sprintf("stream info names the new leader +%s", electedAfter.Round(time.Millisecond))}
	mark := func(what string) {
		timeline = append(timeline, fmt.Sprintf("%s +%s", what, time.Since(killAt).Round(time.Millisecond)))
	}

	// Bring the node back, on the same store, and wait until it has
	// caught up.
	restartAt := time.Now()
	mark("node restarted")
	leader.start()
	await.True(t, startWithin, "SPA_EVENTS has three current replicas again", func() bool { return replicasCurrent(ev, 3) })
	rejoined := time.Since(restartAt)
	mark("node current")

	// Kill one worker, let the log grow, start it again.
	w := workers[1]
	w.kill()
	mark("worker killed")
	target := l.acked() + 40
	await.True(t, startWithin, "acknowledgements while a worker is down", func() bool { return l.acked() >= target || l.finished() })
	wStart := time.Now()
	w.start()
	await.True(t, startWithin, "the restarted worker serves", func() bool { _, ok := applied(); return ok })
	workerServing := time.Since(wStart)
	mark("worker serving again")
	target = l.acked() + 40
	await.True(t, startWithin, "acknowledgements after the worker's restart", func() bool { return l.acked() >= target || l.finished() })
	l.end()
	mark("load ended")
	acks := l.check()
	gap, gapAt := longestGap(acks, l.begun)

	onBoard, missing, dupBoard := checkBoard(t, client, l, acks)
	logged, lost, dupLog := checkLog(t, spav1.NewAuditServiceClient(conn), acks)

	// Settled (the prompts the killed worker's router held come back
	// after their ack wait): both models at the log's last sequence, equal
	// to each other and to a rebuild, and resubmitting appends nothing.
	last, settled := ev.settle(t, applied)
	wc := query.NewClient(nc)
	var digests []query.Status
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d, err := wc.WorkerDigest(ctx, id)
		cancel()
		if err != nil {
			t.Fatalf("digest of %s: %v", id, err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] || digests[0].Applied != last {
		t.Errorf("read models differ: %s %+v, %s %+v; log at %d", ids[0], digests[0], ids[1], digests[1], last)
	}
	replayed := resubmit(t, client, l, acks)
	info, err := ev.info()
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != last {
		t.Errorf("resubmitting appended: the log's last sequence is %d, was %d", info.State.LastSeq, last)
	}
	ctlRebuild(t, urls, "", ids...)
	if info.Config.Replicas != 3 || !replicasCurrent(ev, 3) {
		t.Errorf("SPA_EVENTS: %d replicas configured, cluster %+v", info.Config.Replicas, info.Cluster)
	}

	t.Logf("killed the SPA_EVENTS leader %s after %d acknowledgements; %s was elected %s later",
		oldLeader, ackedBefore, newLeader, electedAfter.Round(time.Millisecond))
	t.Logf("recovery: the first submission sent after the kill was acknowledged %s after the kill (sent %s after it, at sequence %d); longest time without an acknowledgement: %s, from %s after the kill",
		recovered.at.Sub(killAt).Round(time.Millisecond), recovered.sent.Sub(killAt).Round(time.Millisecond), recovered.seq,
		gap.Round(time.Millisecond), gapAt.Sub(killAt).Round(time.Millisecond))
	t.Logf("timeline: %s", strings.Join(timeline, "; "))
	t.Logf("the node came back current in %s; worker %s killed and restarted, serving again in %s", rejoined.Round(time.Millisecond), ids[1], workerServing.Round(time.Millisecond))
	t.Logf("acknowledged: %d, on the board: %d, missing: %d, duplicates on the board: %d", len(acks), onBoard, missing, dupBoard)
	t.Logf("in the log: %d submissions; lost: %d, duplicates: %d; resubmitted: %d replays; log settled at %d after %s",
		logged, lost, dupLog, replayed, last, settled.Round(time.Millisecond))
	t.Logf("read models: %s and %s both at sequence %d, digest %s; SPA_EVENTS: %d replicas, leader %s",
		ids[0], ids[1], digests[0].Applied, digests[0].Digest, info.Config.Replicas, info.Cluster.Leader)
	for _, p := range append([]*proc{s}, workers...) {
		lines := p.out.window(killAt, windowEnd)
		steady := p.out.window(l.begun, killAt)
		t.Logf("log lines of %s in the %s after the node's loss: %d (in the %s of steady load before it: %d)",
			p.name, electionWindow, len(lines), killAt.Sub(l.begun).Round(time.Millisecond), len(steady))
		for _, line := range lines[:min(len(lines), 20)] {
			t.Logf("    %s", line)
		}
		// A handful is the goal; a storm (one line per retry) is a
		// failure.
		if len(lines) > maxElectionLines {
			t.Errorf("%s wrote %d log lines in the %s after the node's loss, more than %d", p.name, len(lines), electionWindow, maxElectionLines)
		}
	}
}

// startCluster writes the config of an n-node JetStream cluster (as
// deploy/nats/node-*.conf, on free ports, each store in a temporary
// directory, every write fsynced) and starts it. It returns the nodes
// and the client URLs, comma separated.
func startCluster(t *testing.T, n int) ([]*proc, string) {
	t.Helper()
	clientPorts, clusterPorts := make([]int, n), make([]int, n)
	var routes, urls []string
	for i := range n {
		clientPorts[i], clusterPorts[i] = freePort(t), freePort(t)
		routes = append(routes, "    nats://"+localAddr(clusterPorts[i]))
		urls = append(urls, natsURL(clientPorts[i]))
	}
	dirs := make([]string, n)
	for i := range n {
		dirs[i] = t.TempDir()
	}
	var nodes []*proc
	for i := range n {
		name := fmt.Sprintf("fault-nats-%d", i+1)
		conf := filepath.Join(dirs[i], name+".conf")
		text := fmt.Sprintf(`server_name: %s
listen: %s

jetstream {
  store_dir: %q
  sync_interval: always
}

cluster {
  name: spa-fault
  listen: %s
  routes: [
%s
  ]
}
`, name, localAddr(clientPorts[i]), filepath.Join(dirs[i], "store"), localAddr(clusterPorts[i]), strings.Join(routes, "\n"))
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		p := newProc(t, name, program(t, natsServer), "-c", conf)
		p.start()
		nodes = append(nodes, p)
	}
	return nodes, strings.Join(urls, ",")
}

// nodeNamed returns the node whose server_name is name.
func nodeNamed(t *testing.T, nodes []*proc, name string) *proc {
	t.Helper()
	for _, p := range nodes {
		if p.name == name {
			return p
		}
	}
	t.Fatalf("no node is named %q", name)
	return nil
}

// replicasCurrent reports whether SPA_EVENTS has a leader and n-1 other
// replicas, each online and current.
func replicasCurrent(ev *events, n int) bool {
	info, err := ev.info()
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != n-1 {
		return false
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			return false
		}
	}
	return true
}
