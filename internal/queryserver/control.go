package queryserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"spa/internal/bolt"
	"spa/internal/projection"
	"spa/internal/query"
)

// Control is what a worker's own status and rebuild requests are answered
// from.
type Control struct {
	// ID is the worker's id: its control subjects.
	ID    string
	Model *bolt.Model
	// Halted says why the worker's projection stopped (nil while it runs).
	Halted func() *projection.Halt
	// Feed is what a rebuild replays the log with.
	Feed bolt.Feed
	// Serving: the read model answers queries.
	Serving *atomic.Bool
	Log     *slog.Logger
}

// control answers a worker's own status and rebuild requests.
type control struct {
	Control
	admit    *admission
	mu       sync.Mutex
	progress *bolt.Progress     // of the running rebuild
	cancel   context.CancelFunc // of the running rebuild
	last     *query.RebuildStatus
	wg       sync.WaitGroup
}

// ServeControl registers a worker's control endpoints, which answer from
// its start whether or not its read model serves queries. stop cancels a
// running rebuild, waits for it and unregisters them.
func ServeControl(nc *nats.Conn, cfg Control) (stop func(), err error) {
	c := &control{Control: cfg, admit: newAdmission(0)}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        query.ControlServiceName,
		Version:     query.Version,
		Description: "SPA worker status and read model rebuilds",
		Metadata:    map[string]string{"worker": c.ID},
	})
	if err != nil {
		return nil, fmt.Errorf("queryserver: control service: %w", err)
	}
	status := func(req micro.Request) { respondJSON(req, c.status()) }
	endpoints := []struct {
		name, subject string
		h             micro.HandlerFunc
	}{
		{"statuses", query.SubjectStatuses, status},
		{"status", query.SubjectWorkerStatus(c.ID), status},
		{"digest", query.SubjectWorkerDigest(c.ID), digestOf(c.Model)},
		{"rebuild", query.SubjectWorkerRebuild(c.ID), c.rebuild},
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, c.admit.wrap(e.h), micro.WithEndpointSubject(e.subject), micro.WithEndpointQueueGroupDisabled()); err != nil {
			c.admit.close()
			svc.Stop()
			return nil, fmt.Errorf("queryserver: endpoint %s: %w", e.name, err)
		}
	}
	return func() {
		c.admit.close() // no rebuild starts after this
		c.mu.Lock()
		if c.cancel != nil {
			c.cancel()
		}
		c.mu.Unlock()
		c.wg.Wait()
		svc.Stop()
	}, nil
}

// status returns the worker's status now.
func (c *control) status() query.WorkerStatus {
	st := query.WorkerStatus{Worker: c.ID, Version: query.Version, Applied: c.Model.Applied(), Serving: c.Serving.Load(), Halt: c.Halted()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil {
		r := *c.last
		if c.progress != nil {
			r.Applied, r.Target = c.progress.Applied.Load(), c.progress.Target.Load()
			r.Phase, _ = c.progress.Phase.Load().(string)
		}
		st.Rebuild = &r
	}
	return st
}

// rebuild starts or cancels a rebuild and answers with the status; a
// start while one runs is answered with a conflict.
func (c *control) rebuild(req micro.Request) {
	var r query.RebuildRequest
	if err := json.Unmarshal(req.Data(), &r); err != nil {
		req.Error(query.CodeInvalid, "malformed rebuild request", nil)
		return
	}
	switch r.Action {
	case "start":
		if err := c.start(); err != nil {
			data, _ := json.Marshal(c.status())
			req.Error(query.CodeConflict, err.Error(), data)
			return
		}
	case "cancel":
		c.mu.Lock()
		if c.cancel != nil {
			c.cancel()
		}
		c.mu.Unlock()
	default:
		req.Error(query.CodeInvalid, fmt.Sprintf("unknown rebuild action %q: want start or cancel", r.Action), nil)
		return
	}
	respondJSON(req, c.status())
}

// errRebuildBusy answers a start while a rebuild runs.
var errRebuildBusy = errors.New("busy: a rebuild of this worker's read model is already running")

// start runs a rebuild in the background, one at a time.
func (c *control) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return errRebuildBusy
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := new(bolt.Progress)
	c.cancel, c.progress = cancel, p
	c.last = &query.RebuildStatus{State: query.RebuildRunning, Started: time.Now().UTC()}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		c.Log.Info("rebuild started", "applied", c.Model.Applied())
		res, err := c.Model.Rebuild(ctx, c.Feed, p)
		c.mu.Lock()
		defer c.mu.Unlock()
		out := &query.RebuildStatus{State: query.RebuildSwapped, Started: c.last.Started, Finished: time.Now().UTC(),
			Applied: p.Applied.Load(), Target: p.Target.Load(),
			ComparedAt: res.Applied, Live: res.Live, Rebuilt: res.Rebuilt, SwapMillis: float64(res.Swap.Microseconds()) / 1000}
		switch {
		case errors.Is(err, context.Canceled):
			out.State, out.Error = query.RebuildCancelled, "cancelled"
		case err != nil:
			out.State, out.Error = query.RebuildFailed, err.Error()
		}
		c.last, c.cancel, c.progress = out, nil, nil
		c.Log.Info("rebuild ended", "state", out.State, "compared_at", out.ComparedAt, "swap_ms", out.SwapMillis, "err", out.Error)
	}()
	return nil
}
