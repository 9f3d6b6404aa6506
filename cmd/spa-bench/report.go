package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
)

// report holds every figure of a run. BENCHMARKS.md defines them; the
// JSON names are what the figures table and scripts read.
type report struct {
	Machine machine `json:"machine"`
	Config  struct {
		Addr     string  `json:"addr"`
		Clients  int     `json:"clients"`
		Duration string  `json:"duration"`
		Rate     float64 `json:"rate"`
		Preload  int     `json:"preload"`
	} `json:"config"`

	PreloadEvents        uint64  `json:"preload_events"`
	PreloadReferrals     int     `json:"preload_referrals"`
	PreloadRouted        int     `json:"preload_routed"`
	PreloadSeconds       float64 `json:"preload_seconds"`
	PreloadEventsPerS    float64 `json:"preload_events_per_s"`
	StartSeconds         float64 `json:"start_seconds"`
	SettleSeconds        float64 `json:"settle_seconds"`
	LogEvents            uint64  `json:"log_events"`
	LogBytes             uint64  `json:"log_bytes"`
	SubmissionBytes      int     `json:"submission_bytes"`
	EventBytes           int     `json:"event_bytes"`
	EventsPerReferral    float64 `json:"events_per_referral"`
	CeilingPublishPerS   float64 `json:"ceiling_publish_per_s"`
	CeilingConsumePerS   float64 `json:"ceiling_consume_bbolt_per_s"`
	IngestReferralsPerS  float64 `json:"ingest_referrals_per_s"`
	IngestRatio          float64 `json:"ingest_ratio"`
	IngestCommandsPerS   float64 `json:"ingest_commands_per_s"`
	IngestEventsPerS     float64 `json:"ingest_events_per_s"`
	IngestEventsRatio    float64 `json:"ingest_events_ratio"`
	OpenLoopRate         float64 `json:"e2e_rate"`
	OpenLoopStartedPerS  float64 `json:"e2e_started_per_s"`
	E2EP50               float64 `json:"e2e_p50_ms"`
	E2EP95               float64 `json:"e2e_p95_ms"`
	E2EP99               float64 `json:"e2e_p99_ms"`
	E2EDelivered         int64   `json:"e2e_delivered"`
	E2EUndelivered       int64   `json:"e2e_undelivered"`
	CommandsPerS         float64 `json:"commands_per_s"`
	EventsPerS           float64 `json:"events_per_s"`
	LagP50               float64 `json:"projection_lag_p50_ms"`
	LagP99               float64 `json:"projection_lag_p99_ms"`
	LagMax               float64 `json:"projection_lag_max_ms"`
	LagMaxEvents         uint64  `json:"projection_lag_max_events"`
	BoardPageP50         float64 `json:"board_page_p50_ms"`
	BoardPageP99         float64 `json:"board_page_p99_ms"`
	FirstPageP99         float64 `json:"board_first_page_p99_ms"`
	UpdateCapacityP50    float64 `json:"update_capacity_p50_ms"`
	UpdateCapacityP99    float64 `json:"update_capacity_p99_ms"`
	UpdateCapacityOffers int64   `json:"update_capacity_provider_offers"`
	UpdateCapacityIdle   float64 `json:"update_capacity_idle_p99_ms"`
	UpdateCapacityRatio  float64 `json:"update_capacity_ratio"`
	RSS                  float64 `json:"rss_mb"`
	RSSIdle              float64 `json:"rss_idle_mb"`
	RSSPeak              float64 `json:"rss_peak_mb"`
	IdleCPU              float64 `json:"idle_cpu_pct"`
	RebuildEvents        uint64  `json:"rebuild_events"`
	RebuildSeconds       float64 `json:"rebuild_seconds"`
	RebuildEventsPerS    float64 `json:"rebuild_events_per_s"`
	RebuildRatio         float64 `json:"rebuild_ratio"`
	RebuildSwapMS        float64 `json:"rebuild_swap_ms"`
	TotalSeconds         float64 `json:"total_seconds"`

	// RPC are the latencies of each method, per phase.
	RPC map[string]map[string]summary `json:"rpc"`
	// Errors counts failed calls by method (and other failures).
	Errors map[string]int `json:"errors"`
	// Skipped names figures not measured, and why.
	Skipped []string `json:"skipped,omitempty"`
}

