package worker

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"spa/internal/bolt"
	ijs "spa/internal/jetstream"
	"spa/internal/projection"
	"spa/internal/queryserver"
)

// AccessIndexFile is the access index's file name inside the data
// directory (ADR 33).
const AccessIndexFile = "access.db"

// runAccessIndex keeps this worker's access index (the access log by
// referral and by patient) and answers ListAccess queries from it until
// ctx ends, then closes it. Like the read model, it answers only once it
// has caught up with the access log as it stood at start, and no longer
// once its projection halts.
func runAccessIndex(ctx context.Context, nc *nats.Conn, store *ijs.Store, dataDir string, log *slog.Logger) error {
	access, err := store.OpenAccessLog(ctx, ijs.Requirements{Log: log})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	index, err := bolt.OpenAccessIndex(filepath.Join(dataDir, AccessIndexFile))
	if err != nil {
		return err
	}
	defer index.Close()
	logID, target, err := access.Identity(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	applied := index.Applied()
	reset, err := index.Bind(logID, target)
	if err != nil {
		return err
	}
	if reset {
		log.Warn("access index was built from another access log: building it again from sequence 1", "was_applied", applied, "log", logID, "log_last", target)
	}
	proj := projection.NewAccess(access, index, log)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return proj.Run(gctx) })
	g.Go(func() error {
		if !waitCaughtUp(gctx, index, proj.HaltedCh(), target) {
			return nil
		}
		stop, err := queryserver.ServeAccess(nc, index)
		if err != nil {
			return err
		}
		log.Info("access index ready", "applied", index.Applied())
		select {
		case <-gctx.Done():
		case <-proj.HaltedCh():
			log.Warn("access index stopped answering queries: its projection halted")
		}
		stop()
		return nil
	})
	return g.Wait()
}
