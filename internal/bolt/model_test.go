package bolt_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"spa/internal/bolt"
	"spa/internal/codec"
	"spa/internal/spa"
)

var at = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

// logOf builds n referrals' events: each submitted (odd ones at site RH802,
// even ones at RJZ30, every third still meeting a criterion), every fifth
// then withdrawn.
func logOf(t *testing.T, n int) []bolt.Entry {
	t.Helper()
	var entries []bolt.Entry
	add := func(id string, e spa.Event) {
		rec := spa.Record{Sequence: uint64(len(entries) + 1), EventID: fmt.Sprint("e", len(entries)), AggregateID: id, OccurredAt: at, RecordedAt: at, Event: e}
		raw, err := codec.MarshalRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, bolt.Entry{Record: rec, Raw: raw})
	}
	for i := range n {
		id := spa.ReferralIDFor(fmt.Sprintf("request-%04d", i))
		d := spa.Details{Episode: spa.Episode{SiteODS: "RJZ30"}, ProposedPathway: spa.PathwayP1HomeFirst}
		if i%2 == 1 {
			d.Episode.SiteODS = "RH802"
		}
		drd := "2026-11-21"
		if i%3 == 0 {
			drd = ""
		}
		add(id, spa.ReferralSubmitted{RequestID: fmt.Sprintf("request-%04d", i), Details: d, DischargeReadyDate: drd})
		if i%5 == 0 {
			add(id, spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonDied})
		}
	}
	return entries
}

