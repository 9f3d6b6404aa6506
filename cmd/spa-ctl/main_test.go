package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
)

// startServer builds spa-server and runs it all-in-one on a free port in a
// temporary data directory, its NATS also on a free port; it is stopped
// when the test ends. It returns both addresses and the admin identity's
// nkey seed file for that NATS.
func startServer(t *testing.T) (string, string, string) {
	t.Helper()
	return startServerIn(t, t.TempDir())
}

// startServerIn is startServer with the data directory given.
func startServerIn(t *testing.T, dataDir string) (string, string, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spa-server")
	if out, err := exec.Command("go", "build", "-o", bin, "spa/cmd/spa-server").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr, natsAddr := freeAddr(t), freeAddr(t)
	srv := exec.Command(bin, "--listen", addr, "--data-dir", dataDir, "--nats-listen", natsAddr)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	await.True(t, 30*time.Second, "spa-server answers", func() bool {
		_, _, err := run(t, addr, "board")
		return err == nil
	})
	return addr, "nats://" + natsAddr, filepath.Join(dataDir, "nats", "admin.nk")
}

// lockedBuffer is a buffer one goroutine writes while another reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func run(t *testing.T, addr string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := func(string) string { return "" }
	err = realMain(context.Background(), append([]string{"--addr", addr, "--timeout", "5s"}, args...), env, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs spa-server")
	}
	t.Parallel()
	addr, natsURL, adminNkey := startServer(t)

	out, _, err := run(t, addr, "demo")
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if n := strings.Count(out, " registered"); n != len(demoProviders) {
		t.Fatalf("demo registered %d providers, want %d:\n%s", n, len(demoProviders), out)
	}
	if n := strings.Count(out, " submitted"); n != len(demoPatients) {
		t.Fatalf("demo submitted %d referrals, want %d:\n%s", n, len(demoPatients), out)
	}
	again, _, err := run(t, addr, "demo")
	if err != nil || strings.Count(again, "already there") != len(demoPatients)+len(demoProviders) {
		t.Fatalf("second demo: %v\n%s", err, again)
	}

	board, summary, err := run(t, addr, "board", "--min-seq", fmt.Sprint(len(demoPatients)))
	if err != nil || !strings.Contains(summary, fmt.Sprintf("%d referrals", len(demoPatients))) {
		t.Fatalf("board: %v\n%s%s", err, board, summary)
	}
	// The router offers the hospice patients to the hospice; its team
	// accepts one and declines the other.
	var offers []string
	await.True(t, 30*time.Second, "two offers to the hospice", func() bool {
		out, _, err := run(t, addr, "assignments", "--provider", "hos10", "--status", "requested")
		if err != nil {
			t.Fatalf("assignments: %v", err)
		}
		offers = regexp.MustCompile(`ref-[a-z2-7]{16}-a1`).FindAllString(out, -1)
		return len(offers) >= 2
	})
	// The hospice's feed from the start shows both offers, with cursors.
	wctx, cancel := context.WithCancel(context.Background())
	var feed lockedBuffer
	watched := make(chan error, 1)
	go func() {
		watched <- realMain(wctx, []string{"--addr", addr, "watch", "--provider", "hos10"}, func(string) string { return "" }, &feed, io.Discard)
	}()
	await.True(t, 30*time.Second, "the feed shows both offers", func() bool { return strings.Count(feed.String(), "OfferMade") == 2 })
	cancel()
	if err := <-watched; err != nil {
		t.Fatalf("watch: %v", err)
	}
	accept := []string{"--as", "HOS10/provider", "accept", "--request-id", "ctl-test-accept-1", offers[0]}
	if out, _, err := run(t, addr, accept...); err != nil || !strings.Contains(out, "accepted") {
		t.Fatalf("accept: %v %s", err, out)
	}
	// The same accept sent again (its reply lost) is answered as the
	// first time; the same request id on another command is refused.
	if out, _, err := run(t, addr, accept...); err != nil || !strings.Contains(out, "accepted") {
		t.Fatalf("accept again: %v %s", err, out)
	}
	if _, _, err := run(t, addr, "--as", "HOS10/provider", "start", "--request-id", "ctl-test-accept-1", offers[0]); err == nil ||
		!strings.Contains(err.Error(), "AlreadyExists") || !strings.Contains(err.Error(), "--request-id ctl-test-accept-1") {
		t.Fatalf("start with the accept's request id: %v", err)
	}
	if _, _, err := run(t, addr, "--as", "HOS10/provider", "decline", offers[1]); err == nil || !strings.Contains(err.Error(), "reason:") {
		t.Fatalf("decline without a reason: %v", err)
	}
	if _, _, err := run(t, addr, "--as", "HOS10/provider", "decline", "--reason", "no bed until Friday", offers[1]); err != nil {
		t.Fatalf("decline: %v", err)
	}
	if _, _, err := run(t, addr, "--as", "HOS10/provider", "start", offers[1]); err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("starting a declined offer: %v", err)
	}
	providers, _, err := run(t, addr, "providers", "--service", "hospice_bed")
	if err != nil || !strings.Contains(providers, "Cedarwood Hospice") || strings.Contains(providers, "Elmwood") {
		t.Fatalf("providers: %v\n%s", err, providers)
	}
	// The hospice declares three beds free; the bed of the accepted offer
	// stays promised. The same declaration sent again changes nothing.
	asOf := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	declare := []string{"--as", "HOS10/provider", "capacity", "--provider", "HOS10", "--service", "hospice_bed", "--units", "3", "--as-of", asOf}
	if out, _, err := run(t, addr, declare...); err != nil || !strings.Contains(out, "HOS10: declared") {
		t.Fatalf("capacity: %v %s", err, out)
	}
	if out, _, err := run(t, addr, declare...); err != nil || !strings.Contains(out, "already declared") {
		t.Fatalf("capacity again: %v %s", err, out)
	}
	if _, _, err := run(t, addr, "--as", "HOS10/provider", "capacity", "--provider", "HOS10", "--service", "hospice_bed"); err == nil || !strings.Contains(err.Error(), "--units") {
		t.Fatalf("capacity without units: %v", err)
	}
	// A failed declaration names what makes its retry the same request:
	// the request id and the as-of chosen for it.
	_, _, err = run(t, addr, "--as", "NOPE1/provider", "capacity", "--provider", "NOPE1", "--service", "hospice_bed", "--units", "1")
	if m := regexp.MustCompile(`--request-id (ctl-\S+) --as-of (\S+)\)`).FindStringSubmatch(fmt.Sprint(err)); m == nil {
		t.Fatalf("a failed declaration: %v; want its request id and as-of", err)
	} else if _, _, again := run(t, addr, "--as", "NOPE1/provider", "capacity", "--provider", "NOPE1", "--service", "hospice_bed", "--units", "1", "--request-id", m[1], "--as-of", m[2]); again == nil ||
		!strings.Contains(again.Error(), "NotFound") {
		t.Fatalf("sent again as the hint says: %v; want the same answer (not found)", again)
	}
	await.True(t, 30*time.Second, "the declaration on the board", func() bool {
		providers, _, err = run(t, addr, "providers", "--service", "hospice_bed")
		if err != nil {
			t.Fatal(err)
		}
		// AVAILABLE DECLARED RESERVED for the hospice's beds.
		m := regexp.MustCompile(`HOS10 .* hospice_bed +(\d+) +(\d+) +(\d+) `).FindStringSubmatch(providers)
		return m != nil && m[1] == "2" && m[2] == "3" && m[3] == "1"
	})

	// Tamper evidence: the live log verifies, so does a copy, and a copy
	// with one byte altered fails at that event.
	if out, _, err := run(t, addr, "--as", "SPA/auditor", "verify"); err != nil || !strings.Contains(out, "every hash and link intact") {
		t.Fatalf("verify: %v %s", err, out)
	}
	dump, _, err := run(t, addr, "--as", "SPA/auditor", "replay", "--data")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(dump), "\n")
	file := filepath.Join(t.TempDir(), "log.jsonl")
	if err := os.WriteFile(file, []byte(dump), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _, err := run(t, addr, "--as", "SPA/auditor", "verify", "--file", file); err != nil || !strings.Contains(out, fmt.Sprintf("verified %d events", len(lines))) {
		t.Fatalf("verify a copy: %v %s", err, out)
	}
	victim := new(spav1.StoredEvent)
	if err := protojson.Unmarshal([]byte(lines[7]), victim); err != nil {
		t.Fatal(err)
	}
	victim.Data[len(victim.Data)/2] ^= 0x01
	altered, _ := protojson.Marshal(victim)
	lines[7] = string(altered)
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, addr, "--as", "SPA/auditor", "verify", "--file", file); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("broken at sequence %d ", victim.GetSequence())) {
		t.Fatalf("verify an altered copy: %v, want a break at sequence %d", err, victim.GetSequence())
	}
	timeline, _, err := run(t, addr, "--as", "SPA/auditor", "timeline", offers[0][:len(offers[0])-3])
	if err != nil || !strings.Contains(timeline, "ReferralSubmitted") || !strings.Contains(timeline, "OfferMade") || !strings.Contains(timeline, "status=task_status_accepted") {
		t.Fatalf("timeline: %v\n%s", err, timeline)
	}
	who, _, err := run(t, addr, "--as", "SPA/auditor/jane.auditor", "--purpose", "audit", "access-log", "--referral", offers[0][:len(offers[0])-3])
	if err != nil || !strings.Contains(who, "ReplayEvents") {
		t.Fatalf("access log: %v\n%s", err, who)
	}

	// Rebuild while serving: the digests agree and the swap happens.
	rebuilt, _, err := run(t, addr, "rebuild", "--nats-url", natsURL, "--nats-nkey", adminNkey)
	if err != nil || !strings.Contains(rebuilt, ": swapped at sequence") {
		t.Fatalf("rebuild: %v\n%s", err, rebuilt)
	}
	lines = strings.Split(rebuilt, "\n")
	if len(lines) < 3 || strings.Fields(lines[1])[1] != strings.Fields(lines[2])[1] {
		t.Fatalf("rebuild digests differ:\n%s", rebuilt)
	}
	workers, _, err := run(t, addr, "workers", "--nats-url", natsURL, "--nats-nkey", adminNkey)
	if err != nil || !strings.Contains(workers, "true") || !strings.Contains(workers, "swapped at sequence") {
		t.Fatalf("workers: %v\n%s", err, workers)
	}

	ready, summary, err := run(t, addr, "board", "--status", "not_ready", "--site", "rjz30")
	if err != nil || !strings.Contains(summary, "2 referrals") || !strings.Contains(ready, "Jenkins, Arthur") {
		t.Fatalf("filtered board: %v\n%s%s", err, ready, summary)
	}

	sub, _, err := run(t, addr, "--as", "RJZ30/discharge-team", "submit", "-f", "../../examples/referral.json")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	res := new(spav1.SubmitReferralResponse)
	if err := protojson.Unmarshal([]byte(sub), res); err != nil || res.GetReferralId() == "" {
		t.Fatalf("submit printed %s (%v)", sub, err)
	}
	out, _, err = run(t, addr, "get", "--min-seq", fmt.Sprint(res.GetSequence()), res.GetReferralId())
	got := new(spav1.GetReferralResponse)
	if err != nil || protojson.Unmarshal([]byte(out), got) != nil {
		t.Fatalf("get: %v\n%s", err, out)
	}
	if got.GetReferral().GetDetails().GetPatient().GetFamilyName() != "Thompson" || got.GetHistory()[0].GetEnvelope().GetReferralSubmitted() == nil {
		t.Fatalf("get printed %s", out)
	}

	// An admin switches the overlay on from a date; the policies
	// list it, and the same switch again changes nothing.
	from := time.Now().AddDate(0, 0, 3).Format("2006-01-02")
	policy := []string{"--as", "SPA/admin", "policy", "--rule", "infection-overlay", "--on", "--from", from, "--reason", "outbreak"}
	if out, _, err := run(t, addr, policy...); err != nil || !strings.Contains(out, "infection-overlay: switched on from "+from) {
		t.Fatalf("policy: %v %s", err, out)
	}
	if out, _, err := run(t, addr, policy...); err != nil || !strings.Contains(out, "already switched so") {
		t.Fatalf("policy again: %v %s", err, out)
	}
	if out, _, err := run(t, addr, "policies"); err != nil || !strings.Contains(out, from+"  "+from+"-overlay-on") {
		t.Fatalf("policies: %v %s", err, out)
	}
	if _, _, err := run(t, addr, "--as", "SPA/admin", "policy", "--rule", "infection-overlay", "--on", "--off", "--from", from, "--reason", "x"); err == nil {
		t.Fatal("--on and --off accepted")
	}

	// The example amendment is of the example referral; sent twice, it
	// is answered the same and applied once.
	amended, _, err := run(t, addr, "--as", "RJZ30/discharge-team", "amend", "-f", "../../examples/amend.json")
	if err != nil || !strings.Contains(amended, res.GetReferralId()+": amended (sequence ") {
		t.Fatalf("amend: %v %s", err, amended)
	}
	if again, _, err := run(t, addr, "--as", "RJZ30/discharge-team", "amend", "-f", "../../examples/amend.json"); err != nil || again != amended {
		t.Fatalf("amend again: %v %q, first %q", err, again, amended)
	}

	_, _, err = run(t, addr, "--as", "RJZ30/discharge-team", "submit", "-f", "../../examples/referral.json", "--request-id", "bad")
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") || !strings.Contains(err.Error(), "request_id:") {
		t.Fatalf("invalid submit: %v", err)
	}
	if _, _, err := run(t, addr, "get", "ref-aaaaaaaaaaaaaaaa"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("unknown referral: %v", err)
	}
	if _, _, err := run(t, addr, "board", "--status", "sleeping"); err == nil {
		t.Fatal("unknown status accepted")
	}
	if _, _, err := run(t, addr, "frobnicate"); err == nil {
		t.Fatal("unknown command accepted")
	}
}
