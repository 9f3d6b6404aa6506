package rpc

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"spa/internal/identity"
)

// Limits bound what one caller may ask of a server. A call over a limit is
// answered RESOURCE_EXHAUSTED, with the wait after which a retry may pass
// (RetryInfo), before its handler runs: it changes nothing. A caller is
// its verified organisation (every certificate of one organisation shares
// its allowance), or in the development mode its network address.
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
	if l.MaxMessage <= 0 {
		l.MaxMessage = DefaultLimits.MaxMessage
	}
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
	swept   time.Time // when forget last ran
}

type caller struct {
	calls   *rate.Limiter
	streams int
	seen    time.Time
}

// maxCallers is how many callers are remembered before those with nothing
// left to remember are forgotten (see forget).
const maxCallers = 10_000

// admit takes one call of ctx's caller, and a stream too when stream; it
// returns the release of the stream.
func (lim *limiter) admit(ctx context.Context, stream bool) (release func(), err error) {
	key := callerKey(ctx)
	lim.mu.Lock()
	defer lim.mu.Unlock()
	now := lim.now() // under the lock: the buckets see time move forward only
	c := lim.callers[key]
	if c == nil {
		if len(lim.callers) >= maxCallers && now.Sub(lim.swept) >= time.Second {
			lim.forget(now)
		}
		c = &caller{calls: rate.NewLimiter(rate.Limit(lim.l.Rate), lim.l.Burst)}
		lim.callers[key] = c
	}
	c.seen = now
	if stream && c.streams >= lim.l.Streams {
		return nil, exhausted(fmt.Sprintf("%d streams are open from this caller, the most allowed; close one", c.streams), 5*time.Second)
	}
	if !c.calls.AllowN(now, 1) {
		wait := time.Second
		if r := c.calls.ReserveN(now, 1); r.OK() {
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

// forget drops the callers there is nothing to remember of: no stream
// open and a full bucket (a new caller would get the same). A caller being
// held back is never forgotten, so new addresses cannot reset it; when
// every caller is busy, the map grows with them. It runs at most once a
// second.
func (lim *limiter) forget(now time.Time) {
	lim.swept = now
	for k, c := range lim.callers {
		if c.streams == 0 && c.calls.TokensAt(now) >= float64(lim.l.Burst) {
			delete(lim.callers, k)
		}
	}
}

// exempt are the methods no limit applies to: health checks, which a
// load balancer behind the same address as clients must always get
// answered.
func exempt(method string) bool { return strings.HasPrefix(method, "/grpc.health.v1.Health/") }

func (lim *limiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if exempt(info.FullMethod) {
		return handler(ctx, req)
	}
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
	if exempt(info.FullMethod) {
		return handler(srv, ss)
	}
	release, err := lim.admit(ss.Context(), true)
	if err != nil {
		return err
	}
	defer release()
	return handler(srv, ss)
}

// callerKey names ctx's caller: the organisation of its verified client
// certificate; without one (the development mode) its network host, or for
// IPv6 its /64 (one machine's share of addresses).
func callerKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 && len(info.State.VerifiedChains[0]) > 0 {
		if id, err := identity.FromCertificate(info.State.VerifiedChains[0][0]); err == nil {
			return "org " + id.ODS
		}
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return host
}

// exhausted is RESOURCE_EXHAUSTED with a retry delay.
func exhausted(msg string, wait time.Duration) error {
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}
