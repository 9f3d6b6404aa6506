package config

import (
	"flag"
	"io"
	"testing"
	"time"

	"spa/internal/spa"
)

func TestWorkerFlags(t *testing.T) {
	t.Parallel()
	parse := func(args ...string) (*WorkerFlags, error) {
		var w WorkerFlags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		w.Register(fs)
		return &w, Parse(fs, args, func(k string) string { return map[string]string{"SPA_OPERATING_HOURS": "07:30-21:00"}[k] })
	}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	w, err := parse("--worker-id", "w1", "--skip-undecodable", "17, 42")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := w.Config("data", now)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "w1" || cfg.Scheduler.Hours != (spa.OperatingHours{Open: 450, Close: 1260}) || cfg.Scheduler.Disabled || len(cfg.Skip) != 2 || !cfg.Skip[17] || !cfg.Skip[42] {
		t.Fatalf("config %+v", cfg)
	}
	if p := cfg.Policies.At(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); p.Version != "2023.1" {
		t.Fatalf("policy %+v; the flags seed only the built-in dated policies", p)
	}
	w, _ = parse("--operating-hours", "00:00-24:00", "--scheduler=false")
	if cfg, err := w.Config("data", now); err != nil || cfg.Scheduler.Hours != (spa.OperatingHours{Open: 0, Close: 1440}) || !cfg.Scheduler.Disabled || cfg.ID == "" {
		t.Fatalf("all day: %+v %v", cfg, err)
	}
	for _, args := range [][]string{
		{"--operating-hours", "20:00-08:00"}, {"--operating-hours", "8-20"}, {"--operating-hours", "08:00-24:01"},
		{"--infection-overlay", "on"}, {"--infection-overlay-from", "2026-12-01"},
		{"--skip-undecodable", "12,x"}, {"--skip-undecodable", "0"}, {"--worker-id", "a b"},
	} {
		w, err := parse(args...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Config("data", now); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
