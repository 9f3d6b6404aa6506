package bolt

import (
	"bytes"
	"encoding/binary"
	"strings"
	"unicode"

	bbolt "go.etcd.io/bbolt"

	"spa/internal/spa"
)

// The index buckets (ADR 30). Each key is a value a query selects by
// followed by the referral's board position (its submission's sequence,
// 8 bytes big-endian), and each value is the referral's id, so one
// value's referrals lie together in board order. A referral is in an
// index while its state has that value; applyReferral moves it, in the
// transaction that changes the state.
var (
	// bucketByStatus: status (4 bytes) -> the board's rows in it.
	bucketByStatus = []byte("by_status")
	// bucketByPathway: pathway (4 bytes), for a pathway other than
	// unspecified.
	bucketByPathway = []byte("by_pathway")
	// bucketBySite: referring site (length, then the code), for a
	// referral that names one.
	bucketBySite = []byte("by_site")
	// bucketAwaitingCapacity is the no-capacity queue: borough (length,
	// then folded as spa.ProviderDetails.Serves compares it), service
	// awaited (4 bytes), for a referral whose status is awaiting
	// capacity.
	bucketAwaitingCapacity = []byte("awaiting_capacity")
	// bucketAwaitingTest: referrals held for an infection test (the
	// position alone).
	bucketAwaitingTest = []byte("awaiting_test")
)

// indexes are the index buckets, in the order of indexKeys' entries.
var indexes = [...][]byte{bucketByStatus, bucketByPathway, bucketBySite, bucketAwaitingCapacity, bucketAwaitingTest}

// indexKeys are a referral's key in each index (nil: not in it).
type indexKeys [len(indexes)][]byte

// keysOf returns r's index keys: none before it is submitted.
func keysOf(r spa.Referral) indexKeys {
	var k indexKeys
	if !r.Exists() {
		return k
	}
	pos := r.SubmittedSequence
	k[0] = binary.BigEndian.AppendUint64(u32(uint32(r.Status)), pos)
	if r.Pathway != spa.PathwayUnspecified {
		k[1] = binary.BigEndian.AppendUint64(u32(uint32(r.Pathway)), pos)
	}
	if site := r.Details.Episode.SiteODS; site != "" {
		k[2] = binary.BigEndian.AppendUint64(text(site), pos)
	}
	if r.Status == spa.StatusAwaitingCapacity {
		k[3] = binary.BigEndian.AppendUint64(queuePrefix(r.Details.Patient.Borough, r.Service), pos)
	}
	if r.Hold == spa.HoldReasonAwaitingTest {
		k[4] = u64(pos)
	}
	return k
}

// reindex moves referral id from its keys was to its keys now: a key
// that changed is deleted and the new one put, the others left alone.
func reindex(tx *bbolt.Tx, id string, was, now indexKeys) error {
	for i, name := range indexes {
		if bytes.Equal(was[i], now[i]) {
			continue
		}
		b := tx.Bucket(name)
		if was[i] != nil {
			if err := b.Delete(was[i]); err != nil {
				return err
			}
		}
		if now[i] != nil {
			if err := b.Put(now[i], []byte(id)); err != nil {
				return err
			}
		}
	}
	return nil
}

// queuePrefix is the prefix of the no-capacity queue's keys of a
// borough and a service.
func queuePrefix(borough string, s spa.Service) []byte {
	return append(text(fold(borough)), u32(uint32(s))...)
}

// text encodes s for a key: its length, then its bytes, so that no
// value's keys run into another's.
func text(s string) []byte { return append(binary.AppendUvarint(nil, uint64(len(s))), s...) }

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// fold returns the form of s that every string equal to it under
// strings.EqualFold shares: each rune replaced by the least of its case
// folding orbit (unicode.SimpleFold), as EqualFold compares them.
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// posting is one index's range of a value: the keys of a bucket that
// start with prefix and end with a board position.
type posting struct {
	c      *bbolt.Cursor
	prefix []byte
}

// seek returns the first position at or after from in p's range and its
// referral's id, or false when there is none.
func (p posting) seek(from uint64) (uint64, []byte, bool) {
	k, id := p.c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(p.prefix), from))
	if k == nil || len(k) != len(p.prefix)+8 || !bytes.HasPrefix(k, p.prefix) {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(k[len(p.prefix):]), id, true
}

// intersection is the positions every one of its postings holds.
type intersection []posting

// seek returns the first position at or after from that every posting
// holds, and its referral's id, or false when there is none. It leaps:
// each posting is asked for the first position at or after the greatest
// any other answered, so it reads no more keys than about twice the
// smallest posting's, and a rare value's few.
func (in intersection) seek(from uint64) (uint64, []byte, bool) {
	var id []byte
	for i, agreed := 0, 0; agreed < len(in); i = (i + 1) % len(in) {
		pos, v, ok := in[i].seek(from)
		if !ok {
			return 0, nil, false
		}
		if pos != from {
			from, agreed = pos, 0
		}
		id = v
		agreed++
	}
	return from, id, true
}

// boardOf returns the postings a board filter reads in tx: one per value
// it selects by, or the whole board.
func boardOf(tx *bbolt.Tx, f Filter) intersection {
	var in intersection
	add := func(bucket, prefix []byte) {
		in = append(in, posting{c: tx.Bucket(bucket).Cursor(), prefix: prefix})
	}
	if f.Status != spa.StatusUnspecified {
		add(bucketByStatus, u32(uint32(f.Status)))
	}
	if f.Pathway != spa.PathwayUnspecified {
		add(bucketByPathway, u32(uint32(f.Pathway)))
	}
	if f.SiteODS != "" {
		add(bucketBySite, text(f.SiteODS))
	}
	if len(in) == 0 {
		add(bucketBoard, nil)
	}
	return in
}
