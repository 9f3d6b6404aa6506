package rpc

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
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

// TestForgetIdleCallers: the callers remembered stay bounded; one with a
// stream open is kept.
func TestForgetIdleCallers(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	lim := &limiter{l: DefaultLimits, callers: map[string]*caller{}, now: func() time.Time { return now }}
	if _, err := lim.admit(from("10.9.9.9"), true); err != nil {
		t.Fatal(err)
	}
	for i := range maxCallers + 10 {
		ip := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String()
		if _, err := lim.admit(from(ip), false); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(lim.callers); n > maxCallers {
		t.Fatalf("%d callers remembered, want at most %d", n, maxCallers)
	}
	if c := lim.callers["10.9.9.9"]; c == nil || c.streams != 1 {
		t.Fatal("a caller with a stream open was forgotten")
	}
}
