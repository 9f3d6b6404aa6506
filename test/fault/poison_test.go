package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	ijs "spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/referraltest"
)

// TestPoisonMessage publishes a message that is not an event envelope
// straight into SPA_EVENTS (a plain NATS publish on a referral subject)
// of an all-in-one spa-server. The process stays up: gRPC health answers,
// ReplayEvents streams the message with its decode error, spa-ctl
// workers shows the projection halted at its sequence with the reason,
// and submissions are still acknowledged. After a restart it stays up
// again, halted at the same sequence.
func TestPoisonMessage(t *testing.T) {
	slow(t)
	t.Parallel() // beside the other light parallel test, once the heavy ones are done
	natsPort, grpcPort := freePort(t), freePort(t)
	url, addr := natsURL(natsPort), localAddr(grpcPort)
	dataDir := t.TempDir()
	s := newProc(t, "spa-server", program(t, spaServer), "--listen", addr, "--data-dir", dataDir,
		"--nats-listen", localAddr(natsPort), "--worker-id", "fault-poison", "--scheduler=false")
	s.start()
	conn := dial(t, addr)
	waitServing(t, conn, s, time.Now())
	client := spav1.NewReferralServiceClient(conn)
	audit := spav1.NewAuditServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), settleWithin)
	defer cancel()
	before, err := client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "fault-poison-before", Referral: referraltest.Details(1)})
	if err != nil {
		t.Fatal(err)
	}

	// The server's identity: the one that may append events.
	nc := connect(t, url, embeddedAs(t, dataDir, natsauth.Server)...)
	const subject = "spa.referral.ref-aaaaaaaaaaaaaaaa"
	if err := nc.Publish(subject, []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var poison uint64
	await.True(t, startWithin, "the poison message is in SPA_EVENTS", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		stream, err := js.Stream(ctx, ijs.StreamName)
		if err != nil {
			return false
		}
		msg, err := stream.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			return false
		}
		poison = msg.Sequence
		return true
	})
	t.Logf("poison message stored at sequence %d on %s (the referral before it at %d)", poison, subject, before.GetSequence())

	// The projection halts at it, and the router has seen it.
	halted := waitHalted(t, url, dataDir, poison, subject)
	t.Logf("spa-ctl workers:\n%s", halted)
	await.True(t, startWithin, "the worker logs the halt and the router the undecodable prompt", func() bool {
		out := s.out.text()
		return strings.Contains(out, "projection halted") && strings.Contains(out, "router cannot decode an event")
	})
	// A few seconds on, the router has been handed the poison message
	// again (it is redelivered after 1s, then 2s, ...): still up.
	redelivered := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, ijs.StreamName, ijs.RouterConsumer)
		if err != nil {
			return 0
		}
		d := c.CachedInfo().Delivered
		return d.Consumer - min(d.Consumer, d.Stream)
	}
	from, since := redelivered(), time.Now()
	await.True(t, startWithin, "the router is handed the poison message again", func() bool {
		if !s.running() {
			t.Fatalf("spa-server exited: %v", s.exitErr())
		}
		return redelivered() > from
	})
	t.Logf("the router was handed it again %s later (redeliveries %d, then %d)", time.Since(since).Round(time.Millisecond), from, redelivered())
	stillUp(t, s, conn)
	replayed := replayAll(t, audit)
	if e := replayed[poison]; e == nil || e.GetDecodeError() == "" || string(e.GetData()) != "not an envelope" {
		t.Errorf("ReplayEvents at the poison sequence %d: %v", poison, e)
	} else {
		t.Logf("ReplayEvents at %d: decode_error %q", poison, e.GetDecodeError())
	}
	if e := replayed[before.GetSequence()]; e == nil || e.GetDecodeError() != "" {
		t.Errorf("ReplayEvents at %d (the referral before): %v", before.GetSequence(), e)
	}

	// Appends still work.
	after, err := client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "fault-poison-after", Referral: referraltest.Details(2)})
	if err != nil {
		t.Fatalf("submit after the poison message: %v", err)
	}
	if after.GetSequence() <= poison {
		t.Errorf("submitted at sequence %d, not after the poison message at %d", after.GetSequence(), poison)
	}
	if e := replayAll(t, audit)[after.GetSequence()]; e.GetEnvelope().GetReferralSubmitted().GetRequestId() != "fault-poison-after" {
		t.Errorf("ReplayEvents at %d: %v", after.GetSequence(), e)
	}
	t.Logf("submitted after it: acknowledged at sequence %d", after.GetSequence())

	// Stop and start again: it stays up, still halted at the same place.
	stopped := time.Now()
	if err := s.signal(syscall.SIGTERM, time.Minute); err != nil {
		t.Errorf("spa-server did not stop cleanly on SIGTERM with a halted projection: %v", err)
	}
	t.Logf("stopped on SIGTERM in %s", time.Since(stopped).Round(time.Millisecond))
	s.start()
	await.True(t, startWithin, "the restarted worker logs the halt", func() bool {
		if !s.running() {
			t.Fatalf("spa-server exited after its restart: %v", s.exitErr())
		}
		return strings.Contains(s.out.text(), "projection halted")
	})
	t.Logf("spa-ctl workers after the restart:\n%s", waitHalted(t, url, dataDir, poison, subject))
	// No crash loop: it is still there a few seconds later.
	restarted := time.Now()
	await.True(t, startWithin, "spa-server still runs 3s after its restart", func() bool {
		if !s.running() {
			t.Fatalf("spa-server exited after its restart: %v", s.exitErr())
		}
		return time.Since(restarted) > 3*time.Second
	})
	stillUp(t, s, conn)
	again, err := client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: "fault-poison-again", Referral: referraltest.Details(3)})
	if err != nil {
		t.Fatalf("submit after the restart: %v", err)
	}
	t.Logf("submitted after the restart: acknowledged at sequence %d", again.GetSequence())
}

