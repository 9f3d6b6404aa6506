// Package bolt keeps the referral read model in a bbolt file: referral
// state, the board and the indexes its filters and the router read,
// together with the last applied stream sequence, all written in one
// transaction per batch. A referral's history is the log's (ADR 30).
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
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"

	"spa/internal/spa"
)

var (
	bucketMeta      = []byte("meta")
	bucketReferrals = []byte("referrals")
	bucketBoard     = []byte("board")
	bucketProviders = []byte("providers")
	// bucketOffers indexes assignments by provider: ods, 0, sequence of
	// the offer -> referral id, 0, assignment id.
	bucketOffers = []byte("offers")
	// bucketPolicies holds each switchable rule's switches (spa.PolicyLog).
	bucketPolicies = []byte("policies")
	keyApplied     = []byte("applied")
	keyLayout      = []byte("layout")
	keyLog         = []byte("log")
	// keyLastHash is the SHA-256 of the last applied event's stored
	// bytes (empty for a sequence that holds none).
	keyLastHash = []byte("last_hash")
	allBuckets  = [][]byte{bucketAwaitingCapacity, bucketAwaitingTest, bucketBoard, bucketByPathway, bucketBySite, bucketByStatus,
		bucketClocks, bucketFeed, bucketMeta, bucketOffers, bucketPolicies, bucketProviders, bucketReferrals}
)

// Entry is one event to apply: the decoded record and its stored bytes.
// An entry whose record has only its Sequence holds no event (a deleted
// sequence); with Skipped, it is an undecodable event an operator decided
// to step over, which moves its aggregate's version on and nothing else.
// Raw, when set, is what the log stores at the sequence: the model keeps
// the last one's hash to know, when opened again, that it is the same log.
type Entry struct {
	Record  spa.Record
	Raw     []byte
	Skipped *Skipped
}

// Skipped names the aggregate of an event stepped over, and the provider
// its headers say it is addressed to, if any.
type Skipped struct {
	Aggregate spa.Aggregate
	ID        string
	Provider  string
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
	// applying is held by Apply, and by a rebuild for the moments it must
	// see no commit happen (taking its snapshot, swapping).
	applying sync.Mutex
	// tail, while a rebuild checks its file, keeps what Apply commits
	// after the rebuild's snapshot (guarded by applying).
	tail *tail
	// rebuilding admits one rebuild at a time.
	rebuilding sync.Mutex
	// progress, on a file being rebuilt, is told each commit.
	progress *Progress
	// log names the log the model is built from (see Bind).
	log string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every commit
}

// layout names how this version lays the model out in its buckets; a file
// laid out otherwise is emptied at Open and built again from the log (the
// model is derived data).
const layout = "11" // 11: the clock index; 10: the provider feed's index; 9: indexes by status, pathway and site, the waiting queues, no history; 8: details as submitted, the rule of a hold, facts time never back, switches from an instant; 7: policy switches; 6: when offers ended and counts were declared; 5: an alert keeps its clock's start; 4: live reservations

// options returns bbolt's options for the read model file at path. The
// initial map is twice the file's size (at least minMap), so that a long
// read transaction (a rebuild's digest of the live model) rarely holds up
// commits and queries: bbolt makes a commit that must grow the map wait
// for every reader, and new readers wait behind it. It reserves address
// space, not memory.
func options(path string) *bbolt.Options {
	o := &bbolt.Options{Timeout: 5 * time.Second, InitialMmapSize: minMap}
	if fi, err := os.Stat(path); err == nil && fi.Size() < 1<<40 {
		o.InitialMmapSize = max(minMap, int(2*fi.Size()))
	}
	return o
}

// minMap is the least initial map of a read model file.
const minMap = 32 << 20

// ErrLocked is returned by Open when another process has the file open.
var ErrLocked = errors.New("the read model file is in use by another process")

