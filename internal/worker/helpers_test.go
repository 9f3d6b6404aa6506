package worker_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/query"
	"spa/internal/scheduler"
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

// TestDuplicateWorkerID: a worker refuses to start under the id of one
// that is running.
func TestDuplicateWorkerID(t *testing.T) {
	t.Parallel()
	srv := jetstreamtest.Start(t)
	nc := jetstreamtest.Connect(t, srv)
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	runWorker(t, nc, store, worker.Config{DataDir: t.TempDir(), ID: "twin", Scheduler: scheduler.Config{Disabled: true}})
	reads := query.NewClient(nc)
	poll(t, "the first worker answers", func() bool {
		_, err := reads.WorkerStatus(context.Background(), "twin")
		return err == nil
	})
	err := worker.Run(context.Background(), nc, store, worker.Config{DataDir: t.TempDir(), ID: "twin",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	if err == nil || !strings.Contains(err.Error(), "in use by a running worker") {
		t.Fatalf("a second worker named twin: %v", err)
	}
}
