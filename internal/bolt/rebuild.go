package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// Feed applies the log's events from sequence from to sequence to (both
// inclusive) to model; a rebuild uses it to fill the new file.
type Feed func(ctx context.Context, model *Model, from, to uint64) error

// Rebuilt is the outcome of a rebuild: both digests at the sequence where
// they were compared, and how long queries and the projection waited for
// the swap.
type Rebuilt struct {
	Applied uint64
	Live    string
	Rebuilt string
	Swap    time.Duration
}

// Progress reports a running rebuild; its fields may be read at any time.
type Progress struct {
	// Applied is the sequence the new file has reached.
	Applied atomic.Uint64
	// Target is the live model's sequence the new file is catching up to.
	Target atomic.Uint64
	// Phase is what the rebuild is doing: "replaying", "checking",
	// "swapping".
	Phase atomic.Value
}

// ErrBusy is returned by Rebuild while another rebuild of the same model
// runs.
var ErrBusy = errors.New("bolt: a rebuild of this read model is already running")

// rebuildSuffix follows the live file's name in a rebuild's file's.
const rebuildSuffix = ".rebuild-"

// maxTail bounds the events a rebuild keeps in memory while it checks its
// file: a live model that moves further meanwhile fails the rebuild.
const maxTail = 50000

// tail keeps the entries the live model commits while a rebuild checks its
// file, to be applied to the new file at the swap.
type tail struct {
	entries  []Entry
	overflow bool
}

func (t *tail) add(es []Entry) {
	if t.overflow || len(t.entries)+len(es) > maxTail {
		t.overflow, t.entries = true, nil
		return
	}
	t.entries = append(t.entries, es...)
}

// Rebuild builds a new file from sequence 1 beside the live one, with
// feed, proves it equal to the live model and swaps it in. Only the swap
// holds up queries and the projection, for milliseconds; every other phase
// runs beside them:
//
//  1. replaying: feed fills a new file (a unique temporary name in the
//     model's directory) to the live model's sequence, in rounds, as the
//     live model moves on;
//  2. checking: at one instant (a commit boundary) a read snapshot of the
//     live model is taken and the commits after it are kept in memory;
//     the new file is fed to the snapshot's sequence and both are digested;
//  3. swapping: if the digests agree, the kept commits are applied to the
//     new file, which then replaces the live one.
//
// A rebuild whose digests differ is thrown away and reported as an error:
// the live file stays. Only one rebuild runs at a time (ErrBusy); ctx
// cancels it. p, if not nil, is kept up to date.
func (m *Model) Rebuild(ctx context.Context, feed Feed, p *Progress) (Rebuilt, error) {
	if !m.rebuilding.TryLock() {
		return Rebuilt{}, ErrBusy
	}
	defer m.rebuilding.Unlock()
	if p == nil {
		p = new(Progress)
	}
	f, err := os.CreateTemp(filepath.Dir(m.path), filepath.Base(m.path)+rebuildSuffix+"*")
	if err != nil {
		return Rebuilt{}, fmt.Errorf("bolt: rebuild: %w", err)
	}
	tmp := f.Name()
	f.Close()
	n, err := Open(tmp)
	if err != nil {
		os.Remove(tmp)
		return Rebuilt{}, err
	}
	n.progress = p
	if log := m.Log(); log != "" {
		if _, err := n.Bind(log, 0, nil); err != nil { // n is empty: nothing to compare
			n.db.Close()
			os.Remove(tmp)
			return Rebuilt{}, err
		}
	}
	swapped := false
	defer func() {
		if !swapped {
			n.db.Close()
			os.Remove(tmp)
		}
	}()
	fail := func(err error) (Rebuilt, error) { return Rebuilt{}, fmt.Errorf("bolt: rebuild: %w", err) }

	// 1. Replay while the live model moves on, a few rounds at most.
	p.Phase.Store("replaying")
	for range 10 {
		target := m.Applied()
		p.Target.Store(target)
		if n.Applied() >= target {
			break
		}
		if err := feed(ctx, n, n.Applied()+1, target); err != nil {
			return fail(err)
		}
	}

	// 2. Check against a snapshot of the live model.
	p.Phase.Store("checking")
	m.applying.Lock()
	snap, err := m.db.Begin(false)
	if err == nil {
		m.tail = &tail{}
	}
	m.applying.Unlock()
	if err != nil {
		return fail(err)
	}
	stopTail := func() {
		m.applying.Lock()
		m.tail = nil
		m.applying.Unlock()
	}
	live, at, err := digestTx(snap)
	snap.Rollback()
	if err != nil {
		stopTail()
		return fail(err)
	}
	p.Target.Store(at)
	if n.Applied() < at {
		if err := feed(ctx, n, n.Applied()+1, at); err != nil {
			stopTail()
			return fail(err)
		}
	}
	rebuilt, rebuiltAt, err := n.Digest()
	if err != nil {
		stopTail()
		return fail(err)
	}
	out := Rebuilt{Applied: at, Live: live, Rebuilt: rebuilt}
	if live != rebuilt || at != rebuiltAt {
		stopTail()
		return out, fmt.Errorf("bolt: rebuild differs from the live model at sequence %d (rebuilt to %d): kept the live one", at, rebuiltAt)
	}
	if err := ctx.Err(); err != nil {
		stopTail()
		return out, fmt.Errorf("bolt: rebuild: %w", err)
	}

	// 3. Swap. The commits kept meanwhile are applied to the new file
	// while the live model goes on, until few are left; then commits and
	// queries wait while the last are applied and the file is swapped.
	p.Phase.Store("swapping")
	var pending []Entry
	for round := 0; ; round++ {
		m.applying.Lock()
		t := m.tail
		if t.overflow {
			m.tail = nil
			m.applying.Unlock()
			return out, fmt.Errorf("bolt: rebuild: the live model applied more than %d events while the rebuild was checked; run it again", maxTail)
		}
		pending, t.entries = t.entries, nil
		if len(pending) <= swapTail || round == 10 {
			break // applying stays held until the swap is done
		}
		m.applying.Unlock()
		if err := n.Apply(pending); err != nil {
			stopTail()
			return out, fmt.Errorf("bolt: rebuild: catch up: %w", err)
		}
	}
	start := time.Now()
	m.tail = nil
	old, err := m.swapIn(n, pending, tmp)
	m.applying.Unlock()
	if err != nil {
		return out, err
	}
	swapped = true
	out.Swap = time.Since(start)
	// Reads still running in the old file finish there; it closes after
	// them, with commits and queries going on in the new one.
	if err := old.Close(); err != nil {
		return out, fmt.Errorf("bolt: rebuild: close the old file: %w", err)
	}
	return out, nil
}

// swapIn applies the last kept events to n and puts its file in the live
// one's place; it returns the old file, still open. The caller holds
// applying.
func (m *Model) swapIn(n *Model, pending []Entry, tmp string) (*bbolt.DB, error) {
	if err := n.Apply(pending); err != nil {
		return nil, fmt.Errorf("bolt: rebuild: catch up at the swap: %w", err)
	}
	if n.Applied() != m.Applied() {
		return nil, fmt.Errorf("bolt: rebuild: new file at %d, live model at %d at the swap", n.Applied(), m.Applied())
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return nil, fmt.Errorf("bolt: rebuild: swap: %w", err)
	}
	m.swap.Lock()
	defer m.swap.Unlock()
	old := m.db
	m.db = n.db
	return old, nil
}

// swapTail is how many kept commits' events may be left to apply while
// commits and queries wait for the swap.
const swapTail = 200