// Open opens (creating if needed) the read model at path.
func Open(path string) (*Model, error) {
	db, err := bbolt.Open(path, 0o600, options(path))
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	// A rebuild's file left by a process that died: this process owns the
	// model now.
	if stale, _ := filepath.Glob(path + rebuildSuffix + "*"); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	m := &Model{path: path, db: db, changed: make(chan struct{})}
	err = db.Update(func(tx *bbolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil && string(meta.Get(keyLayout)) != layout {
			// Written by a version that lays the model out otherwise:
			// start again from sequence 1.
			if err := resetBuckets(tx); err != nil {
				return err
			}
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyLayout, []byte(layout)); err != nil {
			return err
		}
		if v := tx.Bucket(bucketMeta).Get(keyApplied); v != nil {
			m.applied.Store(binary.BigEndian.Uint64(v))
		}
		m.log = string(tx.Bucket(bucketMeta).Get(keyLog))
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: init %s: %w", path, err)
	}
	return m, nil
}

// resetBuckets empties every bucket, the layout mark kept.
func resetBuckets(tx *bbolt.Tx) error {
	for _, b := range allBuckets {
		if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
			return err
		}
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyLayout, []byte(layout))
}

// Bind ties the model to the log it is built from: log names that log (a
// stream and when it was created), last is the log's last sequence, and
// hashAt returns the SHA-256 of the stored bytes at a sequence (nil when
// none is stored there). A model built from another log, that has applied
// beyond the log's end, or whose last applied event is not the log's at
// that sequence (the stream was recreated, or restored from an older
// copy and written since), is emptied, to be built again from sequence 1;
// Bind reports whether it was. Call it before the first Apply.
func (m *Model) Bind(log string, last uint64, hashAt func(seq uint64) ([]byte, error)) (bool, error) {
	m.applying.Lock()
	defer m.applying.Unlock()
	applied := m.Applied()
	reset := m.log != "" && m.log != log || applied > last
	if !reset && applied > 0 {
		h, err := hashAt(applied)
		if err != nil {
			return false, fmt.Errorf("bolt: bind to %s: %w", log, err)
		}
		var mine []byte
		if err := m.db.View(func(tx *bbolt.Tx) error {
			mine = bytes.Clone(tx.Bucket(bucketMeta).Get(keyLastHash))
			return nil
		}); err != nil {
			return false, err
		}
		reset = !bytes.Equal(h, mine)
	}
	if !reset && m.log == log {
		return false, nil
	}
	err := m.db.Update(func(tx *bbolt.Tx) error {
		if reset {
			if err := resetBuckets(tx); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyLog, []byte(log))
	})
	if err != nil {
		return false, fmt.Errorf("bolt: bind to %s: %w", log, err)
	}
	m.log = log
	if reset {
		m.applied.Store(0)
	}
	return reset, nil
}

// Log names the log the model is built from ("" before Bind).
func (m *Model) Log() string {
	m.applying.Lock()
	defer m.applying.Unlock()
	return m.log
}

// Close closes the file.
func (m *Model) Close() error {
	m.swap.Lock()
	defer m.swap.Unlock()
	return m.db.Close()
}

