package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"spa/internal/signing"
	"spa/internal/spa"
)

// Signed checks who wrote the log as well as its chains (ADR 26): every
// event signed by one of the public keys given, and the log's hash at
// each signed checkpoint the same as when it was signed, up to the last
// one. It is not safe for concurrent use.
type Signed struct {
	chains      Chains
	keys        signing.Verifiers
	checkpoints []signing.Checkpoint // by sequence, one per sequence
	next        int                  // the first checkpoint not reached yet
	hash        signing.LogHash
}

// NewSigned returns a checker of a log read in order from its first
// sequence (or, partial, a filtered export: see Chains.Partial). keys
// (possibly empty: authorship is then not checked) are the public keys
// the events and checkpoints must be signed with; checkpoints are signed
// notes (spa-ctl checkpoints), each checked now against keys. A
// checkpoint without a valid signature, two that disagree about a
// sequence, or checkpoints with a partial export or without keys, are
// errors.
func NewSigned(keys signing.Verifiers, checkpoints [][]byte, partial bool) (*Signed, error) {
	s := &Signed{chains: Chains{Partial: partial}, keys: keys}
	if len(checkpoints) > 0 && keys.Empty() {
		return nil, errors.New("checkpoints are checked against public keys: give --public-key")
	}
	if len(checkpoints) > 0 && partial {
		return nil, errors.New("a partial export cannot be checked against checkpoints: they cover every event from sequence 1")
	}
	for i, note := range checkpoints {
		c, err := signing.OpenCheckpoint(note, keys)
		if err != nil {
			return nil, fmt.Errorf("checkpoint %d of %d: %w", i+1, len(checkpoints), err)
		}
		s.checkpoints = append(s.checkpoints, c)
	}
	slices.SortFunc(s.checkpoints, func(a, b signing.Checkpoint) int { return cmpUint(a.Sequence, b.Sequence) })
	var kept []signing.Checkpoint
	for _, c := range s.checkpoints {
		if n := len(kept); n > 0 && kept[n-1].Sequence == c.Sequence {
			if kept[n-1].Sum != c.Sum {
				return nil, fmt.Errorf("two signed checkpoints of sequence %d disagree (signed %s and %s): the log was rewritten and signed again, or a signing key is in the wrong hands",
					c.Sequence, kept[n-1].Signed.Format("2006-01-02T15:04:05Z07:00"), c.Signed.Format("2006-01-02T15:04:05Z07:00"))
			}
			continue
		}
		kept = append(kept, c)
	}
	s.checkpoints = kept
	return s, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Check checks the next event like Chains.Check, then its signature (when
// keys were given) and, at a checkpoint's sequence, the log's hash so far
// against the checkpoint's; it returns the first break, or nil.
func (s *Signed) Check(e spa.StoredEvent) *Break {
	if b := s.chains.Check(e); b != nil {
		return b
	}
	own := sha256.Sum256(e.Data)
	if !s.keys.Empty() {
		if err := s.keys.VerifyEvent(e.Subject, own[:], e.Signature); err != nil {
			reason := "it was not appended by SPA (forged): "
			if errors.Is(err, signing.ErrUnknownKey) {
				reason = "it is not signed by a key given (forged, or give the key it was signed with): "
			}
			return &Break{e.Sequence, e.Subject, reason + err.Error()}
		}
	}
	if s.chains.Partial {
		return nil
	}
	s.hash.Add(e.Sequence, e.Subject, own[:])
	if s.next < len(s.checkpoints) && s.checkpoints[s.next].Sequence == e.Sequence {
		c := s.checkpoints[s.next]
		s.next++
		if !bytes.Equal(c.Sum[:], s.hash.Sum[:]) {
			return &Break{e.Sequence, e.Subject, fmt.Sprintf("the log up to here differs from the checkpoint signed at %s: events before it were changed, removed, added or reordered",
				c.Signed.Format("2006-01-02T15:04:05Z07:00"))}
		}
	}
	return nil
}

// Finish is called after the last event: it returns a break when the log
// ends before the last checkpoint's sequence (its tail was cut off).
func (s *Signed) Finish() *Break {
	if s.next >= len(s.checkpoints) {
		return nil
	}
	c := s.checkpoints[len(s.checkpoints)-1]
	ends := "the log ends here"
	if s.chains.seq == 0 {
		ends = "the log is empty"
	}
	return &Break{s.chains.seq, "", fmt.Sprintf("%s but a checkpoint signed at %s covers up to sequence %d: its tail was cut off", ends,
		c.Signed.Format("2006-01-02T15:04:05Z07:00"), c.Sequence)}
}

// Report says what was checked, once Finish returned nil.
type Report struct {
	Events, Subjects int
	// Authorship is true when every event's signature was checked.
	Authorship bool
	// Checkpoints is how many checkpoints were matched; Covered the last
	// one's sequence (0 when none).
	Checkpoints int
	Covered     uint64
	// Last is the last sequence checked.
	Last uint64
}

// Report returns what was checked.
func (s *Signed) Report() Report {
	events, subjects := s.chains.Counts()
	r := Report{Events: events, Subjects: subjects, Authorship: !s.keys.Empty(), Checkpoints: s.next, Last: s.chains.seq}
	if s.next > 0 {
		r.Covered = s.checkpoints[s.next-1].Sequence
	}
	return r
}
