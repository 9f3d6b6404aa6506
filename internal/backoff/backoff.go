// Package backoff paces retries of a dependency that is failing for a
// while (a NATS leader election, a stream not yet created): capped
// exponential delays with jitter, and a log that tells each state change
// once (failing, then recovered) instead of every attempt.
package backoff

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Default delays: 100ms doubling to at most 5s.
const (
	DefaultMin = 100 * time.Millisecond
	DefaultMax = 5 * time.Second
)

// Gate logs the state of something that fails for a while: one Warn once
// it has been failing for Quiet, one Info when it works again, however
// many attempts (from however many goroutines) fail in between. A blip
// shorter than Quiet (a replica a moment behind, a message being stored)
// is logged at Debug only. Safe for concurrent use.
type Gate struct {
	// What names it in the log ("projection", "event log").
	What string
	Log  *slog.Logger
	// Attrs are added to both log lines.
	Attrs []any
	// Quiet is how long failures must last to be logged (DefaultQuiet
	// when zero).
	Quiet time.Duration

	mu       sync.Mutex
	failures int
	since    time.Time
	logged   bool
}

// DefaultQuiet is how long a gate lets failures last before it logs them.
const DefaultQuiet = time.Second

// NewGate returns a gate that logs to log as what.
func NewGate(what string, log *slog.Logger, attrs ...any) *Gate {
	return &Gate{What: what, Log: log, Attrs: attrs}
}

// Fail records a failure; the run is logged once it has lasted Quiet.
func (g *Gate) Fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failures == 0 {
		g.since = time.Now()
	}
	g.failures++
	quiet := g.Quiet
	if quiet == 0 {
		quiet = DefaultQuiet
	}
	switch {
	case g.logged:
	case time.Since(g.since) >= quiet:
		g.logged = true
		g.Log.Warn(g.What+" failing; retrying with backoff", append([]any{"err", err, "failed_attempts", g.failures}, g.Attrs...)...)
	default:
		g.Log.Debug(g.What+" failed; retrying", append([]any{"err", err}, g.Attrs...)...)
	}
}

// OK ends a run of failures, logging once how long it lasted if its start
// was logged.
func (g *Gate) OK() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failures == 0 {
		return
	}
	if g.logged {
		g.Log.Info(g.What+" recovered", append([]any{"failed_attempts", g.failures, "after", time.Since(g.since).Round(time.Millisecond)}, g.Attrs...)...)
	}
	g.failures, g.logged = 0, false
}

// Retrier paces the attempts of one loop or one call; use it from one
// goroutine. Several retriers may share a gate, so that a dependency's
// outage is logged once however many callers retry.
type Retrier struct {
	Gate *Gate
	// Min and Max bound the delay between attempts (DefaultMin and
	// DefaultMax when zero).
	Min, Max time.Duration

	failures int
}

// New returns a retrier with a gate of its own.
func New(what string, log *slog.Logger, attrs ...any) *Retrier {
	return &Retrier{Gate: NewGate(what, log, attrs...)}
}

// Failed records a failed attempt and waits before the next one: about
// Min after the first failure, doubling up to Max, each delay drawn
// between half and all of it so that many retriers do not retry in step.
// It returns ctx's error if ctx ends while waiting.
func (r *Retrier) Failed(ctx context.Context, err error) error {
	r.Gate.Fail(err)
	r.failures++
	return Sleep(ctx, r.Delay())
}

// Delay returns the delay before the next attempt.
func (r *Retrier) Delay() time.Duration {
	lo, hi := r.Min, r.Max
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	d := lo
	for i := 1; i < r.failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// Succeeded ends a run of failures.
func (r *Retrier) Succeeded() {
	r.failures = 0
	r.Gate.OK()
}

// Sleep waits d or until ctx ends, returning ctx's error then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Retry calls fn until it succeeds, returns an error for which retryable
// is false, or ctx ends; failures are paced and logged by r. When ctx ends
// first, the error is fn's last joined with ctx's.
func Retry(ctx context.Context, r *Retrier, retryable func(error) bool, fn func(context.Context) error) error {
	for {
		err := fn(ctx)
		switch {
		case err == nil:
			r.Succeeded()
			return nil
		case ctx.Err() != nil:
			return errors.Join(err, ctx.Err())
		case !retryable(err):
			return err
		}
		if werr := r.Failed(ctx, err); werr != nil {
			return errors.Join(err, werr)
		}
	}
}