// view runs fn in a read transaction on the current file. The swap lock is
// held only to begin it: a rebuild's swap never waits for a long read, which
// goes on in the file it began in (closed once its readers are done).
func (m *Model) view(fn func(tx *bbolt.Tx) error) error {
	m.swap.RLock()
	tx, err := m.db.Begin(false)
	m.swap.RUnlock()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// Applied returns the last stream sequence applied.
func (m *Model) Applied() uint64 { return m.applied.Load() }

// GapError is returned by Apply when a batch does not follow on from the
// applied sequence: applying it would skip events.
type GapError struct {
	Applied uint64 // the model's applied sequence
	Got     uint64 // the sequence offered after it
}

func (e *GapError) Error() string {
	return fmt.Sprintf("bolt: sequence %d offered after %d: events %d-%d missing", e.Got, e.Applied, e.Applied+1, e.Got-1)
}

// Apply applies a batch of events, in order, in one transaction, together
// with the new applied sequence. Entries at or below the applied sequence
// are skipped, so a redelivered batch changes nothing. The first entry
// above it must be the next sequence and each after it the next again:
// otherwise Apply applies nothing and returns a *GapError, and the caller
// must read again from Applied()+1. (A sequence that provably holds no
// event is applied as an Entry whose record has only its Sequence.)
func (m *Model) Apply(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	m.applying.Lock()
	defer m.applying.Unlock()
	var last uint64
	var applied []Entry
	// The file is swapped only while applying is held: no swap lock.
	err := m.db.Update(func(tx *bbolt.Tx) error {
		from := binary.BigEndian.Uint64(orZero(tx.Bucket(bucketMeta).Get(keyApplied)))
		last = from
		b := &batch{tx: tx, states: make(map[string]*pendingState)}
		for i, e := range entries {
			seq := e.Record.Sequence
			if seq <= last {
				continue
			}
			if seq != last+1 {
				return &GapError{Applied: last, Got: seq}
			}
			if applied == nil {
				applied = entries[i:]
			}
			if err := applyOne(b, e); err != nil {
				return fmt.Errorf("bolt: apply %d: %w", seq, err)
			}
			last = seq
		}
		if last == from {
			return nil
		}
		if err := b.flush(); err != nil {
			return fmt.Errorf("bolt: apply up to %d: %w", last, err)
		}
		var hash []byte
		if raw := entries[len(entries)-1].Raw; raw != nil {
			h := sha256.Sum256(raw)
			hash = h[:]
		}
		if err := tx.Bucket(bucketMeta).Put(keyLastHash, hash); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyApplied, u64(last))
	})
	if err != nil {
		return err
	}
	if m.tail != nil {
		m.tail.add(applied)
	}
	if m.progress != nil {
		m.progress.Applied.Store(last)
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

func applyOne(b *batch, e Entry) error {
	if err := indexFeed(b.tx, e); err != nil {
		return err
	}
	if e.Record.AggregateID == "" {
		if e.Skipped != nil {
			return stepOver(b, *e.Skipped, e.Record.Sequence)
		}
		return nil
	}
	switch spa.AggregateOf(e.Record.Event) {
	case spa.AggregateReferral:
		return applyReferral(b, e)
	case spa.AggregateProvider:
		return applyState[spa.Provider](b, bucketProviders, e.Record)
	case spa.AggregatePolicy:
		return applyState[spa.PolicyLog](b, bucketPolicies, e.Record)
	}
	return nil
}

// stepOver moves an aggregate's version on to seq, the sequence of an
// event of its that is stepped over, so that an append guarded by the
// version (a reservation) follows the subject's real last sequence.
func stepOver(b *batch, s Skipped, seq uint64) error {
	switch s.Aggregate {
	case spa.AggregateProvider:
		return setVersion(b, bucketProviders, s.ID, func(p *spa.Provider) { p.Version = seq })
	case spa.AggregateReferral:
		return setVersion(b, bucketReferrals, s.ID, func(r *spa.Referral) { r.Version = seq })
	case spa.AggregatePolicy:
		return setVersion(b, bucketPolicies, s.ID, func(l *spa.PolicyLog) { l.Version = seq })
	}
	return nil
}

// setVersion changes the state of aggregate id in bucket, if it has one.
func setVersion[S any](b *batch, bucket []byte, id string, set func(*S)) error {
	st, err := stateOf[S](b, bucket, id)
	if err != nil || !st.found {
		return err
	}
	set(st.state.(*S))
	st.dirty = true
	return nil
}

// applyState applies rec to its aggregate's state in bucket.
func applyState[S any, P interface {
	*S
	Apply(spa.Record)
}](b *batch, bucket []byte, rec spa.Record) error {
	st, err := stateOf[S](b, bucket, rec.AggregateID)
	if err != nil {
		return err
	}
	P(st.state.(*S)).Apply(rec)
	st.found, st.dirty = true, true
	return nil
}

func applyReferral(b *batch, e Entry) error {
	id := e.Record.AggregateID
	st, err := stateOf[spa.Referral](b, bucketReferrals, id)
	if err != nil {
		return err
	}
	r := st.state.(*spa.Referral)
	isNew := !r.Exists()
	r.Apply(e.Record)
	st.found, st.dirty = true, true
	if isNew && r.Exists() {
		if err := b.tx.Bucket(bucketBoard).Put(u64(e.Record.Sequence), []byte(id)); err != nil {
			return err
		}
	}
	if o, ok := e.Record.Event.(spa.OfferMade); ok {
		if err := b.tx.Bucket(bucketOffers).Put(historyKey(o.ProviderODS, e.Record.Sequence), append([]byte(id+"\x00"), o.AssignmentID...)); err != nil {
			return err
		}
	}
	return nil
}

// batch is one Apply's transaction and the aggregates' states its events
// changed: each state is decoded once, when the batch first needs it, and
// encoded and written once, with its index keys, when the batch ends
// (flush), however many of the batch's events it has.
type batch struct {
	tx     *bbolt.Tx
	states map[string]*pendingState
}

// pendingState is an aggregate's state as the batch has it.
type pendingState struct {
	bucket []byte
	id     string
	state  any // *spa.Referral, *spa.Provider or *spa.PolicyLog
	// found: the state exists (stored, or made by the batch); dirty: the
	// batch changed it.
	found, dirty bool
	// was are a referral's index keys as stored before the batch.
	was indexKeys
}

// stateOf returns the batch's state of aggregate id in bucket, decoding
// the stored one the first time.
func stateOf[S any](b *batch, bucket []byte, id string) (*pendingState, error) {
	key := string(bucket) + "\x00" + id
	if st, ok := b.states[key]; ok {
		return st, nil
	}
	s := new(S)
	st := &pendingState{bucket: bucket, id: id, state: s}
	if v := b.tx.Bucket(bucket).Get([]byte(id)); v != nil {
		if err := json.Unmarshal(v, s); err != nil {
			return nil, err
		}
		st.found = true
	}
	if r, ok := st.state.(*spa.Referral); ok {
		st.was = keysOf(*r)
	}
	b.states[key] = st
	return st, nil
}

// flush writes every state the batch changed, and a referral's index
// keys where they moved.
func (b *batch) flush() error {
	for _, st := range b.states {
		if !st.dirty {
			continue
		}
		v, err := json.Marshal(st.state)
		if err != nil {
			return err
		}
		if err := b.tx.Bucket(st.bucket).Put([]byte(st.id), v); err != nil {
			return err
		}
		if r, ok := st.state.(*spa.Referral); ok {
			if err := reindex(b.tx, st.id, st.was, keysOf(*r)); err != nil {
				return err
			}
			// What the clock scheduler looks at (clocks.go).
			if err := indexClocks(b.tx, st.id, r); err != nil {
				return err
			}
		}
	}
	return nil
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

// Get returns a referral, or ErrNotFound. Its history is the log's: the
// events on its subject up to its Version.
func (m *Model) Get(id string) (spa.Referral, error) {
	var r spa.Referral
	err := m.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketReferrals).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &r)
	})
	return r, err
}

