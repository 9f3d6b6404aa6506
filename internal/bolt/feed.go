package bolt

import (
	"bytes"
	"encoding/binary"

	bbolt "go.etcd.io/bbolt"

	"spa/internal/spa"
)

// bucketFeed indexes the provider feed (ADR 35): provider ODS, 0,
// sequence -> nothing, for every referral event addressed to a provider
// (the events WatchAssignments delivers), so that a watch catches up by
// reading its own provider's events only.
var bucketFeed = []byte("feed")

// indexFeed adds e to the provider feed's index if it is a referral event
// addressed to a provider: by spa.ProviderOf, or for an undecodable event
// stepped over, by the provider its headers named.
func indexFeed(tx *bbolt.Tx, e Entry) error {
	var provider string
	switch {
	case e.Skipped != nil:
		if e.Skipped.Aggregate == spa.AggregateReferral {
			provider = e.Skipped.Provider
		}
	case e.Record.AggregateID != "" && spa.AggregateOf(e.Record.Event) == spa.AggregateReferral:
		provider = spa.ProviderOf(e.Record)
	}
	if provider == "" {
		return nil
	}
	return tx.Bucket(bucketFeed).Put(historyKey(provider, e.Record.Sequence), nil)
}

// ProviderFeed returns the sequences of up to limit referral events
// addressed to provider after sequence after, oldest first, and the
// sequence the model had applied when it read them: every such event up
// to applied is listed, unless limit cut the list short.
func (m *Model) ProviderFeed(provider string, after uint64, limit int) (seqs []uint64, applied uint64, err error) {
	err = m.view(func(tx *bbolt.Tx) error {
		applied = binary.BigEndian.Uint64(orZero(tx.Bucket(bucketMeta).Get(keyApplied)))
		prefix := append([]byte(provider), 0)
		c := tx.Bucket(bucketFeed).Cursor()
		for k, _ := c.Seek(historyKey(provider, after+1)); k != nil && bytes.HasPrefix(k, prefix) && len(seqs) < limit; k, _ = c.Next() {
			seqs = append(seqs, binary.BigEndian.Uint64(k[len(prefix):]))
		}
		return nil
	})
	return seqs, applied, err
}
