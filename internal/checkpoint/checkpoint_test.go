package checkpoint_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"spa/internal/audit"
	"spa/internal/await"
	"spa/internal/checkpoint"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/signing"
	"spa/internal/spa"
)

// logs is an embedded NATS with SPA's streams, a store that signs with
// key, and the checkpoint stream.
type logs struct {
	nc          *nats.Conn
	store       *jetstream.Store
	checkpoints *jetstream.Checkpoints
	key         *signing.Key
}

func newLogs(t *testing.T) *logs {
	t.Helper()
	srv := jetstreamtest.Start(t)
	nc := jetstreamtest.Connect(t, srv)
	jetstreamtest.Store(t, nc, jetstream.Setup{}) // provisions
	private, _, err := signing.GenerateKey("spa-test")
	if err != nil {
		t.Fatal(err)
	}
	key, err := signing.ParseKey(private)
	if err != nil {
		t.Fatal(err)
	}
	store := open(t, nc, key)
	cps, err := store.OpenCheckpoints(ctx(t), jetstream.Requirements{})
	if err != nil {
		t.Fatal(err)
	}
	return &logs{nc: nc, store: store, checkpoints: cps, key: key}
}

// open opens a store on nc that signs with key (nil: unsigned, as anyone
// with raw NATS access and no key could append).
func open(t *testing.T, nc *nats.Conn, key *signing.Key) *jetstream.Store {
	t.Helper()
	req := jetstream.Requirements{}
	if key != nil {
		req.Signer = key
	}
	s, err := jetstream.Open(ctx(t), nc, req)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// submit appends n infection tests to referral id through store.
func submit(t *testing.T, store *jetstream.Store, id string, n int) {
	t.Helper()
	for range n {
		_, last, err := store.Load(ctx(t), spa.AggregateReferral, id)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 11, 22, 9, 0, 0, int(last), time.UTC)
		rec := spa.Record{EventID: fmt.Sprintf("evt-%s-%d", id, last), AggregateID: id, OccurredAt: at, RecordedAt: at,
			Event: spa.InfectionTestRecorded{Test: spa.InfectionTest{Type: spa.TestTypePCR, TakenAt: at, Result: spa.TestResultNegative}}}
		if _, err := store.Append(ctx(t), rec, last); err != nil {
			t.Fatal(err)
		}
	}
}