// Filter selects board rows; zero fields match everything.
type Filter struct {
	Status  spa.Status
	Pathway spa.Pathway
	SiteODS string
}

// List returns up to limit referrals matching f, in submission order,
// starting after the board position after (0: from the start). next is the
// position to pass to get the following page, 0 when there is none. It
// reads the indexes of f's values (ADR 30): the rows of the page and the
// keys that lead to them, not the rows that do not match.
func (m *Model) List(f Filter, after uint64, limit int) (rows []spa.Referral, next uint64, err error) {
	err = m.view(func(tx *bbolt.Tx) error {
		refs := tx.Bucket(bucketReferrals)
		board := boardOf(tx, f)
		var last uint64
		for from := after + 1; ; {
			pos, id, ok := board.seek(from)
			if !ok {
				return nil
			}
			if len(rows) == limit {
				next = last
				return nil
			}
			var r spa.Referral
			if err := json.Unmarshal(refs.Get(id), &r); err != nil {
				return err
			}
			rows = append(rows, r)
			last, from = pos, pos+1
		}
	})
	return rows, next, err
}

// ProviderFilter selects providers; zero fields match everything.
type ProviderFilter struct {
	Borough string
	Service spa.Service
}

// Policies returns base with the policy switches applied: the policies in
// force as the log has them.
func (m *Model) Policies(base spa.Policies) (spa.Policies, error) {
	var switches []spa.PolicySwitched
	err := m.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPolicies).ForEach(func(_, v []byte) error {
			var l spa.PolicyLog
			if err := json.Unmarshal(v, &l); err != nil {
				return err
			}
			switches = append(switches, l.Switches...)
			return nil
		})
	})
	return base.WithSwitches(switches), err
}

// Providers returns every provider matching f, by ODS code.
func (m *Model) Providers(f ProviderFilter) ([]spa.Provider, error) {
	out, _, err := m.ProvidersPage(f, "", 0)
	return out, err
}

