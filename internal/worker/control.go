package worker

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
)

// The control protocol: every worker answers on subjects of its own (no
// queue group), from the moment it starts, whether or not its read model
// serves queries. Replies are JSON.
const (
	ControlServiceName = "spa-worker"
	// SubjectStatuses reaches every worker: each answers with its
	// WorkerStatus.
	SubjectStatuses = "spa.worker.status"
	// subjectWorker is the prefix of one worker's own subjects:
	// spa.worker.<id>.status and spa.worker.<id>.rebuild.
	subjectWorker = "spa.worker."
)

// SubjectWorkerStatus is the subject of one worker's status.
func SubjectWorkerStatus(id string) string { return subjectWorker + id + ".status" }

// SubjectWorkerDigest is the subject of one worker's read model digest (a
// Status).
func SubjectWorkerDigest(id string) string { return subjectWorker + id + ".digest" }

// SubjectWorkerRebuild is the subject of one worker's rebuild requests
// (a RebuildRequest; the answer is its WorkerStatus).
func SubjectWorkerRebuild(id string) string { return subjectWorker + id + ".rebuild" }

// WorkerStatus is what a worker says of itself.
type WorkerStatus struct {
	Worker  string `json:"worker"`
	Version string `json:"version"`
	// Applied is the read model's applied sequence.
	Applied uint64 `json:"applied"`
	// Serving: the read model answers queries (it has caught up and has
	// not halted).
	Serving bool `json:"serving"`
	// Halt, when set, says where and why the projection stopped.
	Halt *Halt `json:"halt,omitempty"`
	// Rebuild is the running or the last rebuild, if any.
	Rebuild *RebuildStatus `json:"rebuild,omitempty"`
}

// RebuildStatus reports a rebuild.
type RebuildStatus struct {
	// State is running, swapped, failed or cancelled.
	State string `json:"state"`
	// Phase, while running: replaying, checking or swapping.
	Phase string `json:"phase,omitempty"`
	// Applied is the sequence the new file has reached, of Target.
	Applied  uint64    `json:"applied"`
	Target   uint64    `json:"target"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// ComparedAt, Live and Rebuilt: the digests compared, and where.
	ComparedAt uint64 `json:"compared_at,omitempty"`
	Live       string `json:"live_digest,omitempty"`
	Rebuilt    string `json:"rebuilt_digest,omitempty"`
	// SwapMillis is how long queries and the projection waited for the
	// swap.
	SwapMillis float64 `json:"swap_ms,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// Rebuild states.
const (
	RebuildRunning   = "running"
	RebuildSwapped   = "swapped"
	RebuildFailed    = "failed"
	RebuildCancelled = "cancelled"
)

// RebuildRequest asks a worker to start or cancel a rebuild of its read
// model.
type RebuildRequest struct {
	// Action is "start" or "cancel".
	Action string `json:"action"`
}

// control answers a worker's own status and rebuild requests.
type control struct {
	id      string
	model   *bolt.Model
	proj    *Projector
	feed    bolt.Feed
	log     *slog.Logger
	serving *atomic.Bool

	admit    *admission
	mu       sync.Mutex
	progress *bolt.Progress     // of the running rebuild
	cancel   context.CancelFunc // of the running rebuild
	last     *RebuildStatus
	wg       sync.WaitGroup
}

// serveControl registers the worker's control endpoints. stop cancels a
// running rebuild, waits for it and unregisters them.
func serveControl(nc *nats.Conn, c *control) (stop func(), err error) {
	c.admit = newAdmission(0)
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ControlServiceName,
		Version:     Version,
		Description: "SPA worker status and read model rebuilds",
		Metadata:    map[string]string{"worker": c.id},
	})
	if err != nil {
		return nil, fmt.Errorf("worker: control service: %w", err)
	}
	status := func(req micro.Request) { respondJSON(req, c.status()) }
	endpoints := []struct {
		name, subject string
		h             micro.HandlerFunc
	}{
		{"statuses", SubjectStatuses, status},
		{"status", SubjectWorkerStatus(c.id), status},
		{"digest", SubjectWorkerDigest(c.id), digestOf(c.model)},
		{"rebuild", SubjectWorkerRebuild(c.id), c.rebuild},
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, c.admit.wrap(e.h), micro.WithEndpointSubject(e.subject), micro.WithEndpointQueueGroupDisabled()); err != nil {
			c.admit.close()
			svc.Stop()
			return nil, fmt.Errorf("worker: endpoint %s: %w", e.name, err)
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
func (c *control) status() WorkerStatus {
	st := WorkerStatus{Worker: c.id, Version: Version, Applied: c.model.Applied(), Serving: c.serving.Load(), Halt: c.proj.Halted()}
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
	var r RebuildRequest
	if err := json.Unmarshal(req.Data(), &r); err != nil {
		req.Error(codeInvalid, "malformed rebuild request", nil)
		return
	}
	switch r.Action {
	case "start":
		if err := c.start(); err != nil {
			data, _ := json.Marshal(c.status())
			req.Error(codeConflict, err.Error(), data)
			return
		}
	case "cancel":
		c.mu.Lock()
		if c.cancel != nil {
			c.cancel()
		}
		c.mu.Unlock()
	default:
		req.Error(codeInvalid, fmt.Sprintf("unknown rebuild action %q: want start or cancel", r.Action), nil)
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
	c.last = &RebuildStatus{State: RebuildRunning, Started: time.Now().UTC()}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		c.log.Info("rebuild started", "applied", c.model.Applied())
		res, err := c.model.Rebuild(ctx, c.feed, p)
		c.mu.Lock()
		defer c.mu.Unlock()
		out := &RebuildStatus{State: RebuildSwapped, Started: c.last.Started, Finished: time.Now().UTC(),
			Applied: p.Applied.Load(), Target: p.Target.Load(),
			ComparedAt: res.Applied, Live: res.Live, Rebuilt: res.Rebuilt, SwapMillis: float64(res.Swap.Microseconds()) / 1000}
		switch {
		case errors.Is(err, context.Canceled):
			out.State, out.Error = RebuildCancelled, "cancelled"
		case err != nil:
			out.State, out.Error = RebuildFailed, err.Error()
		}
		c.last, c.cancel, c.progress = out, nil, nil
		c.log.Info("rebuild ended", "state", out.State, "compared_at", out.ComparedAt, "swap_ms", out.SwapMillis, "err", out.Error)
	}()
	return nil
}