func open(t *testing.T) *bolt.Model {
	t.Helper()
	m, err := bolt.Open(filepath.Join(t.TempDir(), "readmodel.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// openWith opens a model in a directory of its own, applies entries, and
// returns it and the directory.
func openWith(t *testing.T, entries []bolt.Entry) (*bolt.Model, string) {
	t.Helper()
	dir := t.TempDir()
	m, err := bolt.Open(filepath.Join(dir, "readmodel.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.Apply(entries); err != nil {
		t.Fatal(err)
	}
	return m, dir
}

func digest(t *testing.T, m *bolt.Model) string {
	t.Helper()
	d, _, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestApplyIsIdempotentAndBatchingDoesNotMatter(t *testing.T) {
	t.Parallel()
	entries := logOf(t, 100)
	one := open(t)
	if err := one.Apply(entries); err != nil {
		t.Fatal(err)
	}
	many := open(t)
	for i := 0; i < len(entries); i += 7 {
		// Overlapping batches: each repeats the previous batch's last entry.
		if err := many.Apply(entries[max(0, i-1):min(len(entries), i+7)]); err != nil {
			t.Fatal(err)
		}
	}
	if one.Applied() != uint64(len(entries)) || many.Applied() != one.Applied() {
		t.Fatalf("applied %d and %d, want %d", one.Applied(), many.Applied(), len(entries))
	}
	if a, b := digest(t, one), digest(t, many); a != b {
		t.Fatalf("digests differ: %s vs %s", a, b)
	}
	before := digest(t, one)
	if err := one.Apply(entries[10:20]); err != nil {
		t.Fatal(err)
	}
	if after := digest(t, one); after != before {
		t.Fatal("re-applying old entries changed the model")
	}
}

func TestReopenKeepsApplied(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "readmodel.db")
	m, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(logOf(t, 10)); err != nil {
		t.Fatal(err)
	}
	want := m.Applied()
	m.Close()
	m, err = bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Applied() != want {
		t.Fatalf("applied after reopen = %d, want %d", m.Applied(), want)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	m := open(t)
	entries := logOf(t, 3)
	if err := m.Apply(entries); err != nil {
		t.Fatal(err)
	}
	id := spa.ReferralIDFor("request-0000")
	r, err := m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != id || r.Status != spa.StatusWithdrawn || r.Version != 2 || r.SubmittedSequence != 1 {
		t.Fatalf("referral %+v", r)
	}
	if _, err := m.Get(spa.ReferralIDFor("nobody-at-all")); !errors.Is(err, bolt.ErrNotFound) {
		t.Fatalf("unknown referral: err = %v", err)
	}
}

func TestListPagesAndFilters(t *testing.T) {
	t.Parallel()
	m := open(t)
	if err := m.Apply(logOf(t, 30)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		filter bolt.Filter
		want   int
	}{
		{"all", bolt.Filter{}, 30},
		{"site", bolt.Filter{SiteODS: "RH802"}, 15},
		{"withdrawn", bolt.Filter{Status: spa.StatusWithdrawn}, 6},
		{"ready", bolt.Filter{Status: spa.StatusReady}, 16},       // 20 with a date, 4 of them withdrawn
		{"not ready", bolt.Filter{Status: spa.StatusNotReady}, 8}, // 10 without, 2 withdrawn
		{"pathway", bolt.Filter{Pathway: spa.PathwayP1HomeFirst}, 30},
		{"no match", bolt.Filter{Pathway: spa.PathwayP3CareHome}, 0},
		// RH802 has the 15 odd i: 5, 15 and 25 are withdrawn; 3, 9, 15,
		// 21 and 27 have no date, and of the 10 left 5 and 25 are
		// withdrawn: 8 ready.
		{"site and status", bolt.Filter{SiteODS: "RH802", Status: spa.StatusWithdrawn}, 3},
		{"site, status and pathway", bolt.Filter{SiteODS: "RH802", Status: spa.StatusReady, Pathway: spa.PathwayP1HomeFirst}, 8},
		{"status and pathway, no match", bolt.Filter{Status: spa.StatusReady, Pathway: spa.PathwayP3CareHome}, 0},
		{"another site", bolt.Filter{SiteODS: "RH80"}, 0},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 4, 50} {
			seen := map[string]bool{}
			var after uint64
			for pages := 0; ; pages++ {
				rows, next, err := m.List(tt.filter, after, size)
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) > size {
					t.Fatalf("%s: page of %d rows, size %d", tt.name, len(rows), size)
				}
				for _, r := range rows {
					if seen[r.ID] {
						t.Fatalf("%s size %d: %s listed twice", tt.name, size, r.ID)
					}
					seen[r.ID] = true
				}
				if next == 0 {
					break
				}
				if len(rows) != size {
					t.Fatalf("%s: short page %d with a next token", tt.name, len(rows))
				}
				after = next
			}
			if len(seen) != tt.want {
				t.Errorf("%s, page size %d: %d rows, want %d", tt.name, size, len(seen), tt.want)
			}
		}
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	m := open(t)
	entries := logOf(t, 5)
	done := make(chan error, 1)
	go func() { done <- m.WaitFor(context.Background(), uint64(len(entries))) }()
	if err := m.Apply(entries[:2]); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("WaitFor returned early: %v", err)
	default:
	}
	if err := m.Apply(entries); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := m.WaitFor(ctx, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor beyond the log: %v", err)
	}
}

// TestRebuildWhileServing rebuilds a model of about 10,000 events while the
// projection keeps applying and queries keep running: the digests at the
// swap are equal, no query fails, and the swapped-in file goes on from
// there to equal a model built in one go.
func TestRebuildWhileServing(t *testing.T) {
	t.Parallel()
	entries := logOf(t, 8400) // 8,400 submissions and 1,680 withdrawals
	if len(entries) < 10000 {
		t.Fatalf("only %d events", len(entries))
	}
	live := open(t)
	if err := live.Apply(entries[:6000]); err != nil {
		t.Fatal(err)
	}
	feed := func(_ context.Context, m *bolt.Model, from, to uint64) error {
		for i := from; i <= to; i += 1000 {
			if err := m.Apply(entries[i-1 : min(to, i+999)]); err != nil {
				return err
			}
		}
		return nil
	}

	ctx, stop := context.WithCancel(context.Background())
	var queries, failures atomic.Int64
	var wg sync.WaitGroup
	for q := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var err error
				switch q {
				case 0:
					// The first 6,000 events hold the first 5,000
					// submissions (one in five is followed by its
					// withdrawal): those are there from the start.
					_, err = live.Get(spa.ReferralIDFor(fmt.Sprintf("request-%04d", i%5000)))
				case 1:
					_, _, err = live.List(bolt.Filter{Status: spa.StatusReady}, uint64(i%5000), 20)
				case 2:
					_, err = live.Providers(bolt.ProviderFilter{})
				default:
					_, _, err = live.Digest()
				}
				queries.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("query %d failed: %v", q, err)
				}
			}
		}()
	}
	// The projection goes on meanwhile, a batch at a time.
	projected := make(chan error, 1)
	go func() {
		for i := 6000; i < len(entries); i += 100 {
			if err := live.Apply(entries[i:min(len(entries), i+100)]); err != nil {
				projected <- err
				return
			}
		}
		projected <- nil
	}()
	var progress bolt.Progress
	res, err := live.Rebuild(ctx, feed, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if progress.Applied.Load() != res.Applied && progress.Applied.Load() < res.Applied {
		t.Errorf("progress says %d applied, the rebuild compared at %d", progress.Applied.Load(), res.Applied)
	}
	if err := <-projected; err != nil {
		t.Fatal(err)
	}
	stop()
	wg.Wait()
	if res.Live != res.Rebuilt || res.Applied < 6000 {
		t.Fatalf("rebuild %+v", res)
	}
	whole := open(t)
	if err := whole.Apply(entries); err != nil {
		t.Fatal(err)
	}
	if a, b := digest(t, live), digest(t, whole); a != b || live.Applied() != uint64(len(entries)) {
		t.Fatalf("after the swap the model differs from one built in one go (%d applied)", live.Applied())
	}
	t.Logf("compared at sequence %d of %d, swapped in %s; %d queries ran, %d failed", res.Applied, len(entries), res.Swap, queries.Load(), failures.Load())
}

