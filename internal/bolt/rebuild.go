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
	f, err := os.CreateTemp(filepath.Dir(m.path), filepath.Base(m.path)+".rebuild-*")
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
	m.swap.RLock()
	snap, err := m.db.Begin(false)
	m.swap.RUnlock()
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
	rebuilt, rebuiltAt, err := digest(n.db)
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

	// 3. Swap: no commit and no query until the new file is in place.
	p.Phase.Store("swapping")
	m.applying.Lock()
	defer m.applying.Unlock()
	start := time.Now()
	t := m.tail
	m.tail = nil
	if t.overflow {
		return out, fmt.Errorf("bolt: rebuild: the live model applied more than %d events while the rebuild was checked; run it again", maxTail)
	}
	if err := n.Apply(t.entries); err != nil {
		return out, fmt.Errorf("bolt: rebuild: catch up at the swap: %w", err)
	}
	if n.Applied() != m.Applied() {
		return out, fmt.Errorf("bolt: rebuild: new file at %d, live model at %d at the swap", n.Applied(), m.Applied())
	}
	m.swap.Lock()
	defer m.swap.Unlock()
	if err := m.db.Close(); err != nil {
		return out, fmt.Errorf("bolt: rebuild: close the live file: %w", err)
	}
	if err := os.Rename(tmp, m.path); err != nil {
		// The live file is closed: reopen it rather than serve nothing.
		db, oerr := bbolt.Open(m.path, 0o600, options(m.path))
		if oerr == nil {
			m.db = db
		}
		return out, errors.Join(fmt.Errorf("bolt: rebuild: swap: %w", err), oerr)
	}
	m.db = n.db
	swapped = true
	out.Swap = time.Since(start)
	return out, nil
}
