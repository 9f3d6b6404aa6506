package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/maphash"
	"time"

	bbolt "go.etcd.io/bbolt"

	"spa/internal/spa"
)

// bucketClocks indexes what the clock scheduler must look at, so that a
// pass reads only what falls due (docs/adr/0031). Each referral neither
// withdrawn nor completed has at most one entry of each kind, keyed by an
// instant (big-endian seconds, the sign bit flipped) and its id, with an
// empty value:
//
//   - 'a' instant id: its next alert falls due at or after instant
//     (spa.NextAlert with spa.AllDay, a lower bound whatever the
//     scheduler's operating hours);
//   - 'p' instant id: a policy that came into force after instant, its
//     last fact (FactsAt), may give it a next step (spa.PolicyBound);
//   - 'r' id: the instants of its 'a' and 'p' entries ('a' or 'p' and 8
//     bytes each), to remove them when they change.
//
// It is derived from the referrals' state alone, in the same transaction,
// so a rebuilt model has the same index (it is in the digest). An event
// that moves neither instant writes nothing to it.
var bucketClocks = []byte("clocks")

// Prefixes of the entries of bucketClocks.
const (
	clockAlert   = 'a'
	clockPolicy  = 'p'
	clockReverse = 'r'
)

// indexClocks brings the entries of referral id in bucketClocks up to
// date with its state r: applyReferral calls it after every event of r.
func indexClocks(tx *bbolt.Tx, id string, r *spa.Referral) error {
	b := tx.Bucket(bucketClocks)
	rev := append([]byte{clockReverse}, id...)
	old := bytes.Clone(b.Get(rev))
	var now []byte
	if r.Status != spa.StatusWithdrawn && r.Status != spa.StatusCompleted {
		if at, ok := spa.NextAlert(*r, spa.AllDay); ok {
			now = append(now, clockAlert)
			now = binary.BigEndian.AppendUint64(now, instant(at))
		}
		if spa.PolicyBound(*r) {
			now = append(now, clockPolicy)
			now = binary.BigEndian.AppendUint64(now, instant(r.FactsAt))
		}
	}
	if bytes.Equal(old, now) {
		return nil
	}
	for i := 0; i+9 <= len(old); i += 9 {
		if !hasEntry(now, old[i:i+9]) {
			if err := b.Delete(append(bytes.Clone(old[i:i+9]), id...)); err != nil {
				return err
			}
		}
	}
	for i := 0; i+9 <= len(now); i += 9 {
		if !hasEntry(old, now[i:i+9]) {
			if err := b.Put(append(bytes.Clone(now[i:i+9]), id...), []byte{}); err != nil {
				return err
			}
		}
	}
	if len(now) == 0 {
		return b.Delete(rev)
	}
	return b.Put(rev, now)
}

// hasEntry reports whether a list of 'r' entries' instants holds e.
func hasEntry(list, e []byte) bool {
	for i := 0; i+9 <= len(list); i += 9 {
		if bytes.Equal(list[i:i+9], e) {
			return true
		}
	}
	return false
}

// instant is t's key in bucketClocks: its second (rounded down), ordered
// as the instants are.
func instant(t time.Time) uint64 { return uint64(t.Unix()) ^ 1<<63 }

// Clocked is a referral an entry of the clock index names, with its mark:
// a hash of its stored state, which changes whenever the referral does
// (within this process: the hash is seeded per process).
type Clocked struct {
	Referral spa.Referral
	Mark     uint64
}

// markSeed seeds the marks of Clocked.
var markSeed = maphash.MakeSeed()

// DueBy returns the referrals whose next alert may be due by now (the
// index's lower bound is at or before it), earliest first. skip, given each
// one's id and mark before it is read, leaves it out when it returns true
// (a scheduler that knows it is not due yet).
func (m *Model) DueBy(now time.Time, skip func(id string, mark uint64) bool) ([]Clocked, error) {
	return m.clocked(clockAlert, now, skip)
}

// PolicyBoundBefore returns the referrals whose next step a policy may
// change (spa.PolicyBound) with their last fact at or before t (to the
// second), oldest fact first; skip as for DueBy.
func (m *Model) PolicyBoundBefore(t time.Time, skip func(id string, mark uint64) bool) ([]Clocked, error) {
	return m.clocked(clockPolicy, t, skip)
}

// clocked returns the referrals of the entries of kind kind up to instant
// to, skip leaving some out.
func (m *Model) clocked(kind byte, to time.Time, skip func(id string, mark uint64) bool) ([]Clocked, error) {
	var out []Clocked
	end := binary.BigEndian.AppendUint64([]byte{kind}, instant(to))
	err := m.view(func(tx *bbolt.Tx) error {
		refs := tx.Bucket(bucketReferrals)
		c := tx.Bucket(bucketClocks).Cursor()
		for k, _ := c.Seek([]byte{kind}); k != nil && k[0] == kind && bytes.Compare(k[:9], end) <= 0; k, _ = c.Next() {
			id := k[9:]
			v := refs.Get(id)
			mark := maphash.Bytes(markSeed, v)
			if skip != nil && skip(string(id), mark) {
				continue
			}
			var r spa.Referral
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, Clocked{Referral: r, Mark: mark})
		}
		return nil
	})
	return out, err
}
