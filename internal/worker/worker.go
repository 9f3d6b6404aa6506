// Package worker is what spa-worker runs, and what spa-server runs in the
// all-in-one mode: it puts together this worker's own bbolt read model and
// the jobs that run on it: the projection of the event log into it
// (package projection), the answers to queries and control requests over
// NATS (queryserver), the routing (router) and, one worker at a time, the
// clocks (scheduler); the steps those take are the application's (app).
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"spa/internal/app"
	"spa/internal/backoff"
	"spa/internal/bolt"
	ijs "spa/internal/jetstream"
	"spa/internal/projection"
	"spa/internal/query"
	"spa/internal/queryserver"
	"spa/internal/router"
	"spa/internal/scheduler"
	"spa/internal/spa"
)

// ReadModelFile is the read model's file name inside the data directory.
const ReadModelFile = "readmodel.db"

// Config configures a worker.
type Config struct {
	// DataDir holds the read model file; one worker owns it.
	DataDir string
	// ID names this worker (its control subjects, its actor on routing
	// steps); unique per read model. Letters, digits, '-' and '_'.
	ID string
	// Policies are the built-in dated routing policies the switches in the
	// log apply to; nil means spa.DefaultPolicies.
	Policies spa.Policies
	// Scheduler configures the clock scheduler.
	Scheduler scheduler.Config
	// Skip are undecodable events to step over (see projection.Skips).
	Skip projection.Skips
	Log  *slog.Logger
}

var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateID checks a worker id: 1-64 letters, digits, '-' or '_', so that
// it is one NATS subject token.
func ValidateID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("worker id %q: want 1-64 letters, digits, '-' or '_'", id)
	}
	return nil
}

// Run projects and serves until ctx ends, then stops answering queries,
// cancels a running rebuild and closes the read model. It answers its own
// status (SubjectWorkerStatus) from the start; queries are served only
// once the model has caught up with the log as it stood at start, so a
// restarted worker never answers from a stale file, and no longer once its
// projection halts. ready (may be nil) is called when queries are first
// served.
func Run(ctx context.Context, nc *nats.Conn, store *ijs.Store, cfg Config, ready func()) error {
	if err := ValidateID(cfg.ID); err != nil {
		return err
	}
	// Two workers of one name would answer each other's control requests.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	st, err := query.NewClient(nc).WorkerStatus(pctx, cfg.ID)
	cancel()
	if err == nil {
		return fmt.Errorf("worker id %q is in use by a running worker (applied %d): give each worker its own --worker-id", cfg.ID, st.Applied)
	}
	model, err := bolt.Open(filepath.Join(cfg.DataDir, ReadModelFile))
	if err != nil {
		return err
	}
	defer model.Close()
	log := cfg.Log.With("worker", cfg.ID)
	// Check the routers' consumer now, rather than once caught up.
	if _, err := store.RouterConsumer(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	proj := projection.New(store, model, cfg.Skip, log)
	var serving atomic.Bool
	stopControl, err := queryserver.ServeControl(nc, queryserver.Control{ID: cfg.ID, Model: model, Halted: proj.Halted,
		Feed: projection.Feed(store, cfg.Skip), Serving: &serving, Log: log})
	if err != nil {
		return err
	}
	defer stopControl()

	var logID string
	var target uint64
	err = backoff.Retry(ctx, backoff.New("reading the log's identity", log), ijs.Retryable, func(ctx context.Context) (err error) {
		logID, target, err = store.Identity(ctx)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	applied := model.Applied()
	reset, err := model.Bind(logID, target, func(seq uint64) ([]byte, error) { return store.HashAt(ctx, seq) })
	if err != nil {
		return err
	}
	if reset {
		log.Warn("read model was built from another log (the stream was recreated or restored, or the file copied): building it again from sequence 1",
			"was_applied", applied, "log", logID, "log_last", target)
	}
	log.Info("read model opened", "applied", model.Applied(), "catching_up_to", target, "log", logID)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return proj.Run(gctx) })
	g.Go(func() error { return runAccessIndex(gctx, nc, store, cfg.DataDir, log) })
	policies := cfg.Policies
	if policies == nil {
		policies = spa.DefaultPolicies
	}
	caughtUp := func() bool { return waitCaughtUp(gctx, model, proj.HaltedCh(), target) }
	// A step that loses a race is decided again after the model caught
	// up, up to 20 times (a busy provider's reservations race often).
	steps := app.New(store, nil, app.WithWorker(cfg.ID, routing{store: store, model: model, defaults: policies}), app.WithMaxAttempts(20))
	g.Go(func() error {
		if !caughtUp() {
			return nil
		}
		return router.New(steps, store, model, proj.Halted, cfg.Skip, log).Run(gctx)
	})
	if !cfg.Scheduler.Disabled {
		g.Go(func() error {
			if !caughtUp() {
				return nil
			}
			return scheduler.New(cfg.ID, steps, store, model, proj.Halted, policies, cfg.Scheduler, log).Run(gctx)
		})
	}
	g.Go(func() error {
		if !caughtUp() {
			return nil
		}
		stop, err := queryserver.ServeQueries(nc, model, store)
		if err != nil {
			return err
		}
		serving.Store(true)
		log.Info("read model ready", "applied", model.Applied())
		if ready != nil {
			ready()
		}
		select {
		case <-gctx.Done():
		case <-proj.HaltedCh():
			log.Warn("read model stopped answering queries: its projection halted")
		}
		serving.Store(false)
		stop()
		return nil
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("worker %s: %w", cfg.ID, err)
	}
	log.Info("worker stopped", "applied", model.Applied())
	return nil
}

// waitCaughtUp waits until the model has applied target (true), its
// projection halts (halted is closed) or ctx ends.
func waitCaughtUp(ctx context.Context, model interface {
	WaitFor(context.Context, uint64) error
}, halted <-chan struct{}, target uint64) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-halted:
			cancel()
		case <-ctx.Done():
		}
	}()
	return model.WaitFor(ctx, target) == nil
}

// routing is the routing steps' view of this worker's read model.
type routing struct {
	store    *ijs.Store
	model    *bolt.Model
	defaults spa.Policies
}

func (r routing) Providers(borough string) ([]spa.Provider, error) {
	return r.model.Providers(bolt.ProviderFilter{Borough: borough})
}

func (r routing) AwaitingCapacity(borough string, service spa.Service) ([]spa.Referral, error) {
	return r.model.AwaitingCapacity(borough, service)
}

func (r routing) AwaitingTest() ([]spa.Referral, error) { return r.model.AwaitingTest() }

func (r routing) Policies() (spa.Policies, error) { return r.model.Policies(r.defaults) }

func (r routing) CatchUp(ctx context.Context) error {
	last, err := r.store.LastSequence(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return r.model.WaitFor(wctx, last)
}
