package worker_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"spa/internal/jetstream"
	"spa/internal/worker"
)

// runWorker runs a worker (its log discarded unless cfg has one) until
// stop is called or the test ends; the test fails if it ends with an
// error.
func runWorker(t *testing.T, nc *nats.Conn, store *jetstream.Store, cfg worker.Config) (stop func()) {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, nc, store, cfg, nil) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker %s: %v", cfg.ID, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