// verify checks the whole log against the checkpoints stored, as spa-ctl
// verify does, and returns the break or the report.
func (l *logs) verify(t *testing.T) (*audit.Break, audit.Report, error) {
	t.Helper()
	var notes [][]byte
	if err := l.checkpoints.All(ctx(t), func(n []byte) error { notes = append(notes, n); return nil }); err != nil {
		t.Fatal(err)
	}
	s, err := audit.NewSigned(l.key.Verifiers(), notes, false)
	if err != nil {
		return nil, audit.Report{}, err
	}
	var b *audit.Break
	err = l.store.Replay(ctx(t), spa.EventFilter{}, func(e spa.StoredEvent) error {
		if b == nil {
			b = s.Check(e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if b == nil {
		b = s.Finish()
	}
	return b, s.Report(), nil
}

func TestMakeExtendsTheLastCheckpoint(t *testing.T) {
	t.Parallel()
	l := newLogs(t)
	signer := checkpoint.New(l.store, l.checkpoints, l.key, nil)
	if res, err := signer.Make(ctx(t)); err != nil || res.Made || res.Note != nil {
		t.Fatalf("an empty log: %+v %v", res, err)
	}
	submit(t, l.store, "ref-aaaaaaaaaaaaaaaa", 3)
	submit(t, l.store, "ref-bbbbbbbbbbbbbbbb", 2)
	res, err := signer.Make(ctx(t))
	if err != nil || !res.Made || res.Checkpoint.Sequence != 5 {
		t.Fatalf("first checkpoint: %+v %v", res, err)
	}
	again, err := signer.Make(ctx(t))
	if err != nil || again.Made || again.Checkpoint != res.Checkpoint {
		t.Fatalf("nothing appended since: %+v %v, want the same checkpoint", again, err)
	}
	submit(t, l.store, "ref-aaaaaaaaaaaaaaaa", 2)
	next, err := signer.Make(ctx(t))
	if err != nil || !next.Made || next.Checkpoint.Sequence != 7 {
		t.Fatalf("second checkpoint: %+v %v", next, err)
	}
	b, r, err := l.verify(t)
	if err != nil || b != nil || r.Checkpoints != 2 || r.Covered != 7 || !r.Authorship {
		t.Fatalf("verify: %v %v %+v", err, b, r)
	}
}

// TestForgedEventIsReported: an event appended with a correct hash-chain
// link by someone without the key (raw NATS access) is checkpointed like
// any other, and verify reports it, before and after the checkpoint.
func TestForgedEventIsReported(t *testing.T) {
	t.Parallel()
	l := newLogs(t)
	submit(t, l.store, "ref-aaaaaaaaaaaaaaaa", 3)
	forger := open(t, l.nc, nil)
	submit(t, forger, "ref-aaaaaaaaaaaaaaaa", 1)
	submit(t, l.store, "ref-aaaaaaaaaaaaaaaa", 1)

	b, _, err := l.verify(t)
	if err != nil || b == nil || b.Sequence != 4 || !strings.Contains(b.Reason, "forged") {
		t.Fatalf("before a checkpoint: %v %v, want the forged event at sequence 4", err, b)
	}
	if _, err := checkpoint.New(l.store, l.checkpoints, l.key, nil).Make(ctx(t)); err != nil {
		t.Fatal(err)
	}
	b, _, err = l.verify(t)
	if err != nil || b == nil || b.Sequence != 4 || !strings.Contains(b.Reason, "forged") {
		t.Fatalf("after a checkpoint: %v %v, want the forged event at sequence 4", err, b)
	}
}

// TestForgedCheckpointIsReported: a checkpoint published by someone
// without the key is reported by verify; the signer does not extend it
// but hashes the log from sequence 1.
func TestForgedCheckpointIsReported(t *testing.T) {
	t.Parallel()
	l := newLogs(t)
	submit(t, l.store, "ref-aaaaaaaaaaaaaaaa", 3)
	private, _, err := signing.GenerateKey("spa-test") // the same name, another key
	if err != nil {
		t.Fatal(err)
	}
	forger, err := signing.ParseKey(private)
	if err != nil {
		t.Fatal(err)
	}
	var h signing.LogHash
	h.Add(3, "spa.referral.ref-aaaaaaaaaaaaaaaa", []byte("whatever"))
	note, err := forger.SignCheckpoint(signing.Checkpoint{LogHash: h, Signed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.checkpoints.Append(ctx(t), note, 3, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.verify(t); err == nil || !strings.Contains(err.Error(), "no valid signature") {
		t.Fatalf("verify: %v, want the forged checkpoint reported", err)
	}
	submit(t, l.store, "ref-aaaaaaaaaaaaaaaa", 1)
	res, err := checkpoint.New(l.store, l.checkpoints, l.key, nil).Make(ctx(t))
	if err != nil || !res.Made || res.Checkpoint.Sequence != 4 {
		t.Fatalf("a checkpoint after the forged one: %+v %v", res, err)
	}
	// The honest checkpoint is right about the log.
	s, err := audit.NewSigned(l.key.Verifiers(), [][]byte{res.Note}, false)
	if err != nil {
		t.Fatal(err)
	}
	var b *audit.Break
	if err := l.store.Replay(ctx(t), spa.EventFilter{}, func(e spa.StoredEvent) error {
		if b == nil {
			b = s.Check(e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if b != nil || s.Finish() != nil {
		t.Fatalf("the honest checkpoint: %v", b)
	}
}

// TestSignersRace: two signers (two servers) checkpoint at once, again
// and again, while events are appended: each sequence is checkpointed at
// most once, in order, and the log verifies against all of them.
func TestSignersRace(t *testing.T) {
	t.Parallel()
	l := newLogs(t)
	nc2, err := nats.Connect(l.nc.ConnectedUrl()) // another server's connection
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	store2 := open(t, nc2, l.key)
	cps2, err := store2.OpenCheckpoints(ctx(t), jetstream.Requirements{})
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int64
	signers := []*checkpoint.Signer{
		checkpoint.New(l.store, counting{l.checkpoints, &lost}, l.key, nil),
		checkpoint.New(store2, counting{cps2, &lost}, l.key, nil),
	}
	const rounds = 15
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range rounds {
			submit(t, l.store, fmt.Sprintf("ref-%016d", i%3), 1)
		}
	}()
	for _, s := range signers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if _, err := s.Make(ctx(t)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := signers[0].Make(ctx(t)); err != nil { // covers the last appends
		t.Fatal(err)
	}
	var seqs []uint64
	err = l.checkpoints.All(ctx(t), func(note []byte) error {
		c, err := signing.OpenCheckpoint(note, l.key.Verifiers())
		seqs = append(seqs, c.Sequence)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("checkpoints of sequences %v: not one per sequence, in order", seqs)
		}
	}
	if len(seqs) == 0 || seqs[len(seqs)-1] != rounds {
		t.Fatalf("checkpoints of sequences %v, want the last at %d", seqs, rounds)
	}
	b, r, err := l.verify(t)
	if err != nil || b != nil || r.Covered != rounds {
		t.Fatalf("verify: %v %v %+v", err, b, r)
	}
	t.Logf("%d checkpoints: %v; %d races lost and read again", len(seqs), seqs, lost.Load())
}

// counting counts the appends that lost a race.
type counting struct {
	*jetstream.Checkpoints
	lost *atomic.Int64
}

func (c counting) Append(ctx context.Context, note []byte, sequence, expectedLast uint64) error {
	err := c.Checkpoints.Append(ctx, note, sequence, expectedLast)
	if errors.Is(err, spa.ErrConcurrentChange) {
		c.lost.Add(1)
	}
	return err
}

// TestRequest: an operator's request over NATS makes a checkpoint now.
func TestRequest(t *testing.T) {
	t.Parallel()
	l := newLogs(t)
	submit(t, l.store, "ref-aaaaaaaaaaaaaaaa", 2)
	if _, _, err := checkpoint.Request(ctx(t), l.nc); err == nil || !strings.Contains(err.Error(), "no signer answers") {
		t.Fatalf("no signer: %v", err)
	}
	sctx, stop := context.WithCancel(ctx(t))
	served := make(chan error, 1)
	go func() { served <- checkpoint.New(l.store, l.checkpoints, l.key, nil).Serve(sctx, l.nc) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	var note []byte
	var made bool
	var err error
	await.True(t, time.Minute, "a signer answers", func() bool {
		note, made, err = checkpoint.Request(ctx(t), l.nc)
		return err == nil || !strings.Contains(err.Error(), "no signer answers")
	})
	if err != nil || !made || !bytes.Contains(note, []byte("sequence 2\n")) {
		t.Fatalf("request: %s %v %v", note, made, err)
	}
	if note2, made, err := checkpoint.Request(ctx(t), l.nc); err != nil || made || !bytes.Equal(note2, note) {
		t.Fatalf("again: %s %v %v, want the same checkpoint", note2, made, err)
	}
}

// TestLostRace: a signer that loses the race (another stores a
// checkpoint between its read and its append) stores nothing and returns
// the winner's, so the sequence is checkpointed once.
func TestLostRace(t *testing.T) {
	t.Parallel()
	l := newLogs(t)
	submit(t, l.store, "ref-aaaaaaaaaaaaaaaa", 4)
	winner := checkpoint.New(l.store, l.checkpoints, l.key, nil)
	var won checkpoint.Result
	loser := checkpoint.New(l.store, &racing{Checkpoints: l.checkpoints, before: func() {
		var err error
		if won, err = winner.Make(ctx(t)); err != nil || !won.Made {
			t.Errorf("the winner: %+v %v", won, err)
		}
	}}, l.key, nil)
	res, err := loser.Make(ctx(t))
	if err != nil || res.Made || !bytes.Equal(res.Note, won.Note) || res.Checkpoint.Sequence != 4 {
		t.Fatalf("the loser: %+v %v, want the winner's checkpoint of sequence 4", res, err)
	}
	n := 0
	if err := l.checkpoints.All(ctx(t), func([]byte) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("%d checkpoints stored (%v), want 1", n, err)
	}
}

// racing runs before ahead of its first append.
type racing struct {
	*jetstream.Checkpoints
	before func()
	once   sync.Once
}

func (r *racing) Append(ctx context.Context, note []byte, sequence, expectedLast uint64) error {
	r.once.Do(r.before)
	return r.Checkpoints.Append(ctx, note, sequence, expectedLast)
}
