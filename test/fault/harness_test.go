package fault

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	gbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/natsauth"
	"spa/internal/rpc"
	"spa/internal/signing"
)

// The programs the tests run.
const (
	natsServer = "nats-server"
	spaServer  = "spa-server"
	spaWorker  = "spa-worker"
	spaCtl     = "spa-ctl"
)

// Generous safety deadlines: they only stop a stuck test, on a loaded
// machine; a calm one is done long before.
const (
	startWithin  = 2 * time.Minute
	settleWithin = 3 * time.Minute
)

// built holds the programs, built once per test binary into dir.
var built struct {
	once sync.Once
	dir  string
	took time.Duration
	err  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// slow skips the test with -short: every test here runs real processes.
func slow(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test: builds and kills real processes")
	}
}

// program returns the path of a built program; the first call builds all
// four.
func program(t testing.TB, name string) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "spa-fault-bin-")
		if built.err != nil {
			return
		}
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", built.dir+string(filepath.Separator),
			"github.com/nats-io/nats-server/v2", "spa/cmd/spa-server", "spa/cmd/spa-worker", "spa/cmd/spa-ctl")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
		built.took = time.Since(start)
		t.Logf("built %s, %s, %s and %s in %s", natsServer, spaServer, spaWorker, spaCtl, built.took.Round(time.Millisecond))
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return filepath.Join(built.dir, name)
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func itoa(i int) string { return strconv.Itoa(i) }

func localAddr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

func natsURL(port int) string { return fmt.Sprintf("nats://127.0.0.1:%d", port) }

// proc is a child process the test starts, kills and starts again with
// the same arguments. Its stdout and stderr go to a log file in its own
// temporary directory (also its working directory); the tail is printed
// when the test fails, or with -v. It is killed when the test ends.
type proc struct {
	t    testing.TB
	name string
	path string
	args []string
	dir  string
	out  *output

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // from Wait, once exited
	starts int
}

// newProc prepares a child; start runs it. Create the directories it uses
// before calling newProc, so that they are removed after it is killed.
func newProc(t testing.TB, name, path string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, path: path, args: args, dir: t.TempDir()}
	f, err := os.Create(filepath.Join(p.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	p.out = &output{f: f}
	t.Cleanup(func() {
		p.stop()
		lines := 0
		switch {
		case t.Failed():
			lines = 60
		case testing.Verbose():
			lines = 12
		}
		if lines > 0 {
			t.Logf("%s (started %d times) log %s, last %d lines:\n%s", p.name, p.starts, f.Name(), lines, p.out.tail(lines))
		}
		f.Close()
	})
	return p
}

// start runs the process; it must not be running.
func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited != nil {
		select {
		case <-p.exited:
		default:
			p.t.Fatalf("%s is already running", p.name)
		}
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = childAttrs()
	p.starts++
	p.out.markStart(fmt.Sprintf("start #%d: %s %s", p.starts, filepath.Base(p.path), strings.Join(p.args, " ")))
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		p.out.mark(fmt.Sprintf("pid %d exited: %v", cmd.Process.Pid, cmd.ProcessState))
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
}

// running reports whether the process runs.
func (p *proc) running() bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// signal sends sig to the process this test started, by its pid, and
// waits until it has exited (within), returning Wait's error.
func (p *proc) signal(sig syscall.Signal, within time.Duration) error {
	p.t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		p.t.Fatalf("%s was never started", p.name)
	}
	select {
	case <-exited:
		p.t.Fatalf("%s is not running (it exited: %v)", p.name, p.exitErr())
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
	select {
	case <-exited:
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-exited
		p.t.Fatalf("%s did not exit within %s of %s", p.name, within, sig)
	}
	return p.exitErr()
}

// kill sends SIGKILL and waits for the process to go.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL, time.Minute)
}

// stop kills the process if it runs; for cleanups.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
	default:
		_ = cmd.Process.Kill()
		<-exited
	}
}

// pid returns the process id of the last start.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// output is a child's log: what it writes goes to a file, and the time
// each line arrived is kept, to count the lines written in a window.
type output struct {
	mu    sync.Mutex
	f     *os.File
	lines []time.Time
	since int // bytes in the file before the last start marker
	size  int
}

func (o *output) Write(b []byte) (int, error) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for range bytes.Count(b, []byte{'\n'}) {
		o.lines = append(o.lines, now)
	}
	n, err := o.f.Write(b)
	o.size += n
	return n, err
}

// mark writes a line of the test's own (not counted as the child's).
func (o *output) mark(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, _ := fmt.Fprintf(o.f, "%s%s\n", markPrefix, s)
	o.size += n
}

// markStart marks a start: text returns what comes after.
func (o *output) markStart(s string) {
	o.mu.Lock()
	o.since = o.size
	o.mu.Unlock()
	o.mark(s)
}

