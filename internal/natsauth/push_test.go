package natsauth_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"spa/internal/await"
	"spa/internal/checkpoint"
	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/signing"
)

// embeddedBus is the all-in-one mode's locked bus, listening on loopback.
func embeddedBus(t *testing.T) *bus {
	t.Helper()
	dir := t.TempDir()
	seeds := filepath.Join(dir, "nats")
	users, err := natsauth.EnsureSeeds(seeds)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", NoSync: true, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	return setUp(t, emb.ClientURL(), 1, nil, func(id natsauth.Identity) []nats.Option {
		opts, err := natsauth.Client{Identity: id, NkeyFile: natsauth.SeedFile(seeds, id)}.Options()
		if err != nil {
			t.Fatal(err)
		}
		return opts
	})
}

// TestJunkInTheCheckpointsStopsNoSigner: NATS does not check where a
// push consumer delivers, so a worker can have JetStream copy a message
// of its own into SPA_CHECKPOINTS (ADR 27). The signers still make the
// next checkpoint after it, and verify sees the junk (it does not open as
// a checkpoint).
func TestJunkInTheCheckpointsStopsNoSigner(t *testing.T) {
	t.Parallel()
	b := embeddedBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	private, _, err := signing.GenerateKey("spa-test")
	if err != nil {
		t.Fatal(err)
	}
	key, err := signing.ParseKey(private)
	if err != nil {
		t.Fatal(err)
	}
	srv := mustConnect(t, b.url, b.as(natsauth.Server))
	store, err := jetstream.Open(ctx, srv.nc, jetstream.Requirements{Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	cps, err := store.OpenCheckpoints(ctx, jetstream.Requirements{})
	if err != nil {
		t.Fatal(err)
	}
	signer := checkpoint.New(store, cps, key, nil)
	if res, err := signer.Make(ctx); err != nil || !res.Made {
		t.Fatalf("first checkpoint: %v %v", res.Made, err)
	}
	stored := func() uint64 {
		info, err := natsjs.New(srv.nc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := info.Stream(ctx, jetstream.CheckpointStreamName)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}
	before := stored()

	// The worker's junk, with the message id the next checkpoint would
	// have had, copied in by a push consumer.
	w := mustConnect(t, b.url, b.as(natsauth.Worker))
	junk := nats.NewMsg("spa.referral.launder")
	junk.Data = []byte("junk")
	junk.Header.Set("Nats-Msg-Id", "spa-checkpoint-3")
	junk.Header.Set(jetstream.HeaderCheckpointSequence, "999")
	if _, err := w.nc.RequestMsg(junk, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"stream_name": jetstream.StreamName, "config": map[string]any{"name": "jam",
		"deliver_subject": jetstream.CheckpointSubject, "filter_subject": "spa.referral.launder", "ack_policy": "none"}})
	if _, err := w.nc.Request("$JS.API.CONSUMER.CREATE."+jetstream.StreamName+".jam", body, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	await.True(t, 30*time.Second, "the junk copied into the checkpoint stream", func() bool { return stored() > before })

	// The log grows; the next checkpoint is made all the same.
	if _, err := w.nc.RequestMsg(&nats.Msg{Subject: "spa.referral.more", Data: []byte("x")}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := signer.Make(ctx)
	if err != nil || !res.Made || res.Checkpoint.Sequence != 3 {
		t.Fatalf("the checkpoint after the junk: made %v at %d, %v; want one at sequence 3", res.Made, res.Checkpoint.Sequence, err)
	}
	var notes, checkpoints int
	if err := cps.All(ctx, func(note []byte) error {
		notes++
		if _, err := signing.OpenCheckpoint(note, key.Verifiers()); err == nil {
			checkpoints++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if notes != checkpoints+1 {
		t.Fatalf("%d messages in the checkpoint stream, %d checkpoints: want the junk among them, for verify to report", notes, checkpoints)
	}
}

// TestOnlyWorkersPullForTheRouters: the server and the auditor cannot
// take the routers' events from their shared consumer.
func TestOnlyWorkersPullForTheRouters(t *testing.T) {
	t.Parallel()
	b := embeddedBus(t)
	for _, id := range []natsauth.Identity{natsauth.Auditor, natsauth.Server} {
		c := mustConnect(t, b.url, b.as(id))
		c.request(t, "$JS.API.CONSUMER.MSG.NEXT."+jetstream.StreamName+"."+jetstream.RouterConsumer, `{"batch":1000,"expires":1000000000}`)
	}
}
