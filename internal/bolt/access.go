package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"

	"spa/internal/spa"
)

// The access index's buckets. A position is 12 bytes: the record's
// sequence and the referral's index in it (spa.AccessPosition), big
// endian, so that keys sort as the log does.
var (
	// accessCalls: sequence -> the call (JSON of spa.Access).
	accessCalls = []byte("calls")
	// accessReferrals: referral id, 0, position -> the patient's NHS
	// number as recorded ("" when unknown).
	accessReferrals = []byte("referrals")
	// accessPatients: NHS number, 0, referral id -> nothing: the
	// referrals whose reads were recorded under the patient. A patient's
	// reads are their referrals' reads recorded under their NHS number,
	// merged in log order: one index entry per referral read, not two,
	// halves what a board page costs to index.
	accessPatients = []byte("patients")
	// accessMeta: the layout, the log and the applied sequence.
	accessMeta                                      = []byte("meta")
	accessBuckets                                   = [][]byte{accessCalls, accessMeta, accessPatients, accessReferrals}
	accessLayoutKey, accessLogKey, accessAppliedKey = []byte("layout"), []byte("log"), []byte("applied")
)

// accessLayout names how this version lays the index out; a file laid out
// otherwise is emptied at open and built again from the access log.
const accessLayout = "1"

// AccessEntry is one access log record to index: its sequence, the call,
// and the referrals it read (several for a call since ADR 33, one for an
// older record).
type AccessEntry struct {
	Sequence uint64
	Access   spa.Access
	Read     []spa.Accessed
}

// AccessIndex is a worker's index of the access log by referral and by
// patient, with the last access log sequence applied, written in one
// transaction per batch: a page of one referral's or one patient's reads
// costs what it returns, however long the log. Like the read model it is
// derived data in a file of its own (one owning process): deleted, it is
// built again from the access log. Its methods are safe for concurrent
// use; Apply must be called by one goroutine at a time.
type AccessIndex struct {
	db      *bbolt.DB
	applied atomic.Uint64
	// log names the access log the index is built from (see Bind).
	log string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every commit
}

// OpenAccessIndex opens (creating if needed) the access index at path.
func OpenAccessIndex(path string) (*AccessIndex, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	x := &AccessIndex{db: db, changed: make(chan struct{})}
	err = db.Update(func(tx *bbolt.Tx) error {
		if meta := tx.Bucket(accessMeta); meta != nil && string(meta.Get(accessLayoutKey)) != accessLayout {
			if err := resetAccess(tx); err != nil {
				return err
			}
		}
		for _, b := range accessBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(accessMeta)
		if err := meta.Put(accessLayoutKey, []byte(accessLayout)); err != nil {
			return err
		}
		if v := meta.Get(accessAppliedKey); v != nil {
			x.applied.Store(binary.BigEndian.Uint64(v))
		}
		x.log = string(meta.Get(accessLogKey))
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: init %s: %w", path, err)
	}
	return x, nil
}

// resetAccess empties every bucket of the index.
func resetAccess(tx *bbolt.Tx) error {
	for _, b := range accessBuckets {
		if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
			return err
		}
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	return tx.Bucket(accessMeta).Put(accessLayoutKey, []byte(accessLayout))
}

// Bind ties the index to the access log it is built from: log names it
// (its stream and when it was created) and last is its last sequence. An
// index built from another log, or that has applied beyond the log's
// end, is emptied, to be built again from sequence 1; Bind reports
// whether it was. Call it before the first Apply.
func (x *AccessIndex) Bind(log string, last uint64) (bool, error) {
	reset := x.log != "" && x.log != log || x.Applied() > last
	if !reset && x.log == log {
		return false, nil
	}
	err := x.db.Update(func(tx *bbolt.Tx) error {
		if reset {
			if err := resetAccess(tx); err != nil {
				return err
			}
		}
		return tx.Bucket(accessMeta).Put(accessLogKey, []byte(log))
	})
	if err != nil {
		return false, fmt.Errorf("bolt: bind the access index to %s: %w", log, err)
	}
	x.log = log
	if reset {
		x.applied.Store(0)
	}
	return reset, nil
}

// Close closes the file.
func (x *AccessIndex) Close() error { return x.db.Close() }

// Applied returns the last access log sequence applied.
func (x *AccessIndex) Applied() uint64 { return x.applied.Load() }

// WaitFor waits until the index has applied seq or ctx ends.
func (x *AccessIndex) WaitFor(ctx context.Context, seq uint64) error {
	for {
		x.mu.Lock()
		ch := x.changed
		x.mu.Unlock()
		if x.Applied() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Apply indexes a batch of records, in order, in one transaction, together
// with the new applied sequence. Entries at or below the applied sequence
// are skipped, so a redelivered batch changes nothing; the others must
// come in increasing order (the access log's reader delivers every record
// in order; its sequences have no gaps, as its stream denies deletes).
func (x *AccessIndex) Apply(entries []AccessEntry) error {
	if len(entries) == 0 {
		return nil
	}
	var last uint64
	err := x.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(accessMeta)
		from := uint64(0)
		if v := meta.Get(accessAppliedKey); v != nil {
			from = binary.BigEndian.Uint64(v)
		}
		last = from
		calls, referrals, patients := tx.Bucket(accessCalls), tx.Bucket(accessReferrals), tx.Bucket(accessPatients)
		for _, e := range entries {
			if e.Sequence <= last {
				continue
			}
			call, err := json.Marshal(e.Access)
			if err != nil {
				return err
			}
			if err := calls.Put(binary.BigEndian.AppendUint64(nil, e.Sequence), call); err != nil {
				return err
			}
			for i, r := range e.Read {
				pos := spa.AccessPosition{Sequence: e.Sequence, Index: uint32(i)}
				if err := referrals.Put(accessKey(r.ReferralID, pos), []byte(r.NHSNumber)); err != nil {
					return err
				}
				if r.NHSNumber == "" {
					continue // found by its referral only
				}
				// Put only when new: a put dirties its page even when
				// the key is there.
				if k := append(append([]byte(r.NHSNumber), 0), r.ReferralID...); patients.Get(k) == nil {
					if err := patients.Put(k, nil); err != nil {
						return err
					}
				}
			}
			last = e.Sequence
		}
		if last == from {
			return nil
		}
		return meta.Put(accessAppliedKey, binary.BigEndian.AppendUint64(nil, last))
	})
	if err != nil {
		return fmt.Errorf("bolt: access index: %w", err)
	}
	x.applied.Store(last)
	x.mu.Lock()
	close(x.changed)
	x.changed = make(chan struct{})
	x.mu.Unlock()
	return nil
}

// accessKey is an index key: who (a referral id or an NHS number), 0, the
// position.
func accessKey(who string, pos spa.AccessPosition) []byte {
	k := make([]byte, 0, len(who)+13)
	k = append(k, who...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, pos.Sequence)
	return binary.BigEndian.AppendUint32(k, pos.Index)
}

// ByReferral returns up to limit reads of a referral after position
// after, oldest first, and the position to pass for the next page (zero
// when there is none).
func (x *AccessIndex) ByReferral(id string, after spa.AccessPosition, limit int) ([]spa.AccessRecord, spa.AccessPosition, error) {
	var out []spa.AccessRecord
	var next spa.AccessPosition
	err := x.db.View(func(tx *bbolt.Tx) error {
		var err error
		out, next, err = page(tx, []string{id}, "", after, limit)
		return err
	})
	return out, next, err
}

// ByPatient returns up to limit reads of any referral of the patient
// with NHS number nhs after position after, oldest first, and the
// position to pass for the next page (zero when there is none).
func (x *AccessIndex) ByPatient(nhs string, after spa.AccessPosition, limit int) ([]spa.AccessRecord, spa.AccessPosition, error) {
	var out []spa.AccessRecord
	var next spa.AccessPosition
	err := x.db.View(func(tx *bbolt.Tx) error {
		var ids []string
		prefix := append([]byte(nhs), 0)
		c := tx.Bucket(accessPatients).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			ids = append(ids, string(k[len(prefix):]))
		}
		var err error
		out, next, err = page(tx, ids, nhs, after, limit)
		return err
	})
	return out, next, err
}

