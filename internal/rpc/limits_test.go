package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"spa/internal/authz"
	"spa/internal/identity"
)

func from(host string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(host), Port: 40000}})
}

// retryAfter returns err's code and the retry delay it carries.
func retryAfter(t *testing.T, err error) (codes.Code, time.Duration) {
	t.Helper()
	st := status.Convert(err)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return st.Code(), ri.GetRetryDelay().AsDuration()
		}
	}
	return st.Code(), 0
}

// TestLimits: a caller over its rate or its streams is answered
// RESOURCE_EXHAUSTED with a retry delay before the handler runs (the call
// changes nothing), others are not held up, and a unary call never runs
// longer than the server allows.
func TestLimits(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	lim := &limiter{l: Limits{Rate: 10, Burst: 5, Streams: 2, MaxDeadline: time.Second}, callers: map[string]*caller{}, now: func() time.Time { return now }}
	ran := 0
	var deadline time.Time
	handler := func(ctx context.Context, _ any) (any, error) {
		ran++
		deadline, _ = ctx.Deadline()
		return nil, nil
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/spa.v1.ReferralService/GetReferral"}
	for i := range 5 {
		if _, err := lim.unary(from("10.0.0.1"), nil, info, handler); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	_, err := lim.unary(from("10.0.0.1"), nil, info, handler)
	if code, wait := retryAfter(t, err); code != codes.ResourceExhausted || wait <= 0 || wait > time.Second {
		t.Fatalf("the 6th call at once: %v (retry after %v)", err, wait)
	}
	if ran != 5 {
		t.Fatalf("the handler ran %d times, want 5: a refused call must not run", ran)
	}
	if _, err := lim.unary(from("10.0.0.2"), nil, info, handler); err != nil {
		t.Fatalf("another caller: %v", err)
	}
	if until := time.Until(deadline); until > time.Second || until <= 0 {
		t.Fatalf("a call without a deadline runs for %v, want at most 1s", until)
	}
	now = now.Add(200 * time.Millisecond) // two calls' worth at 10/s
	if _, err := lim.unary(from("10.0.0.1"), nil, info, handler); err != nil {
		t.Fatalf("after the wait: %v", err)
	}

	// Streams: two open at once, the third refused until one closes.
	now = now.Add(time.Minute)
	var releases []func()
	for range 2 {
		release, err := lim.admit(from("10.0.0.3"), true)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	if _, err := lim.admit(from("10.0.0.3"), true); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third stream: %v", err)
	}
	releases[0]()
	if _, err := lim.admit(from("10.0.0.3"), true); err != nil {
		t.Fatalf("a stream after one closed: %v", err)
	}
}

// TestForgetIdleCallers: callers with nothing to remember are forgotten
// once many are remembered; one with a stream open, or one being held
// back, is not, so new addresses never reset a caller's allowance.
func TestForgetIdleCallers(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	lim := &limiter{l: Limits{Rate: 1, Burst: 1, Streams: 5, MaxDeadline: time.Second}, callers: map[string]*caller{}, now: func() time.Time { return now }}
	if _, err := lim.admit(from("10.9.9.9"), true); err != nil {
		t.Fatal(err)
	}
	// The victim of its own rate: its token spent.
	if _, err := lim.admit(from("10.8.8.8"), false); err != nil {
		t.Fatal(err)
	}
	flood := func() {
		for i := range maxCallers + 10 {
			ip := fmt.Sprintf("2001:db8:%x::1", i)
			if _, err := lim.admit(from(ip), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	flood()
	if _, err := lim.admit(from("10.8.8.8"), false); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a held-back caller after %d new addresses: %v", maxCallers+10, err)
	}
	// A while later every flooding caller's bucket is full again: they are
	// forgotten when the next new caller comes.
	now = now.Add(10 * time.Second)
	if _, err := lim.admit(from("10.7.7.7"), false); err != nil {
		t.Fatal(err)
	}
	if n := len(lim.callers); n > 10 {
		t.Fatalf("%d callers remembered after the flood went quiet", n)
	}
	if c := lim.callers["10.9.9.9"]; c == nil || c.streams != 1 {
		t.Fatal("a caller with a stream open was forgotten")
	}
}

// TestCallerKey: an IPv6 caller is its /64, an IPv4 caller its address.
func TestCallerKey(t *testing.T) {
	t.Parallel()
	if a, b := callerKey(from("2001:db8:1:2::1")), callerKey(from("2001:db8:1:2::ffff")); a != b || a != "2001:db8:1:2::/64" {
		t.Fatalf("one /64: %q and %q", a, b)
	}
	if k := callerKey(from("10.0.0.1")); k != "10.0.0.1" {
		t.Fatalf("IPv4: %q", k)
	}
	// With a verified certificate, the organisation, wherever it calls
	// from: its people and systems share one allowance.
	for _, host := range []string{"10.0.0.1", "10.9.9.9"} {
		ctx := from(host)
		p, _ := peer.FromContext(ctx)
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: "ward"}, URIs: []*url.URL{(identity.Identity{ODS: "RJZ30", Role: authz.DischargeTeam}).URI()}}
		p.AuthInfo = credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}
		if k := callerKey(peer.NewContext(ctx, p)); k != "org RJZ30" {
			t.Fatalf("a verified caller at %s: %q", host, k)
		}
	}
}

// TestHealthIsNotLimited: a load balancer's health checks are answered
// whatever the callers at its address did.
func TestHealthIsNotLimited(t *testing.T) {
	t.Parallel()
	lim := &limiter{l: Limits{Rate: 1, Burst: 1, Streams: 1, MaxDeadline: time.Second}, callers: map[string]*caller{}, now: time.Now}
	health := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	for i := range 5 {
		if _, err := lim.unary(from("10.0.0.1"), nil, health, func(context.Context, any) (any, error) { return nil, nil }); err != nil {
			t.Fatalf("health check %d: %v", i+1, err)
		}
	}
}
