package bolt

import (
	"bytes"
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"spa/internal/spa"
)

// CheckIndexes reports how the board and the index buckets differ from
// what the referrals' states call for: a key missing, a key left behind,
// or a key that names another referral.
func (m *Model) CheckIndexes() error {
	return m.view(func(tx *bbolt.Tx) error {
		want := map[string]map[string]string{}
		for _, name := range append([][]byte{bucketBoard}, indexes[:]...) {
			want[string(name)] = map[string]string{}
		}
		err := tx.Bucket(bucketReferrals).ForEach(func(id, v []byte) error {
			var r spa.Referral
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.Exists() {
				want[string(bucketBoard)][string(u64(r.SubmittedSequence))] = string(id)
			}
			for i, k := range keysOf(r) {
				if k != nil {
					want[string(indexes[i])][string(k)] = string(id)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for name, keys := range want {
			err := tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				id, ok := keys[string(k)]
				switch {
				case !ok:
					return fmt.Errorf("%s: key %x (%s) left behind", name, k, v)
				case !bytes.Equal([]byte(id), v):
					return fmt.Errorf("%s: key %x names %s, want %s", name, k, v, id)
				}
				delete(keys, string(k))
				return nil
			})
			if err != nil {
				return err
			}
			for k, id := range keys {
				return fmt.Errorf("%s: key %x of %s missing", name, k, id)
			}
		}
		return nil
	})
}

// Fold is fold, for the tests.
var Fold = fold