// head is a referral's next read in a page being merged.
type head struct {
	id  string
	c   *bbolt.Cursor
	pos spa.AccessPosition
	nhs []byte
}

// advance moves h to the referral's next read after position after
// recorded under nhs (any, when nhs is ""), and reports whether there is
// one.
func (h *head) advance(k, v []byte, after spa.AccessPosition, nhs string) bool {
	prefix := len(h.id) + 1
	for ; k != nil && len(k) == prefix+12 && string(k[:len(h.id)]) == h.id && k[len(h.id)] == 0; k, v = h.c.Next() {
		h.pos = spa.AccessPosition{Sequence: binary.BigEndian.Uint64(k[prefix:]), Index: binary.BigEndian.Uint32(k[prefix+8:])}
		if after.Before(h.pos) && (nhs == "" || string(v) == nhs) {
			h.nhs = v
			return true
		}
	}
	return false
}

// page reads up to limit reads of the referrals ids after position after,
// in log order, merging the referrals' reads; with nhs, only those
// recorded under that NHS number. It returns the position of the last
// read when more follow.
func page(tx *bbolt.Tx, ids []string, nhs string, after spa.AccessPosition, limit int) ([]spa.AccessRecord, spa.AccessPosition, error) {
	var heads []*head
	for _, id := range ids {
		h := &head{id: id, c: tx.Bucket(accessReferrals).Cursor()}
		if k, v := h.c.Seek(accessKey(id, after)); h.advance(k, v, after, nhs) {
			heads = append(heads, h)
		}
	}
	var out []spa.AccessRecord
	calls := map[uint64]spa.Access{}
	for len(heads) > 0 {
		first := 0
		for i, h := range heads {
			if h.pos.Before(heads[first].pos) {
				first = i
			}
		}
		h := heads[first]
		if len(out) == limit {
			return out, out[len(out)-1].Position, nil
		}
		acc, ok := calls[h.pos.Sequence]
		if !ok {
			raw := tx.Bucket(accessCalls).Get(binary.BigEndian.AppendUint64(nil, h.pos.Sequence))
			if raw == nil {
				return nil, spa.AccessPosition{}, fmt.Errorf("bolt: access index: record %d is indexed but not kept", h.pos.Sequence)
			}
			if err := json.Unmarshal(raw, &acc); err != nil {
				return nil, spa.AccessPosition{}, fmt.Errorf("bolt: access index: record %d: %w", h.pos.Sequence, err)
			}
			calls[h.pos.Sequence] = acc
		}
		out = append(out, spa.AccessRecord{Position: h.pos, Access: acc, Accessed: spa.Accessed{ReferralID: h.id, NHSNumber: string(h.nhs)}})
		if k, v := h.c.Next(); !h.advance(k, v, h.pos, nhs) {
			heads = append(heads[:first], heads[first+1:]...)
		}
	}
	return out, spa.AccessPosition{}, nil
}
