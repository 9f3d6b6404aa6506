// Package bolt keeps the referral read model in a bbolt file: referral
// state, each referral's history and the board index, together with the
// last applied stream sequence, all written in one transaction per batch.
//
// One process owns a file (bbolt locks it). The model is derived data: it
// can be deleted and rebuilt from the event log, and Digest proves that a
// rebuilt model equals the live one.
package bolt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"

	"spa/internal/spa"
)

var (
	bucketMeta      = []byte("meta")
	bucketReferrals = []byte("referrals")
	bucketHistory   = []byte("history")
	bucketBoard     = []byte("board")
	bucketProviders = []byte("providers")
	// bucketOffers indexes assignments by provider: ods, 0, sequence of
	// the offer -> referral id.
	bucketOffers = []byte("offers")
	keyApplied   = []byte("applied")
	allBuckets   = [][]byte{bucketBoard, bucketHistory, bucketMeta, bucketOffers, bucketProviders, bucketReferrals}
)

// Entry is one event to apply: the decoded record and its stored bytes.
type Entry struct {
	Record spa.Record
	Raw    []byte
}

// Model is the read model. Its methods are safe for concurrent use; Apply
// must be called by one goroutine (the projector) at a time.
type Model struct {
	path string
	// swap guards db: read-locked by every use, write-locked only to swap
	// in a rebuilt file.
	swap    sync.RWMutex
	db      *bbolt.DB
	applied atomic.Uint64

	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every commit
}

// Open opens (creating if needed) the read model at path.
func Open(path string) (*Model, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	m := &Model{path: path, db: db, changed: make(chan struct{})}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keyApplied); v != nil {
			m.applied.Store(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: init %s: %w", path, err)
	}
	return m, nil
}

// Close closes the file.
func (m *Model) Close() error {
	m.swap.Lock()
	defer m.swap.Unlock()
	return m.db.Close()
}

// view runs fn in a read transaction on the current file.
func (m *Model) view(fn func(tx *bbolt.Tx) error) error {
	m.swap.RLock()
	defer m.swap.RUnlock()
	return m.db.View(fn)
}

// Applied returns the last stream sequence applied.
func (m *Model) Applied() uint64 { return m.applied.Load() }

// Apply applies a batch of events, in order, in one transaction, together
// with the new applied sequence. Entries at or below the applied sequence
// are skipped, so a redelivered batch changes nothing.
func (m *Model) Apply(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	var last uint64
	m.swap.RLock()
	defer m.swap.RUnlock()
	err := m.db.Update(func(tx *bbolt.Tx) error {
		applied := binary.BigEndian.Uint64(orZero(tx.Bucket(bucketMeta).Get(keyApplied)))
		last = applied
		for _, e := range entries {
			seq := e.Record.Sequence
			if seq <= last {
				continue
			}
			if err := applyOne(tx, e); err != nil {
				return fmt.Errorf("bolt: apply %d: %w", seq, err)
			}
			last = seq
		}
		if last == applied {
			return nil
		}
		return tx.Bucket(bucketMeta).Put(keyApplied, u64(last))
	})
	if err != nil {
		return err
	}
	m.applied.Store(last)
	m.mu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	return nil
}

func orZero(v []byte) []byte {
	if v == nil {
		return make([]byte, 8)
	}
	return v
}

func applyOne(tx *bbolt.Tx, e Entry) error {
	if e.Record.AggregateID == "" {
		return nil
	}
	switch spa.AggregateOf(e.Record.Event) {
	case spa.AggregateReferral:
		return applyReferral(tx, e)
	case spa.AggregateProvider:
		return applyProvider(tx, e.Record)
	}
	return nil
}

func applyProvider(tx *bbolt.Tx, rec spa.Record) error {
	b := tx.Bucket(bucketProviders)
	var p spa.Provider
	if v := b.Get([]byte(rec.AggregateID)); v != nil {
		if err := json.Unmarshal(v, &p); err != nil {
			return err
		}
	}
	p.Apply(rec)
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return b.Put([]byte(rec.AggregateID), v)
}

func applyReferral(tx *bbolt.Tx, e Entry) error {
	id := e.Record.AggregateID
	refs := tx.Bucket(bucketReferrals)
	var r spa.Referral
	if v := refs.Get([]byte(id)); v != nil {
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
	}
	isNew := !r.Exists()
	r.Apply(e.Record)
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := refs.Put([]byte(id), v); err != nil {
		return err
	}
	if isNew && r.Exists() {
		if err := tx.Bucket(bucketBoard).Put(u64(e.Record.Sequence), []byte(id)); err != nil {
			return err
		}
	}
	if o, ok := e.Record.Event.(spa.OfferMade); ok {
		if err := tx.Bucket(bucketOffers).Put(historyKey(o.ProviderODS, e.Record.Sequence), []byte(id)); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketHistory).Put(historyKey(id, e.Record.Sequence), e.Raw)
}

