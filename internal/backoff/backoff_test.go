package backoff_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"spa/internal/backoff"
)

// TestDelaysGrowToTheCap: delays double from Min to Max, each between
// half and all of its step.
func TestDelaysGrowToTheCap(t *testing.T) {
	t.Parallel()
	r := &backoff.Retrier{Gate: backoff.NewGate("x", slog.New(slog.DiscardHandler)), Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	ctx := context.Background()
	for _, step := range []time.Duration{10, 20, 40, 80, 80, 80} {
		step *= time.Millisecond
		if err := r.Failed(ctx, errors.New("down")); err != nil {
			t.Fatal(err)
		}
		// Delay is the wait before the next attempt, after i+1 failures.
		for range 50 {
			if d := r.Delay(); d < step/2 || d > step {
				t.Fatalf("step %s: delay %s, want %s-%s", step, d, step/2, step)
			}
		}
	}
	r.Succeeded()
	if d := r.Delay(); d > 10*time.Millisecond {
		t.Fatalf("after a success: delay %s", d)
	}
}

// TestGateLogsOncePerOutage: however many callers fail, one line when
// the outage starts and one when it ends.
func TestGateLogsOncePerOutage(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	g := backoff.NewGate("event log", log)
	g.Quiet = 20 * time.Millisecond
	// A blip is not news.
	g.Fail(errors.New("replica behind"))
	g.OK()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				g.Fail(errors.New("no responders"))
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	g.OK()
	g.OK()
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	if n := strings.Count(out, "event log failing"); n != 1 {
		t.Errorf("%d failing lines:\n%s", n, out)
	}
	if n := strings.Count(out, "event log recovered"); n != 1 || !strings.Contains(out, "failed_attempts=1000") {
		t.Errorf("recovered lines:\n%s", out)
	}
}

// TestRetryStopsOnPermanentErrorsAndCancel: Retry returns a permanent
// error at once, and the last error with ctx's when ctx ends.
func TestRetryStopsOnPermanentErrorsAndCancel(t *testing.T) {
	t.Parallel()
	permanent := errors.New("permanent")
	transient := errors.New("transient")
	r := backoff.New("x", slog.New(slog.DiscardHandler))
	calls := 0
	err := backoff.Retry(context.Background(), r, func(err error) bool { return errors.Is(err, transient) }, func(context.Context) error {
		calls++
		if calls < 3 {
			return transient
		}
		return permanent
	})
	if !errors.Is(err, permanent) || calls != 3 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = backoff.Retry(ctx, r, func(error) bool { return true }, func(context.Context) error { return transient })
	if !errors.Is(err, transient) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