// machine is what the figures were measured on.
type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	MemoryMB  int    `json:"memory_mb,omitempty"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	GoVersion string `json:"go_version"`
}

func thisMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMB = kb / 1024
		}
	}
	return m
}

// print writes the report for a person to read, each figure beside its
// ceiling, and with asJSON then the whole report as one JSON object.
func (r *report) print(w io.Writer, asJSON bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	line("machine\t%d CPUs, %s, %d MiB, %s/%s, %s", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemoryMB, r.Machine.GOOS, r.Machine.GOARCH, r.Machine.GoVersion)
	line("run\tclients %d, phases of %s, open loop at %g referrals/s, preload %d events", r.Config.Clients, r.Config.Duration, r.Config.Rate, r.Config.Preload)
	if r.PreloadEvents > 0 {
		line("preload\t%d events (%d referrals, %d routed) in %.1f s: %.0f events/s", r.PreloadEvents, r.PreloadReferrals, r.PreloadRouted, r.PreloadSeconds, r.PreloadEventsPerS)
	}
	if r.StartSeconds > 0 {
		line("start\tserving after %.1f s, caught up with the log after %.1f s", r.StartSeconds, r.SettleSeconds)
	}
	line("log\t%d events, %d bytes; a submission %d bytes, an event %d bytes on average", r.LogEvents, r.LogBytes, r.SubmissionBytes, r.EventBytes)
	line("")
	line("figure\tvalue\tceiling\tratio")
	line("ingest (closed loop), referrals/s submitted..offered\t%.1f\t%.1f publishes/s\t%.3f", r.IngestReferralsPerS, r.CeilingPublishPerS, r.IngestRatio)
	line("ingest, events/s\t%.1f\t%.1f publishes/s\t%.3f", r.IngestEventsPerS, r.CeilingPublishPerS, r.IngestEventsRatio)
	line("ingest, commands/s\t%.1f\t\t", r.IngestCommandsPerS)
	line("rebuild from sequence 1, events/s\t%.0f\t%.0f consumed+written/s\t%.3f", r.RebuildEventsPerS, r.CeilingConsumePerS, r.RebuildRatio)
	line("submit -> offer on the watch at %g/s, p50 / p95 / p99 ms\t%.1f / %.1f / %.1f\t\t(%d delivered, %d not: counted at their wait)", r.OpenLoopRate, r.E2EP50, r.E2EP95, r.E2EP99, r.E2EDelivered, r.E2EUndelivered)
	line("open loop, commands/s / events/s\t%.1f / %.1f\t\t", r.CommandsPerS, r.EventsPerS)
	line("projection lag p50 / p99 / max ms, max events\t%.1f / %.1f / %.1f, %d\t\t", r.LagP50, r.LagP99, r.LagMax, r.LagMaxEvents)
	line("board page filtered by a rare site or status, p50 / p99 ms\t%.2f / %.2f\t\t(first page unfiltered p99 %.2f)", r.BoardPageP50, r.BoardPageP99, r.FirstPageP99)
	line("UpdateCapacity, busiest provider (%d offers), p50 / p99 ms\t%.2f / %.2f\t%.2f idle provider\t%.3f", r.UpdateCapacityOffers, r.UpdateCapacityP50, r.UpdateCapacityP99, r.UpdateCapacityIdle, r.UpdateCapacityRatio)
	line("server RSS now / idle / peak MiB\t%.1f / %.1f / %.1f\t\t", r.RSS, r.RSSIdle, r.RSSPeak)
	line("server idle CPU, %% of a core\t%.2f\t\t", r.IdleCPU)
	line("")
	line("phase\tmethod\tcalls\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\tretries")
	phases := make([]string, 0, len(r.RPC))
	for p := range r.RPC {
		phases = append(phases, p)
	}
	sort.Strings(phases)
	for _, p := range phases {
		methods := make([]string, 0, len(r.RPC[p]))
		for m := range r.RPC[p] {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		for _, m := range methods {
			s := r.RPC[p][m]
			line("%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d", p, m, s.Count, s.P50, s.P95, s.P99, s.Max, s.Errors, s.Retries)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Skipped {
		fmt.Fprintln(w, "not measured:", s)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "failures:", r.Errors)
	}
	fmt.Fprintf(w, "total %.1f s\n", r.TotalSeconds)
	if !asJSON {
		return nil
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}
