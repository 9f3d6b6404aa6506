package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain lets the test binary be the bench's child server too: the bench
// runs its own executable with serverCommand.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == serverCommand {
		os.Exit(serveChild(os.Args[2:]))
	}
	goleak.VerifyTestMain(m)
}

// TestSmoke runs the whole bench, every phase tiny, on a preloaded log and
// checks that the JSON object that ends its output holds every figure,
// each measured (non-zero) and sane, and that the preload built the log
// it was asked for.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server twice and every phase of the bench")
	}
	const preload = 400
	var out, progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := realMain(ctx, []string{"--json", "--preload", "400", "--preload-callers", "8", "--clients", "2",
		"--duration", "3s", "--rate", "10", "--drain", "30s", "--ceiling-duration", "300ms", "--samples", "5", "--idle", "300ms"}, &out, &progress)
	if err != nil {
		t.Fatalf("spa-bench: %v\n%s", err, progress.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("the output does not end with a JSON object: %v\n%s", err, out.String())
	}
	number := func(key string) float64 {
		t.Helper()
		v, ok := r[key].(float64)
		if !ok {
			t.Errorf("%s: missing or not a number: %v", key, r[key])
		}
		return v
	}
	for key, sane := range map[string][2]float64{
		// Ratios to the machine's ceilings.
		"ingest_ratio":  {0, 10},
		"rebuild_ratio": {0, 10},
		// Milliseconds.
		"e2e_p50_ms":                  {0, 60_000},
		"e2e_p99_ms":                  {0, 60_000},
		"board_page_p99_ms":           {0, 60_000},
		"board_first_page_p99_ms":     {0, 60_000},
		"update_capacity_p99_ms":      {0, 60_000},
		"update_capacity_idle_p99_ms": {0, 60_000},
		// Rates.
		"ingest_referrals_per_s":      {0, 1e6},
		"commands_per_s":              {0, 1e6},
		"events_per_s":                {0, 1e6},
		"rebuild_events_per_s":        {0, 1e8},
		"ceiling_publish_per_s":       {0, 1e7},
		"ceiling_consume_bbolt_per_s": {0, 1e8},
		// The server and its log.
		"rss_mb":           {1, 100_000},
		"submission_bytes": {100, 100_000},
		"log_events":       {preload, 1e6},
		"rebuild_events":   {preload, 1e6},
		"e2e_delivered":    {0, 1e6},
	} {
		if v := number(key); !(v > sane[0] && v < sane[1]) {
			t.Errorf("%s = %v, want in (%v, %v)", key, v, sane[0], sane[1])
		}
	}
	if got := number("preload_events"); got != preload {
		t.Errorf("preload_events = %v, want %d", got, preload)
	}
	if t.Failed() {
		t.Logf("output:\n%s\nprogress:\n%s", out.String(), progress.String())
	}
}

// TestConfigErrors: bad flags are refused before anything runs, all at
// once.
func TestConfigErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--clients", "0"},
		{"--rate", "-1"},
		{"--duration", "0s"},
		{"--preload", "-5"},
		{"--preload-routed", "1.5"},
		{"--addr", "127.0.0.1:1", "--preload", "10"},
		{"--tls-ca", "ca.crt"},
		{"--tls-ca", "ca.crt", "--tls-certs", "dir"}, // TLS without --addr
		{"--nats-url", "nats://127.0.0.1:4222"},      // NATS without --addr
		{"extra"},
	} {
		if _, err := parseConfig(args, io.Discard); err == nil {
			t.Errorf("parseConfig(%v) accepted", args)
		}
	}
	_, err := parseConfig([]string{"--clients", "0", "--rate", "0"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--clients") || !strings.Contains(err.Error(), "--rate") {
		t.Errorf("parseConfig named %v, want both bad flags", err)
	}
	if _, err := parseConfig(nil, io.Discard); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}
}
