package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"spa/internal/identity"
	"spa/internal/pki"
	"spa/internal/rpc"
)

// api calls the public gRPC API as the bench's identities: in the
// development mode over one connection, each call stating who it is;
// with TLS over one connection per identity, whose certificate says.
type api struct {
	dev     bool
	timeout time.Duration
	mu      sync.Mutex
	conns   map[identity.Identity]*grpc.ClientConn
	dial    func(id identity.Identity) (*grpc.ClientConn, error)
}

// certFile is the name spa-ctl certs gives id's certificate and key in
// its --out directory (without .crt/.key).
func certFile(dir string, id identity.Identity) string {
	return filepath.Join(dir, id.ODS+"-"+string(id.Role))
}

// dialAPI returns an api on addr: plaintext when tlsCA is empty (a
// development-mode server), or TLS with the certificates in certDir, one
// per identity in ids, as `spa-ctl certs --out DIR --client ODS/ROLE`
// makes them.
func dialAPI(addr, tlsCA, certDir string, ids []identity.Identity, timeout time.Duration) (*api, error) {
	a := &api{dev: tlsCA == "", timeout: timeout, conns: map[identity.Identity]*grpc.ClientConn{}}
	opts := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16 << 20))}
	if a.dev {
		conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", addr, err)
		}
		a.dial = func(identity.Identity) (*grpc.ClientConn, error) { return conn, nil }
		a.conns[identity.Identity{}] = conn
		return a, nil
	}
	var missing []string
	for _, id := range ids {
		if _, err := os.Stat(certFile(certDir, id) + ".crt"); err != nil {
			missing = append(missing, "--client "+id.ODS+"/"+string(id.Role))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("--tls-certs %s lacks certificates the bench acts with; make them with: spa-ctl certs --out %s %v", certDir, certDir, missing)
	}
	a.dial = func(id identity.Identity) (*grpc.ClientConn, error) {
		f := certFile(certDir, id)
		cfg, err := pki.ClientTLS(tlsCA, f+".crt", f+".key")
		if err != nil {
			return nil, err
		}
		return grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))...)
	}
	return a, nil
}

// as returns ctx and the connection for calls made as id, with purpose
// stated for reads of patient data.
func (a *api) as(ctx context.Context, id identity.Identity, purpose string) (context.Context, *grpc.ClientConn, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, rpc.MetadataPurpose, purpose)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dev {
		ctx = metadata.AppendToOutgoingContext(ctx, rpc.MetadataActorODS, id.ODS, rpc.MetadataActorRole, string(id.Role), rpc.MetadataActorUser, id.User)
		return ctx, a.conns[identity.Identity{}], nil
	}
	conn := a.conns[id]
	if conn == nil {
		var err error
		if conn, err = a.dial(id); err != nil {
			return nil, nil, err
		}
		a.conns[id] = conn
	}
	return ctx, conn, nil
}

func (a *api) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
}

// maxAttempts bounds the sendings of one call the API answered with a
// code that says to try again.
const maxAttempts = 8

// retryable: the call changed nothing, or was a command with a request id
// (safe to send again); another try may pass.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Aborted, codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

// call runs f as id under the call deadline and records its latency (from
// the first sending to the answer) in l; a call answered with a retryable
// code is sent again, with backoff.
func (a *api) call(ctx context.Context, l *latencies, id identity.Identity, purpose string, f func(ctx context.Context, cc *grpc.ClientConn) error) error {
	cctx, cc, err := a.as(ctx, id, purpose)
	if err != nil {
		return err
	}
	start := time.Now()
	wait := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(cctx, a.timeout)
		err = f(actx, cc)
		cancel()
		if err == nil {
			l.add(time.Since(start))
			return nil
		}
		if attempt == maxAttempts || !retryable(err) || ctx.Err() != nil {
			l.failed()
			return err
		}
		l.retried()
		select {
		case <-ctx.Done():
			l.failed()
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// waitServing polls the health service until SERVING, or fails at the
// deadline.
func (a *api) waitServing(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var conn *grpc.ClientConn
	a.mu.Lock()
	for _, c := range a.conns {
		conn = c
	}
	a.mu.Unlock()
	if conn == nil { // TLS: any identity's connection will do
		var err error
		if _, conn, err = a.as(ctx, coordinator, "direct-care"); err != nil {
			return err
		}
	}
	h := healthpb.NewHealthClient(conn)
	var last error
	for {
		res, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(errors.New("the server did not report SERVING"), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