// WaitFor blocks until sequence seq is applied or ctx ends.
func (m *Model) WaitFor(ctx context.Context, seq uint64) error {
	for {
		m.mu.Lock()
		ch := m.changed
		m.mu.Unlock()
		if m.applied.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ErrNotFound is returned by Get for an unknown referral.
var ErrNotFound = errors.New("bolt: referral not found")

// Stored is one stored event of a referral's history.
type Stored struct {
	Sequence uint64
	Raw      []byte
}

// Get returns a referral and its history, oldest first, or ErrNotFound.
func (m *Model) Get(id string) (spa.Referral, []Stored, error) {
	var r spa.Referral
	var hist []Stored
	err := m.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketReferrals).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		prefix := append([]byte(id), 0)
		c := tx.Bucket(bucketHistory).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			hist = append(hist, Stored{Sequence: binary.BigEndian.Uint64(k[len(prefix):]), Raw: bytes.Clone(v)})
		}
		return nil
	})
	return r, hist, err
}

// Filter selects board rows; zero fields match everything.
type Filter struct {
	Status  spa.Status
	Pathway spa.Pathway
	SiteODS string
}

func (f Filter) match(r spa.Referral) bool {
	return (f.Status == 0 || r.Status == f.Status) &&
		(f.Pathway == 0 || r.Pathway == f.Pathway) &&
		(f.SiteODS == "" || r.Details.Episode.SiteODS == f.SiteODS)
}

// List returns up to limit referrals matching f, in submission order,
// starting after the board position after (0: from the start). next is the
// position to pass to get the following page, 0 when there is none.
func (m *Model) List(f Filter, after uint64, limit int) (rows []spa.Referral, next uint64, err error) {
	err = m.view(func(tx *bbolt.Tx) error {
		refs := tx.Bucket(bucketReferrals)
		c := tx.Bucket(bucketBoard).Cursor()
		var last uint64
		for k, id := c.Seek(u64(after + 1)); k != nil; k, id = c.Next() {
			var r spa.Referral
			if err := json.Unmarshal(refs.Get(id), &r); err != nil {
				return err
			}
			if !f.match(r) {
				continue
			}
			if len(rows) == limit {
				next = last
				return nil
			}
			rows = append(rows, r)
			last = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return rows, next, err
}

// ProviderFilter selects providers; zero fields match everything.
type ProviderFilter struct {
	Borough string
	Service spa.Service
}

// Providers returns the providers matching f, by ODS code.
func (m *Model) Providers(f ProviderFilter) ([]spa.Provider, error) {
	var out []spa.Provider
	err := m.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketProviders).ForEach(func(_, v []byte) error {
			var p spa.Provider
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			if (f.Borough == "" || p.Details.Serves(f.Borough)) && (f.Service == 0 || p.Details.Offers(f.Service)) {
				out = append(out, p)
			}
			return nil
		})
	})
	return out, err
}

// ProviderAssignment is one assignment and the referral it belongs to.
type ProviderAssignment struct {
	Referral   spa.Referral
	Assignment spa.Assignment
}

