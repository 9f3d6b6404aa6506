// Command spa-worker projects the SPA event log into its own bbolt read
// model and answers queries from it. Run any number, each with its own
// --data-dir, against the NATS server or cluster that spa-server uses:
//
//	go run ./cmd/spa-worker --nats-url nats://127.0.0.1:4222 --nats-nkey ./data/nats/worker.nk --data-dir ./worker-data --signing-key ./data/signing.key
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"spa/internal/config"
	"spa/internal/datadir"
	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/signing"
	"spa/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := realMain(ctx, os.Args[1:], os.Getenv, log); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "spa-worker:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, getenv func(string) string, log *slog.Logger) error {
	var natsURL, dataDir, keyFile string
	var minReplicas int
	var wf config.WorkerFlags
	auth := natsauth.Client{Identity: natsauth.Worker}
	fs := flag.NewFlagSet("spa-worker", flag.ContinueOnError)
	fs.StringVar(&natsURL, "nats-url", "", "NATS server or cluster URL(s), comma separated (required)")
	fs.StringVar(&dataDir, "data-dir", "./worker-data", "directory of this worker's read model; one worker per directory")
	wf.Register(fs)
	fs.StringVar(&keyFile, "signing-key", "", "file of the Ed25519 key the router's and the clocks' events are signed with, the deployment's (spa-ctl signing-key makes one; required)")
	auth.Register(fs)
	fs.IntVar(&minReplicas, "min-replicas", 1, "refuse to start unless the event stream has at least this many replicas (spa-ctl init creates it)")
	if err := config.Parse(fs, args, getenv); err != nil {
		return err
	}
	if natsURL == "" {
		return errors.New("--nats-url is required (spa-server runs a worker itself in the all-in-one mode)")
	}
	if keyFile == "" {
		return errors.New("--signing-key is required: the router and the clocks append events, and every event is signed with the deployment's key (make one with `spa-ctl signing-key --out DIR`; docs/audit.md)")
	}
	key, err := signing.LoadKey(keyFile)
	if err != nil {
		return err
	}
	cfg, err := wf.Config(dataDir, time.Now())
	if err != nil {
		return err
	}
	opts, err := auth.Options()
	if err != nil {
		return err
	}
	cfg.Log = log
	unlock, err := datadir.Lock(dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	nc, err := jetstream.Dial(natsURL, "spa-worker "+cfg.ID, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	log.Info("signing events", "public_key", key.PublicKey(), "key_file", keyFile)
	store, err := jetstream.Open(ctx, nc, jetstream.Requirements{MinReplicas: minReplicas, Log: log, Skip: cfg.Skip, Signer: key})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the stream
		}
		return err
	}
	err = worker.Run(ctx, nc, store, cfg, nil)
	if derr := jetstream.Drain(nc, 5*time.Second); derr != nil && err == nil {
		err = derr
	}
	return err
}
