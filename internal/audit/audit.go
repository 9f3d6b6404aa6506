// Package audit verifies the event log's tamper evidence: every sequence
// from 1 present, every event's bytes against the hash recorded when it was
// appended, and every event's link to the previous event on its subject;
// and who wrote it (Signed): every event's signature, and the log's hash
// at each signed checkpoint.
package audit

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"spa/internal/codec"
	"spa/internal/spa"
)

// Break is the first broken link found.
type Break struct {
	Sequence uint64
	Subject  string
	Reason   string
}

func (b *Break) Error() string {
	if b.Subject == "" {
		return fmt.Sprintf("sequence %d: %s", b.Sequence, b.Reason)
	}
	return fmt.Sprintf("sequence %d (%s): %s", b.Sequence, b.Subject, b.Reason)
}

// Chains checks a log read in order, subject by subject. The zero value is
// ready to use and checks a whole log; it is not safe for concurrent use.
type Chains struct {
	// Partial: the events are a filtered export (some subjects, or from a
	// sequence): the chains are checked, not that every sequence is there.
	Partial bool

	last   map[string][]byte // subject -> hash of its last event's bytes
	lastAt map[string]uint64 // subject -> that event's sequence
	events int
	seq    uint64 // the last sequence checked
}

// Check checks the next event of the log, read from its first sequence,
// and returns the break it shows, or nil: it must follow the last one
// checked (the log's sequences are never deleted: a missing one is an
// event taken out), carry the hash recorded when it was appended and
// match it, decode, and link to the hash of the previous event on its
// subject (none for the first).
func (c *Chains) Check(e spa.StoredEvent) *Break {
	if c.last == nil {
		c.last, c.lastAt = map[string][]byte{}, map[string]uint64{}
	}
	switch {
	case e.Sequence == c.seq && c.events > 0:
		return &Break{e.Sequence, e.Subject, "the sequence appears twice"}
	case e.Sequence <= c.seq:
		return &Break{e.Sequence, e.Subject, fmt.Sprintf("it comes after sequence %d: the log is out of order", c.seq)}
	}
	if !c.Partial && e.Sequence != c.seq+1 {
		missing := fmt.Sprintf("sequences %d-%d are", c.seq+1, e.Sequence-1)
		if e.Sequence == c.seq+2 {
			missing = fmt.Sprintf("sequence %d is", c.seq+1)
		}
		return &Break{e.Sequence, e.Subject, missing + " missing before it (a filtered export is verified with --partial)"}
	}
	c.seq = e.Sequence
	c.events++
	own := sha256.Sum256(e.Data)
	if len(e.Data) == 0 && len(e.Hash) == 0 {
		return &Break{e.Sequence, e.Subject, "no event bytes: an export to verify is made with replay --data"}
	}
	if len(e.Hash) == 0 {
		return &Break{e.Sequence, e.Subject, "it carries no recorded hash"}
	}
	if !bytes.Equal(own[:], e.Hash) {
		return &Break{e.Sequence, e.Subject, "its bytes do not match the hash recorded when it was appended"}
	}
	env, err := codec.UnmarshalEnvelope(e.Data)
	if err != nil {
		return &Break{e.Sequence, e.Subject, "its bytes do not decode as an event"}
	}
	if want := c.last[e.Subject]; !bytes.Equal(env.GetPrevHash(), want) {
		if want == nil {
			return &Break{e.Sequence, e.Subject, "it is the first event on its subject but links to a predecessor"}
		}
		return &Break{e.Sequence, e.Subject, fmt.Sprintf("its link does not match the previous event on its subject (sequence %d)", c.lastAt[e.Subject])}
	}
	c.last[e.Subject], c.lastAt[e.Subject] = own[:], e.Sequence
	return nil
}

// Counts returns how many events and subjects were checked.
func (c *Chains) Counts() (events, subjects int) { return c.events, len(c.last) }
