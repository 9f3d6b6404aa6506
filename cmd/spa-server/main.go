// Command spa-server is the SPA's gRPC front door. With no --nats-url it
// runs everything in one process: an embedded nats-server with JetStream
// (files under --data-dir) and a worker that projects the read model.
//
//	go run ./cmd/spa-server
//
// The server itself is internal/server.
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

	spaserver "spa/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := spaserver.Run(ctx, os.Args[1:], os.Getenv, log, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "spa-server:", err)
		os.Exit(1)
	}
}
