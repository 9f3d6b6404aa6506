// Package worker is what spa-worker runs, and what spa-server runs in the
// all-in-one mode: it projects the event log into this worker's own bbolt
// read model, answers queries from it over NATS request/reply, routes
// referrals to providers, and (one worker at a time) raises the clocks'
// alerts.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"spa/internal/bolt"
	"spa/internal/codec"
	"spa/internal/jetstream"
	"spa/internal/spa"
)

// Version is the worker's version, reported by its query service.
const Version = "0.1.0"

// ReadModelFile is the read model's file name inside the data directory.
const ReadModelFile = "readmodel.db"

// Config configures a worker.
type Config struct {
	// DataDir holds the read model file; one worker owns it.
	DataDir string
	// ID names this worker's durable consumer; unique per read model.
	ID string
	// Policies are the routing policies; nil means spa.DefaultPolicies.
	Policies spa.Policies
	// Scheduler configures the clock scheduler.
	Scheduler SchedulerConfig
	Log       *slog.Logger
}

// Run projects and serves until ctx ends, then stops answering queries,
// commits the batch in hand and closes the read model. Queries are served
// only once the model has caught up with the log as it stood at start, so
// a restarted worker never answers from a stale file; ready (may be nil) is
// called then.
func Run(ctx context.Context, nc *nats.Conn, store *jetstream.Store, cfg Config, ready func()) error {
	model, err := bolt.Open(filepath.Join(cfg.DataDir, ReadModelFile))
	if err != nil {
		return err
	}
	defer model.Close()
	target, err := store.LastSequence(ctx)
	if err != nil {
		return err
	}
	log := cfg.Log.With("worker", cfg.ID)
	log.Info("read model opened", "applied", model.Applied(), "catching_up_to", target)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return NewProjector(store.Stream(), model, cfg.ID, log).Run(gctx)
	})
	policies := cfg.Policies
	if policies == nil {
		policies = spa.DefaultPolicies
	}
	g.Go(func() error {
		if err := model.WaitFor(gctx, target); err != nil {
			return nil // stopping before catch-up
		}
		return NewRouter(cfg.ID, store, model, policies, log).Run(gctx)
	})
	if !cfg.Scheduler.Disabled {
		g.Go(func() error {
			if err := model.WaitFor(gctx, target); err != nil {
				return nil // stopping before catch-up
			}
			return NewScheduler(cfg.ID, store, model, cfg.Scheduler, log).Run(gctx)
		})
	}
	g.Go(func() error {
		if err := model.WaitFor(gctx, target); err != nil {
			return nil // stopping before catch-up
		}
		stop, err := serveQueries(nc, cfg.ID, model, feedFrom(store))
		if err != nil {
			return err
		}
		defer stop()
		log.Info("read model ready", "applied", model.Applied())
		if ready != nil {
			ready()
		}
		<-gctx.Done()
		return nil
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("worker %s: %w", cfg.ID, err)
	}
	return nil
}

// feedFrom feeds a read model from the event log, a thousand events per
// transaction.
func feedFrom(store *jetstream.Store) bolt.Feed {
	return func(ctx context.Context, m *bolt.Model, from, to uint64) error {
		var batch []bolt.Entry
		flush := func() error {
			err := m.Apply(batch)
			batch = batch[:0]
			return err
		}
		err := store.Replay(ctx, spa.EventFilter{FromSeq: from, ToSeq: to}, func(e spa.StoredEvent) error {
			rec, err := codec.UnmarshalRecord(e.Sequence, e.Data)
			if err != nil {
				return err
			}
			batch = append(batch, bolt.Entry{Record: rec, Raw: e.Data})
			if len(batch) == fetchBatch {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
		return flush()
	}
}
