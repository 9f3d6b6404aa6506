package config

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"spa/internal/projection"
	"spa/internal/spa"
	"spa/internal/worker"
)

// WorkerFlags are the flags of a worker, shared by spa-worker and the
// all-in-one spa-server.
type WorkerFlags struct {
	ID        string
	Scheduler bool
	Hours     string
	Overlay   string
	From      string
	Skip      string
}

// Register adds the worker flags to fs.
func (w *WorkerFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&w.ID, "worker-id", "", "name of this worker's durable consumer; default derived from host and data dir")
	fs.BoolVar(&w.Scheduler, "scheduler", true, "take part in raising clock alerts (one worker at a time holds the lease)")
	fs.StringVar(&w.Hours, "operating-hours", "08:00-20:00", "the SPA's hours each day, UK time, for clocks that count only them")
	fs.StringVar(&w.Overlay, "infection-overlay", "", "no longer used: switch the overlay with `spa-ctl policy` (a switch recorded in the log)")
	fs.StringVar(&w.From, "infection-overlay-from", "", "no longer used: see --infection-overlay")
	fs.StringVar(&w.Skip, "skip-undecodable", "", "sequences of undecodable events to step over, comma separated (an operator's decision, for every worker alike: docs/operations.md)")
}

// Config validates the flags and returns the worker's configuration.
func (w *WorkerFlags) Config(dataDir string, now time.Time) (worker.Config, error) {
	cfg := worker.Config{DataDir: dataDir, ID: w.ID, Policies: spa.DefaultPolicies}
	if cfg.ID == "" {
		cfg.ID = DefaultWorkerID(dataDir)
	}
	if err := worker.ValidateID(cfg.ID); err != nil {
		return cfg, fmt.Errorf("--worker-id: %w", err)
	}
	cfg.Scheduler.Disabled = !w.Scheduler
	for s := range strings.SplitSeq(w.Skip, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		seq, err := strconv.ParseUint(s, 10, 64)
		if err != nil || seq == 0 {
			return cfg, fmt.Errorf("--skip-undecodable %q: want sequences (1234,5678)", w.Skip)
		}
		if cfg.Skip == nil {
			cfg.Skip = projection.Skips{}
		}
		cfg.Skip[seq] = true
	}
	open, close, ok := strings.Cut(w.Hours, "-")
	o, err1 := minutes(open)
	c, err2 := minutes(close)
	if !ok || err1 != nil || err2 != nil {
		return cfg, fmt.Errorf("--operating-hours %q: want HH:MM-HH:MM", w.Hours)
	}
	cfg.Scheduler.Hours = spa.OperatingHours{Open: o, Close: c}
	if err := cfg.Scheduler.Hours.Validate(); err != nil {
		return cfg, fmt.Errorf("--operating-hours: %w", err)
	}
	if w.Overlay != "" || w.From != "" {
		// A flag read by one worker made workers route differently, and
		// what it meant was not in the log.
		return cfg, fmt.Errorf("--infection-overlay and --infection-overlay-from are no longer used: switch the overlay with " +
			"`spa-ctl policy --rule infection-overlay --on|--off --from DATE --reason TEXT`, recorded in the log for every worker (ADR 20)")
	}
	return cfg, nil
}

// minutes parses "HH:MM" (00:00-24:00) as minutes after midnight.
func minutes(s string) (int, error) {
	var h, m int
	if n, err := fmt.Sscanf(s, "%d:%d", &h, &m); n != 2 || err != nil || len(s) != 5 || h < 0 || m < 0 || m > 59 || h*60+m > 24*60 {
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return h*60 + m, nil
}