// ProvidersPage returns up to limit (0: all) providers matching f, by ODS
// code, after ODS code after ("" from the first); next is the ODS code to
// start the following page after, "" when there is none.
func (m *Model) ProvidersPage(f ProviderFilter, after string, limit int) (out []spa.Provider, next string, err error) {
	err = m.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketProviders).Cursor()
		var last []byte // the key of the last provider kept
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			var p spa.Provider
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			if f.Borough != "" && !p.Details.Serves(f.Borough) || f.Service != 0 && !p.Details.Offers(f.Service) {
				continue
			}
			if limit > 0 && len(out) == limit {
				next = string(last)
				return nil
			}
			out = append(out, p)
			last = k
		}
		return nil
	})
	return out, next, err
}

// ProviderAssignment is one assignment and the referral it belongs to.
type ProviderAssignment struct {
	Referral   spa.Referral
	Assignment spa.Assignment
}

// Assignments returns up to limit (0: all) of a provider's assignments with status
// status (0: any), newest offer first, starting below the offer position
// before (0: from the newest); next is the position to pass for the
// following page, 0 when there is none.
func (m *Model) Assignments(providerODS string, status spa.TaskStatus, before uint64, limit int) (out []ProviderAssignment, next uint64, err error) {
	err = m.view(func(tx *bbolt.Tx) error {
		prefix := append([]byte(providerODS), 0)
		refs := tx.Bucket(bucketReferrals)
		c := tx.Bucket(bucketOffers).Cursor()
		start := append(bytes.Clone(prefix), 0xff)
		if before > 0 {
			start = historyKey(providerODS, before)
		}
		k, v := c.Seek(start)
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		var lastKey []byte
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			id, assignmentID, _ := bytes.Cut(v, []byte{0})
			var r spa.Referral
			if err := json.Unmarshal(refs.Get(id), &r); err != nil {
				return err
			}
			for _, a := range r.Assignments {
				if a.ID != string(assignmentID) || status != 0 && a.Status != status {
					continue
				}
				if limit > 0 && len(out) == limit {
					next = binary.BigEndian.Uint64(lastKey[len(prefix):])
					return nil
				}
				out = append(out, ProviderAssignment{Referral: r, Assignment: a})
				lastKey = bytes.Clone(k)
			}
		}
		return nil
	})
	return out, next, err
}

// AwaitingCapacity returns the referrals in the no-capacity queue of a
// borough (compared as spa.ProviderDetails.Serves compares it) and a
// service, oldest first.
func (m *Model) AwaitingCapacity(borough string, service spa.Service) ([]spa.Referral, error) {
	return m.indexed(bucketAwaitingCapacity, queuePrefix(borough, service))
}

// AwaitingTest returns the referrals held for an infection test, oldest
// first.
func (m *Model) AwaitingTest() ([]spa.Referral, error) {
	return m.indexed(bucketAwaitingTest, nil)
}

// indexed returns the referrals of an index bucket's range of a value,
// oldest first.
func (m *Model) indexed(bucket, prefix []byte) ([]spa.Referral, error) {
	var out []spa.Referral
	err := m.view(func(tx *bbolt.Tx) error {
		refs := tx.Bucket(bucketReferrals)
		p := posting{c: tx.Bucket(bucket).Cursor(), prefix: prefix}
		for pos, id, ok := p.seek(0); ok; pos, id, ok = p.seek(pos + 1) {
			var r spa.Referral
			if err := json.Unmarshal(refs.Get(id), &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// Digest returns a SHA-256 over every bucket's keys and values, in order,
// and the applied sequence it covers. Two models that applied the same log
// up to the same sequence have the same digest.
func (m *Model) Digest() (d string, applied uint64, err error) {
	err = m.view(func(tx *bbolt.Tx) error {
		d, applied, err = digestTx(tx)
		return err
	})
	return d, applied, err
}

// digestTx digests what tx sees.
func digestTx(tx *bbolt.Tx) (string, uint64, error) {
	h := sha256.New()
	applied := binary.BigEndian.Uint64(orZero(tx.Bucket(bucketMeta).Get(keyApplied)))
	for _, name := range allBuckets {
		writeLen(h, name)
		err := tx.Bucket(name).ForEach(func(k, v []byte) error {
			writeLen(h, k)
			writeLen(h, v)
			return nil
		})
		if err != nil {
			return "", 0, err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), applied, nil
}

func writeLen(h interface{ Write([]byte) (int, error) }, b []byte) {
	h.Write(u64(uint64(len(b))))
	h.Write(b)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func historyKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(id), 0), seq)
}
