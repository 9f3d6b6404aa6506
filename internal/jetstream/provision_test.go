package jetstream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
)

// TestProvision: Provision creates every asset, reports each, changes
// nothing when run again, keeps a duplicate window it is not told, and
// removes the projection consumers of earlier versions.
func TestProvision(t *testing.T) {
	t.Parallel()
	nc := jetstreamtest.Connect(t, jetstreamtest.Start(t))
	ctx := context.Background()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	report, err := jetstream.Provision(ctx, nc, jetstream.Setup{DuplicateWindow: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stream SPA_EVENTS created", "stream SPA_ACCESS created", "stream SPA_CHECKPOINTS created", "bucket spa_scheduler created", "consumer spa-router"} {
		if !strings.Contains(strings.Join(report, "\n"), want) {
			t.Errorf("report lacks %q:\n%s", want, strings.Join(report, "\n"))
		}
	}
	s, err := js.Stream(ctx, jetstream.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, natsjs.ConsumerConfig{Durable: "readmodel-old", Description: "SPA read model projection", AckPolicy: natsjs.AckAllPolicy}); err != nil {
		t.Fatal(err)
	}
	report, err = jetstream.Provision(ctx, nc, jetstream.Setup{})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(report, "\n")
	if !strings.Contains(all, "SPA_EVENTS unchanged") || !strings.Contains(all, "SPA_ACCESS unchanged") || !strings.Contains(all, "SPA_CHECKPOINTS unchanged") ||
		!strings.Contains(all, "spa_scheduler unchanged") ||
		!strings.Contains(all, "removed 1 projection consumers") || !strings.Contains(all, "duplicate window 5m0s") {
		t.Errorf("second provision:\n%s", all)
	}
	if _, err := s.Consumer(ctx, "readmodel-old"); !errors.Is(err, natsjs.ErrConsumerNotFound) {
		t.Errorf("old projection consumer: %v", err)
	}
	if _, err := jetstream.Open(ctx, nc, jetstream.Requirements{MinReplicas: 3}); !errors.Is(err, jetstream.ErrWeak) {
		t.Errorf("open requiring 3 replicas of an R1 stream: %v, want ErrWeak", err)
	}
}

// TestProvisionRefusesUntrustedStreams: an existing stream SPA cannot
// trust is refused, and nothing else is created or changed.
func TestProvisionRefusesUntrustedStreams(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]natsjs.StreamConfig{
		"memory":  {Storage: natsjs.MemoryStorage},
		"msg ttl": {Storage: natsjs.FileStorage, AllowMsgTTL: true},
		"async":   {Storage: natsjs.FileStorage, PersistMode: natsjs.AsyncPersistMode},
		"rollups": {Storage: natsjs.FileStorage, AllowRollup: true},
		"tiny":    {Storage: natsjs.FileStorage, MaxMsgSize: 100},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			nc := jetstreamtest.Connect(t, jetstreamtest.Start(t))
			ctx := context.Background()
			js, err := natsjs.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Name, cfg.Subjects = jetstream.StreamName, jetstream.Subjects
			if _, err := js.CreateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			if _, err := jetstream.Provision(ctx, nc, jetstream.Setup{}); err == nil || !strings.Contains(err.Error(), "nothing changed") {
				t.Fatalf("provision over a %s stream: %v", name, err)
			}
			if _, err := js.Stream(ctx, jetstream.AccessStreamName); !errors.Is(err, natsjs.ErrStreamNotFound) {
				t.Fatalf("the access stream was created after a refusal: %v", err)
			}
			if _, err := jetstream.Open(ctx, nc, jetstream.Requirements{}); !errors.Is(err, jetstream.ErrWeak) {
				t.Fatalf("open a %s stream: %v, want ErrWeak", name, err)
			}
		})
	}
}

// TestOpenWaitsForTheStream: a process started before the streams exist
// waits, and opens them once they are provisioned.
func TestOpenWaitsForTheStream(t *testing.T) {
	t.Parallel()
	nc := jetstreamtest.Connect(t, jetstreamtest.Start(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opened := make(chan error, 1)
	go func() {
		_, err := jetstream.Open(ctx, nc, jetstream.Requirements{})
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("open returned before the stream existed: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := jetstream.Provision(ctx, nc, jetstream.Setup{}); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
}
