// Package server runs SPA's gRPC front door as spa-server does: it reads
// the configuration, starts the embedded nats-server of the all-in-one mode
// (or connects to a NATS cluster), runs the in-process worker, serves the
// API until its context ends and shuts down in order. cmd/spa-server is
// its main; spa-bench runs it too, as a child process.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"spa/internal/app"
	"spa/internal/checkpoint"
	"spa/internal/datadir"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/pki"
	"spa/internal/query"
	"spa/internal/rpc"
	"spa/internal/signing"
	"spa/internal/spa"
	"spa/internal/worker"
)

// Run runs the server configured by args (spa-server's flags) and getenv
// until ctx ends, then shuts down in order: stop taking calls and finish
// those in flight, stop the worker (its last batch is committed and the
// read model closed), drain NATS, stop the embedded server. serving, if
// not nil, is told the gRPC address once it listens. A bad configuration
// is an error before anything starts (flag.ErrHelp for --help).
func Run(ctx context.Context, args []string, getenv func(string) string, log *slog.Logger, serving func(net.Addr)) error {
	cfg, err := ParseConfig(args, getenv, os.Stderr)
	if err != nil {
		return err
	}

	if cfg.NATSURL == "" || cfg.Worker {
		// The embedded store and the worker's read model: one process.
		unlock, err := datadir.Lock(cfg.DataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	// nc is the server's connection; wnc the in-process worker's, which
	// has an identity of its own on the embedded server.
	var nc, wnc *nats.Conn
	if cfg.NATSURL == "" {
		var emb *jetstream.Embedded
		if emb, nc, wnc, err = startEmbedded(ctx, cfg, log); err != nil {
			return err
		}
		defer emb.Shutdown()
	} else {
		opts, err := cfg.NATS.Options()
		if err != nil {
			return err
		}
		if nc, err = jetstream.Dial(cfg.NATSURL, "spa-server", opts...); err != nil {
			return err
		}
		wnc = nc
	}
	defer nc.Close()
	if wnc != nil && wnc != nc {
		defer wnc.Close()
	}
	key, err := signingKey(cfg, log)
	if err != nil {
		return err
	}
	req := jetstream.Requirements{MinReplicas: cfg.MinReplicas, Log: log, Skip: cfg.WorkerConfig.Skip, Signer: key}
	store, err := jetstream.Open(ctx, nc, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the streams
		}
		return err
	}
	access, err := store.OpenAccessLog(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	checkpoints, err := store.OpenCheckpoints(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	signer := checkpoint.New(store, checkpoints, key, log)
	reads := query.NewClient(nc)
	application := app.New(store, reads, app.WithAudit(jetstream.NewFeed(store, reads, 0), access))

	var creds []grpc.ServerOption
	if cfg.Dev() {
		log.Warn("DEVELOPMENT MODE: plaintext gRPC on loopback, and callers state their own organisation and role in metadata; " +
			"run with --tls-cert, --tls-key and --tls-client-ca for anything but development (README, Production)")
	} else {
		tlsCfg, err := pki.ServerTLS(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA)
		if err != nil {
			return err
		}
		creds = append(creds, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if a, ok := lis.Addr().(*net.TCPAddr); cfg.Dev() && (!ok || !a.IP.IsLoopback()) {
		lis.Close() // "localhost" resolved beyond this machine
		return fmt.Errorf("--listen %s: the development mode serves loopback only, and it resolved to %s", cfg.Listen, lis.Addr())
	}
	// Limits first: a call over them reaches nothing else. Then who calls,
	// and whether their role may call the method.
	opts := append(creds, cfg.Limits.ServerOptions()...)
	opts = append(opts, rpc.Auth{Dev: cfg.Dev(), App: application, Log: log}.ServerOptions()...)
	opts = append(opts, rpc.Codec(), grpc.ChainUnaryInterceptor(rpc.ErrorInterceptor(log)), grpc.ChainStreamInterceptor(rpc.StreamErrorInterceptor(log)))
	srv := grpc.NewServer(opts...)
	spav1.RegisterReferralServiceServer(srv, rpc.NewReferrals(application))
	spav1.RegisterProviderServiceServer(srv, rpc.NewProviders(application))
	spav1.RegisterPolicyServiceServer(srv, rpc.NewPolicies(application, spa.DefaultPolicies))
	stopping := make(chan struct{})
	spav1.RegisterAssignmentServiceServer(srv, rpc.NewAssignments(application, cfg.WatchHeartbeat, stopping))
	spav1.RegisterAuditServiceServer(srv, rpc.NewAudit(application))
	healthSrv := health.NewServer()
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	for _, name := range services {
		healthSrv.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	healthpb.RegisterHealthServer(srv, healthSrv)
	if cfg.Reflection {
		reflection.Register(srv)
	}

	// The worker outlives the gRPC server: it stops only once in-flight
	// calls have finished, so none of them loses its read model.
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	g, gctx := errgroup.WithContext(ctx)
	if cfg.Worker {
		g.Go(func() error {
			wcfg := cfg.WorkerConfig
			wcfg.Log = log
			wstore := store
			if wnc != nc {
				var err error
				if wstore, err = jetstream.Open(workerCtx, wnc, req); err != nil {
					return err
				}
			}
			return worker.Run(workerCtx, wnc, wstore, wcfg, nil)
		})
	}
	g.Go(func() error {
		watchHealth(gctx, healthSrv, nc, store, reads, log)
		return nil
	})
	if cfg.CheckpointEvery > 0 {
		g.Go(func() error {
			signer.Run(gctx, cfg.CheckpointEvery)
			return nil
		})
	}
	g.Go(func() error { return signer.Serve(gctx, nc) })
	g.Go(func() error {
		log.Info("serving gRPC", "addr", lis.Addr().String(), "tls", !cfg.Dev(), "worker", cfg.Worker, "reflection", cfg.Reflection)
		if serving != nil {
			serving(lis.Addr())
		}
		return srv.Serve(lis)
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down")
		healthSrv.Shutdown()
		close(stopping) // end watch streams: they would hold GracefulStop
		gracefulStop(srv, cfg.ShutdownGrace)
		stopWorker()
		return nil
	})
	err = g.Wait()
	// A last checkpoint, once this process appends no more.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	if res, cerr := signer.Make(cctx); cerr != nil {
		log.Warn("checkpoint at shutdown", "err", cerr)
	} else if res.Made {
		log.Info("checkpoint signed at shutdown", "sequence", res.Checkpoint.Sequence)
	}
	cancel()
	conns := []*nats.Conn{nc}
	if wnc != nil && wnc != nc {
		conns = append(conns, wnc)
	}
	for _, c := range conns {
		if derr := jetstream.Drain(c, 5*time.Second); derr != nil && err == nil {
			log.Warn("nats drain", "err", derr)
		}
	}
	log.Info("stopped")
	return err
}

// signingKey loads the key events and checkpoints are signed with: the
// --signing-key file, or in the all-in-one mode the data directory's,
// made on first start. Its public key is logged: what an auditor keeps.
func signingKey(cfg Config, log *slog.Logger) (*signing.Key, error) {
	if cfg.SigningKey != "" {
		key, err := signing.LoadKey(cfg.SigningKey)
		if err == nil {
			log.Info("signing events and checkpoints", "public_key", key.PublicKey(), "key_file", cfg.SigningKey)
		}
		return key, err
	}
	key, created, err := signing.LoadOrCreate(cfg.DataDir, "spa-server")
	if err != nil {
		return nil, err
	}
	log.Info("signing events and checkpoints", "public_key", key.PublicKey(), "key_file", filepath.Join(cfg.DataDir, signing.KeyFile),
		"public_key_file", filepath.Join(cfg.DataDir, signing.PublicKeyFile), "created", created)
	return key, nil
}

// startEmbedded starts the all-in-one mode's nats-server, with an nkey
// for each identity under DATA_DIR/nats (made on the first start), makes
// SPA's streams there as the admin identity (on a cluster `spa-ctl init`
// does, docs/adr/0010), and returns the server's connection and, when a
// worker runs here, the worker's.
func startEmbedded(ctx context.Context, cfg Config, log *slog.Logger) (emb *jetstream.Embedded, nc, wnc *nats.Conn, err error) {
	dir := filepath.Join(cfg.DataDir, "nats")
	users, err := natsauth.EnsureSeeds(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: cfg.DataDir, Listen: cfg.NATSListen, NoSync: cfg.NoSync,
		Users: users, EncryptionKey: cfg.EncryptionKey, PreviousKey: cfg.PreviousKey})
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if err != nil {
			e.Shutdown()
		}
	}()
	var opened []*nats.Conn
	connect := func(id natsauth.Identity) (*nats.Conn, error) {
		opts, err := natsauth.Client{Identity: id, NkeyFile: natsauth.SeedFile(dir, id)}.Options()
		if err != nil {
			return nil, err
		}
		c, err := e.Connect("spa-"+string(id), opts...)
		if err == nil {
			opened = append(opened, c)
		}
		return c, err
	}
	defer func() {
		if err != nil {
			for _, c := range opened {
				c.Close()
			}
		}
	}()
	admin, err := connect(natsauth.Admin)
	if err != nil {
		return nil, nil, nil, err
	}
	_, err = jetstream.Provision(ctx, admin, jetstream.Setup{Replicas: 1})
	admin.Close()
	if err != nil {
		return nil, nil, nil, err
	}
	if nc, err = connect(natsauth.Server); err != nil {
		return nil, nil, nil, err
	}
	if cfg.Worker {
		if wnc, err = connect(natsauth.Worker); err != nil {
			return nil, nil, nil, err
		}
	}
	log.Info("embedded nats-server started", "data_dir", cfg.DataDir, "fsync_every_write", !cfg.NoSync, "encrypted", cfg.EncryptionKey != "",
		"client_url", e.ClientURL(), "identities", dir)
	return e, nc, wnc, nil
}

// services are the API's services, each with a health status.
var services = []string{
	spav1.ReferralService_ServiceDesc.ServiceName,
	spav1.ProviderService_ServiceDesc.ServiceName,
	spav1.AssignmentService_ServiceDesc.ServiceName,
	spav1.AuditService_ServiceDesc.ServiceName,
	spav1.PolicyService_ServiceDesc.ServiceName,
}

// gracefulStop lets in-flight calls finish, up to grace, then cuts them.
func gracefulStop(srv *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		srv.Stop()
		<-done
	}
}

// watchHealth reports SERVING while NATS is connected, the event stream
// answers and a read model answers; NOT_SERVING otherwise.
func watchHealth(ctx context.Context, hs *health.Server, nc *nats.Conn, store *jetstream.Store, reads *query.Client, log *slog.Logger) {
	serving := false
	interval := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, serr := store.LastSequence(cctx)
		_, rerr := reads.Status(cctx)
		cancel()
		ok := nc.IsConnected() && serr == nil && rerr == nil
		if ok != serving {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
				interval = 2 * time.Second
			}
			hs.SetServingStatus("", st)
			for _, name := range services {
				hs.SetServingStatus(name, st)
			}
			log.Info("health", "status", st.String(), "store_err", serr, "read_model_err", rerr)
			serving = ok
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
