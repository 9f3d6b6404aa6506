package rpc

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Limits bound what one caller may ask of a server. A call over a limit is
// answered RESOURCE_EXHAUSTED, with the wait after which a retry may pass
// (RetryInfo), before its handler runs: it changes nothing. Until callers
// have verified identities a caller is its network address (host).
type Limits struct {
	// Rate and Burst: the calls (and stream openings) per second a caller
	// may make, and how many at once above that rate.
	Rate  float64
	Burst int
	// Streams: the streams (WatchAssignments, ReplayEvents) a caller may
	// have open at once.
	Streams int
	// MaxDeadline: a unary call runs at most this long, whatever deadline
	// its caller gave (or none).
	MaxDeadline time.Duration
	// MaxMessage: the largest request a server reads, and reply it sends.
	MaxMessage int
}

// DefaultLimits leave room for a hospital's bulk load and a provider
// system's watches from one address, and stop a runaway client: until
// callers have identities of their own, many share an address (a
// hospital's integration engine, a proxy).
var DefaultLimits = Limits{Rate: 1000, Burst: 2000, Streams: 256, MaxDeadline: time.Minute, MaxMessage: 4 << 20}

// ServerOptions returns the grpc server options that enforce l.
func (l Limits) ServerOptions() []grpc.ServerOption {
	lim := &limiter{l: l, callers: map[string]*caller{}, now: time.Now}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxMessage),
		grpc.MaxSendMsgSize(l.MaxMessage),
		grpc.ChainUnaryInterceptor(lim.unary),
		grpc.ChainStreamInterceptor(lim.stream),
	}
}

// limiter keeps each caller's allowance.
type limiter struct {
	l       Limits
	now     func() time.Time
	mu      sync.Mutex
	callers map[string]*caller
}

type caller struct {
	calls   *rate.Limiter
	streams int
	seen    time.Time
}

// maxCallers bounds the callers remembered; idle ones are forgotten first.
const maxCallers = 10_000

// admit takes one call of ctx's caller, and a stream too when stream; it
// returns the release of the stream.
func (lim *limiter) admit(ctx context.Context, stream bool) (release func(), err error) {
	key := callerKey(ctx)
	now := lim.now()
	lim.mu.Lock()
	defer lim.mu.Unlock()
	c := lim.callers[key]
	if c == nil {
		if len(lim.callers) >= maxCallers {
			lim.forget(now)
		}
		c = &caller{calls: rate.NewLimiter(rate.Limit(lim.l.Rate), lim.l.Burst)}
		lim.callers[key] = c
	}
	c.seen = now
	if stream && c.streams >= lim.l.Streams {
		return nil, exhausted(fmt.Sprintf("%d streams are open from this caller, the most allowed; close one", c.streams), 5*time.Second)
	}
	if r := c.calls.ReserveN(now, 1); !r.OK() || r.DelayFrom(now) > 0 {
		wait := time.Second
		if r.OK() {
			wait = r.DelayFrom(now)
			r.CancelAt(now)
		}
		return nil, exhausted(fmt.Sprintf("more than %g calls a second from this caller", lim.l.Rate), wait)
	}
	if !stream {
		return func() {}, nil
	}
	c.streams++
	return func() {
		lim.mu.Lock()
		c.streams--
		lim.mu.Unlock()
	}, nil
}

// forget drops callers idle for a minute with no stream open, or, if none
// is, every caller without a stream.
func (lim *limiter) forget(now time.Time) {
	n := len(lim.callers)
	for k, c := range lim.callers {
		if c.streams == 0 && now.Sub(c.seen) > time.Minute {
			delete(lim.callers, k)
		}
	}
	if len(lim.callers) < n {
		return
	}
	for k, c := range lim.callers {
		if c.streams == 0 {
			delete(lim.callers, k)
		}
	}
}

func (lim *limiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if _, err := lim.admit(ctx, false); err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > lim.l.MaxDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lim.l.MaxDeadline)
		defer cancel()
	}
	return handler(ctx, req)
}

func (lim *limiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	release, err := lim.admit(ss.Context(), true)
	if err != nil {
		return err
	}
	defer release()
	return handler(srv, ss)
}

// callerKey names ctx's caller: its network host.
func callerKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

// exhausted is RESOURCE_EXHAUSTED with a retry delay.
func exhausted(msg string, wait time.Duration) error {
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}