// Assignments returns a provider's assignments, newest offer first, with
// status status (0: any).
func (m *Model) Assignments(providerODS string, status spa.TaskStatus) ([]ProviderAssignment, error) {
	var out []ProviderAssignment
	err := m.view(func(tx *bbolt.Tx) error {
		prefix := append([]byte(providerODS), 0)
		refs := tx.Bucket(bucketReferrals)
		c := tx.Bucket(bucketOffers).Cursor()
		k, id := c.Seek(append(bytes.Clone(prefix), 0xff))
		if k == nil {
			k, id = c.Last()
		} else {
			k, id = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, id = c.Prev() {
			var r spa.Referral
			if err := json.Unmarshal(refs.Get(id), &r); err != nil {
				return err
			}
			for _, a := range r.Assignments {
				if a.ProviderODS == providerODS && (status == 0 || a.Status == status) {
					out = append(out, ProviderAssignment{Referral: r, Assignment: a})
				}
			}
		}
		return nil
	})
	return out, err
}

// AwaitingCapacity returns the referrals in the no-capacity queue, oldest
// first.
func (m *Model) AwaitingCapacity() ([]spa.Referral, error) {
	return m.referrals(func(r spa.Referral) bool { return r.Status == spa.StatusAwaitingCapacity })
}

// Referrals returns every referral that is not withdrawn or completed,
// oldest first.
func (m *Model) Referrals() ([]spa.Referral, error) {
	return m.referrals(func(r spa.Referral) bool { return r.Status != spa.StatusWithdrawn && r.Status != spa.StatusCompleted })
}

func (m *Model) referrals(keep func(spa.Referral) bool) ([]spa.Referral, error) {
	var out []spa.Referral
	err := m.view(func(tx *bbolt.Tx) error {
		refs := tx.Bucket(bucketReferrals)
		return tx.Bucket(bucketBoard).ForEach(func(_, id []byte) error {
			var r spa.Referral
			if err := json.Unmarshal(refs.Get(id), &r); err != nil {
				return err
			}
			if keep(r) {
				out = append(out, r)
			}
			return nil
		})
	})
	return out, err
}

// Digest returns a SHA-256 over every bucket's keys and values, in order,
// and the applied sequence it covers. Two models that applied the same log
// up to the same sequence have the same digest.
func (m *Model) Digest() (string, uint64, error) {
	m.swap.RLock()
	defer m.swap.RUnlock()
	return digest(m.db)
}

func digest(db *bbolt.DB) (string, uint64, error) {
	h := sha256.New()
	var applied uint64
	err := db.View(func(tx *bbolt.Tx) error {
		applied = binary.BigEndian.Uint64(orZero(tx.Bucket(bucketMeta).Get(keyApplied)))
		for _, name := range allBuckets {
			writeLen(h, name)
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				writeLen(h, k)
				writeLen(h, v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), applied, err
}

// Feed applies the log's events from sequence from to sequence to (both
// inclusive) to model; a rebuild uses it to fill the new file.
type Feed func(ctx context.Context, model *Model, from, to uint64) error

// Rebuilt is the outcome of a rebuild: both digests at the sequence where
// the new file was swapped in.
type Rebuilt struct {
	Applied uint64
	Live    string
	Rebuilt string
}

// Rebuild builds a new file from sequence 1 beside the live one, with feed,
// while queries and the projection go on; then, for the moment it takes to
// apply the last few events and compare, it holds them, and swaps the new
// file in if its digest equals the live one's. A rebuild whose digest
// differs is thrown away and reported as an error: the live file stays.
func (m *Model) Rebuild(ctx context.Context, feed Feed) (Rebuilt, error) {
	tmp := m.path + ".rebuild"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Rebuilt{}, fmt.Errorf("bolt: rebuild: %w", err)
	}
	n, err := Open(tmp)
	if err != nil {
		return Rebuilt{}, err
	}
	discard := func(err error) (Rebuilt, error) {
		n.db.Close()
		os.Remove(tmp)
		return Rebuilt{}, err
	}
	// Catch up while the live model moves on, a few rounds at most.
	for range 10 {
		target := m.Applied()
		if n.Applied() >= target {
			break
		}
		if err := feed(ctx, n, n.Applied()+1, target); err != nil {
			return discard(fmt.Errorf("bolt: rebuild: %w", err))
		}
	}
	m.swap.Lock()
	defer m.swap.Unlock()
	target := m.applied.Load()
	if n.Applied() < target {
		if err := feed(ctx, n, n.Applied()+1, target); err != nil {
			return discard(fmt.Errorf("bolt: rebuild: %w", err))
		}
	}
	live, liveAt, err := digest(m.db)
	if err != nil {
		return discard(err)
	}
	rebuilt, rebuiltAt, err := digest(n.db)
	if err != nil {
		return discard(err)
	}
	out := Rebuilt{Applied: liveAt, Live: live, Rebuilt: rebuilt}
	if live != rebuilt || liveAt != rebuiltAt {
		_, err := discard(fmt.Errorf("bolt: rebuild differs from the live model at sequence %d (rebuilt to %d): kept the live one", liveAt, rebuiltAt))
		return out, err
	}
	if err := m.db.Close(); err != nil {
		return discard(err)
	}
	if err := os.Rename(tmp, m.path); err != nil {
		// The live file is closed: reopen it rather than serve nothing.
		db, oerr := bbolt.Open(m.path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
		if oerr == nil {
			m.db = db
		}
		return discard(errors.Join(fmt.Errorf("bolt: rebuild: swap: %w", err), oerr))
	}
	m.db = n.db
	return out, nil
}

func writeLen(h interface{ Write([]byte) (int, error) }, b []byte) {
	h.Write(u64(uint64(len(b))))
	h.Write(b)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func historyKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(id), 0), seq)
}