// TestRebuildOneAtATime: a second rebuild while one runs is refused with
// ErrBusy and leaves the first to finish; neither leaves a file behind.
func TestRebuildOneAtATime(t *testing.T) {
	t.Parallel()
	entries := logOf(t, 200)
	live, dir := openWith(t, entries)
	inFeed, release := make(chan struct{}), make(chan struct{})
	feed := func(ctx context.Context, m *bolt.Model, from, to uint64) error {
		select {
		case inFeed <- struct{}{}:
		default:
		}
		<-release
		return m.Apply(entries[from-1 : to])
	}
	first := make(chan error, 1)
	go func() {
		_, err := live.Rebuild(context.Background(), feed, nil)
		first <- err
	}()
	<-inFeed
	if _, err := live.Rebuild(context.Background(), feed, nil); !errors.Is(err, bolt.ErrBusy) {
		t.Fatalf("second rebuild: %v, want ErrBusy", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first rebuild: %v", err)
	}
	if got := digest(t, live); live.Applied() != uint64(len(entries)) || got == "" {
		t.Fatalf("after the rebuild: applied %d", live.Applied())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 {
		t.Fatalf("files left in the directory: %v", files)
	}
}

// TestRebuildCancelled: a cancelled rebuild keeps the live model and
// removes its file.
func TestRebuildCancelled(t *testing.T) {
	t.Parallel()
	live, dir := openWith(t, logOf(t, 50))
	before := digest(t, live)
	ctx, cancel := context.WithCancel(context.Background())
	feed := func(ctx context.Context, m *bolt.Model, from, to uint64) error {
		cancel()
		return ctx.Err()
	}
	if _, err := live.Rebuild(ctx, feed, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("rebuild: %v, want context.Canceled", err)
	}
	if digest(t, live) != before {
		t.Fatal("a cancelled rebuild changed the live model")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 {
		t.Fatalf("files left in the directory: %v", files)
	}
}

// TestApplyRefusesGaps: a batch that does not follow on from the applied
// sequence is refused whole, with the sequences missing.
func TestApplyRefusesGaps(t *testing.T) {
	t.Parallel()
	entries := logOf(t, 10)
	m := open(t)
	if err := m.Apply(entries[:3]); err != nil {
		t.Fatal(err)
	}
	before := digest(t, m)
	for _, batch := range [][]bolt.Entry{entries[4:6], {entries[3], entries[5]}, append(entries[1:4:4], entries[6])} {
		var gap *bolt.GapError
		if err := m.Apply(batch); !errors.As(err, &gap) {
			t.Fatalf("batch from %d: %v, want a gap", batch[0].Record.Sequence, err)
		}
		if m.Applied() != 3 || digest(t, m) != before {
			t.Fatalf("a refused batch changed the model (applied %d)", m.Applied())
		}
	}
	// A sequence that holds no event is applied as an empty entry.
	hole := bolt.Entry{Record: spa.Record{Sequence: 4}}
	if err := m.Apply([]bolt.Entry{hole, entries[4]}); err != nil || m.Applied() != 5 {
		t.Fatalf("hole: %v, applied %d", err, m.Applied())
	}
}

// TestBindEmptiesAModelOfAnotherLog: a model is tied to the log it was
// built from; opened against another log, or one that ends before its
// applied sequence, it is emptied to be built again.
func TestBindEmptiesAModelOfAnotherLog(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "readmodel.db")
	m, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { m.Close() }()
	entries := logOf(t, 10)
	hashOf := func(es []bolt.Entry) func(uint64) ([]byte, error) {
		return func(seq uint64) ([]byte, error) {
			if seq == 0 || seq > uint64(len(es)) {
				return nil, nil
			}
			h := sha256.Sum256(es[seq-1].Raw)
			return h[:], nil
		}
	}
	if reset, err := m.Bind("SPA_EVENTS created A", 0, hashOf(entries)); reset || err != nil {
		t.Fatalf("first bind: %v %v", reset, err)
	}
	n := uint64(len(entries))
	// Another log that reached the same sequence: its events differ.
	other := logOf(t, 10)
	for i := range other {
		other[i].Raw = append(bytes.Clone(other[i].Raw), 0)
	}
	for _, tt := range []struct {
		name  string
		log   string
		last  uint64
		log2  []bolt.Entry
		reset bool
	}{
		{"the same log", "SPA_EVENTS created A", n, entries, false},
		{"the same log, grown", "SPA_EVENTS created A", n + 5, entries, false},
		{"a log that ends before the model (restored from an older copy)", "SPA_EVENTS created A", n - 1, entries, true},
		{"a restored log written since: its event at the model's sequence differs", "SPA_EVENTS created A", n + 5, other, true},
		{"another stream", "SPA_EVENTS created B", 100, entries, true},
	} {
		if err := m.Apply(entries); err != nil {
			t.Fatal(err)
		}
		m.Close()
		if m, err = bolt.Open(path); err != nil {
			t.Fatal(err)
		}
		reset, err := m.Bind(tt.log, tt.last, hashOf(tt.log2))
		if err != nil || reset != tt.reset || tt.reset && m.Applied() != 0 || !tt.reset && m.Applied() != n {
			t.Fatalf("%s: reset %v, %v, applied %d", tt.name, reset, err, m.Applied())
		}
		if m.Log() != tt.log {
			t.Fatalf("%s: log %q, want %q", tt.name, m.Log(), tt.log)
		}
	}
}