const markPrefix = "=== fault test: "

// text returns what the child wrote since its last start.
func (o *output) text() string {
	o.mu.Lock()
	since := o.since
	o.mu.Unlock()
	b, err := os.ReadFile(o.f.Name())
	if err != nil || since > len(b) {
		return ""
	}
	return string(b[since:])
}

// window returns the lines written between from and to, as they are in
// the file (the file holds only the child's lines and the markers).
func (o *output) window(from, to time.Time) []string {
	b, err := os.ReadFile(o.f.Name())
	if err != nil {
		return nil
	}
	o.mu.Lock()
	times := append([]time.Time(nil), o.lines...)
	o.mu.Unlock()
	var out []string
	i := 0
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(line, markPrefix) || !strings.HasSuffix(line, "\n") {
			continue
		}
		if i < len(times) && !times[i].Before(from) && !times[i].After(to) {
			out = append(out, strings.TrimSuffix(line, "\n"))
		}
		i++
	}
	return out
}

// tail returns the file's last n lines.
func (o *output) tail(n int) string {
	b, err := os.ReadFile(o.f.Name())
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runCtl runs spa-ctl with args and returns its stdout, its stderr and
// its exit error.
func runCtl(t testing.TB, within time.Duration, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, program(t, spaCtl), args...)
	cmd.Dir = t.TempDir()
	cmd.SysProcAttr = childAttrs()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// dial connects to a spa-server's gRPC address, reconnecting quickly
// after the server restarts (the default backoff grows to two minutes).
// Calls are not retried by gRPC: the tests retry UNAVAILABLE themselves
// (as spa-ctl's retry policy does, with the same request) and count it.
func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(party), grpc.WithChainStreamInterceptor(partyStream),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           gbackoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// party states who calls, as the development-mode servers these tests
// run read it: a submission as its site's discharge team, anything else
// as a coordinator.
func party(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ods, role := "SPA", "coordinator"
	if r, ok := req.(*spav1.SubmitReferralRequest); ok {
		ods, role = r.GetReferral().GetEpisode().GetSiteOds(), "discharge-team"
	}
	return invoker(metadata.AppendToOutgoingContext(ctx, rpc.MetadataActorODS, ods, rpc.MetadataActorRole, role, rpc.MetadataPurpose, "direct-care"), method, req, reply, cc, opts...)
}

func partyStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(metadata.AppendToOutgoingContext(ctx, rpc.MetadataActorODS, "SPA", rpc.MetadataActorRole, "auditor", rpc.MetadataPurpose, "audit"), desc, cc, method, opts...)
}

// signingKey makes the key a test's processes sign their events with and
// returns its file.
func signingKey(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := signing.WriteKeyPair(dir, "spa-fault-test"); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, signing.KeyFile)
}

// health asks a spa-server for the ReferralService's health.
func health(conn *grpc.ClientConn) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: spav1.ReferralService_ServiceDesc.ServiceName})
	return res.GetStatus(), err
}

func serving(conn *grpc.ClientConn) bool {
	st, err := health(conn)
	return err == nil && st == healthpb.HealthCheckResponse_SERVING
}

// waitServing waits until the server reports SERVING and returns how long
// that took from since.
func waitServing(t testing.TB, conn *grpc.ClientConn, p *proc, since time.Time) time.Duration {
	t.Helper()
	await.True(t, startWithin, p.name+" health SERVING", func() bool {
		if !p.running() {
			t.Fatalf("%s exited: %v", p.name, p.exitErr())
		}
		return serving(conn)
	})
	return time.Since(since)
}

// connect connects to NATS (one URL or several, comma separated),
// reconnecting for as long as the test runs; opts say who it is (see
// embeddedAs).
func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	var nc *nats.Conn
	opts = append(opts, nats.Name("fault test"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	await.True(t, startWithin, "NATS at "+url+" accepts a connection", func() bool {
		var err error
		nc, err = nats.Connect(url, opts...)
		return err == nil
	})
	t.Cleanup(nc.Close)
	return nc
}

// embeddedAs returns the options that connect to the embedded NATS of an
// all-in-one spa-server with dataDir as id, once the server has made its
// identities.
func embeddedAs(t testing.TB, dataDir string, id natsauth.Identity) []nats.Option {
	t.Helper()
	opts, err := natsauth.Client{Identity: id, NkeyFile: embeddedNkey(dataDir, id)}.Options()
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// embeddedNkey is the seed file of id in an all-in-one spa-server's
// dataDir.
func embeddedNkey(dataDir string, id natsauth.Identity) string {
	return natsauth.SeedFile(filepath.Join(dataDir, "nats"), id)
}

// sleep waits d or until ctx ends (for the pacing of retries and of the
// fault schedule, never to wait for something to happen).
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