// waitHalted waits until `spa-ctl workers` reports a projection halted at
// seq on subject, with a reason, and exits non-zero; it returns its
// output.
func waitHalted(t *testing.T, url, dataDir string, seq uint64, subject string) string {
	t.Helper()
	want := fmt.Sprintf("at %d (%s): ", seq, subject)
	var out string
	await.True(t, startWithin, "spa-ctl workers shows the halt", func() bool {
		stdout, stderr, err := runCtl(t, time.Minute, "workers", "--nats-url", url, "--nats-nkey", embeddedNkey(dataDir, natsauth.Admin))
		out = stdout + stderr
		i := strings.Index(stdout, want)
		return err != nil && i >= 0 && strings.TrimSpace(stdout[i+len(want):]) != "" &&
			strings.Contains(stderr, "a projection has halted")
	})
	return out
}

// stillUp checks that the server runs and answers gRPC health, with
// whatever status (its only read model no longer serves queries).
func stillUp(t *testing.T, s *proc, conn *grpc.ClientConn) {
	t.Helper()
	if !s.running() {
		t.Fatalf("spa-server exited: %v", s.exitErr())
	}
	var st healthpb.HealthCheckResponse_ServingStatus
	await.True(t, startWithin, "gRPC health answers", func() bool {
		var err error
		st, err = health(conn)
		return err == nil
	})
	t.Logf("spa-server runs (pid %d, started %d times); gRPC health answers %s", s.pid(), s.starts, st)
}

// replayAll streams the whole log through ReplayEvents, by sequence.
func replayAll(t *testing.T, audit spav1.AuditServiceClient) map[uint64]*spav1.StoredEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settleWithin)
	defer cancel()
	stream, err := audit.ReplayEvents(ctx, &spav1.ReplayEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]*spav1.StoredEvent{}
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("ReplayEvents: %v", err)
		}
		out[res.GetEvent().GetSequence()] = res.GetEvent()
	}
}
