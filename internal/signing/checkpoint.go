package signing

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// LogHash is a running hash over the log: every event's sequence, subject
// and stored bytes' SHA-256, in sequence order. Two logs have the same
// LogHash at a sequence only if they hold the same events up to it, none
// missing, none added, none moved. The zero value is the empty log's.
type LogHash struct {
	// Sequence is the last sequence added (0: none).
	Sequence uint64
	// Sum is the hash after it.
	Sum [sha256.Size]byte
}

// Add folds in the event at seq (after the last one added):
// Sum = SHA-256(Sum || seq || len(subject) || subject || eventHash), the
// numbers big-endian, seq in 8 bytes and the length in 2.
func (h *LogHash) Add(seq uint64, subject string, eventHash []byte) {
	b := make([]byte, 0, len(h.Sum)+8+2+len(subject)+len(eventHash))
	b = append(b, h.Sum[:]...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint16(b, uint16(len(subject)))
	b = append(b, subject...)
	b = append(b, eventHash...)
	h.Sum, h.Sequence = sha256.Sum256(b), seq
}

// Checkpoint is a signed statement that the log's events from sequence 1
// to Sequence hash to Hash (a LogHash). It commits to what the log held,
// forged events included: it does not vouch for each event (their own
// signatures do), it stops the log from being changed, cut or reordered
// afterwards without the change showing.
type Checkpoint struct {
	LogHash
	// Signed is when it was signed (as the signer's clock had it).
	Signed time.Time
}

// checkpointHeader is the first line of a checkpoint's text.
const checkpointHeader = "spa event log checkpoint v1"

// Text returns the checkpoint's note text:
//
//	spa event log checkpoint v1
//	sequence 1234
//	hash <base64 LogHash>
//	signed 2026-11-23T10:00:00Z
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\nsequence %d\nhash %s\nsigned %s\n", checkpointHeader, c.Sequence,
		base64.StdEncoding.EncodeToString(c.Sum[:]), c.Signed.UTC().Format(time.RFC3339))
}

// SignCheckpoint returns c as a signed note.
func (k *Key) SignCheckpoint(c Checkpoint) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Text()}, k.signer)
}

// ErrCheckpointSignature is wrapped by OpenCheckpoint when a checkpoint
// carries no valid signature by a key given.
var ErrCheckpointSignature = errors.New("no valid signature by a key given")

// OpenCheckpoint checks a signed checkpoint against the keys given and
// returns it; the error says what is wrong with it (wrapping
// ErrCheckpointSignature when its signature is the problem).
func OpenCheckpoint(msg []byte, v Verifiers) (Checkpoint, error) {
	list := v.list
	if list == nil {
		list = note.VerifierList()
	}
	n, err := note.Open(msg, list)
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		var by []string
		for _, s := range unverified.Note.UnverifiedSigs {
			by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
		}
		return Checkpoint{}, fmt.Errorf("checkpoint: %w (signed by %s only)", ErrCheckpointSignature, strings.Join(by, ", "))
	case errors.As(err, &invalid):
		return Checkpoint{}, fmt.Errorf("checkpoint: %w: %w", ErrCheckpointSignature, err)
	case err != nil:
		return Checkpoint{}, fmt.Errorf("checkpoint: not a signed note: %w", err)
	}
	return parseCheckpoint(n.Text)
}

func parseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	bad := func(what string) (Checkpoint, error) {
		return Checkpoint{}, fmt.Errorf("checkpoint: signed but malformed: %s", what)
	}
	if len(lines) != 4 || lines[0] != checkpointHeader {
		return bad("not a " + checkpointHeader)
	}
	seq, ok := strings.CutPrefix(lines[1], "sequence ")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 {
		return bad("sequence")
	}
	h, ok := strings.CutPrefix(lines[2], "hash ")
	sum, err := base64.StdEncoding.DecodeString(h)
	if !ok || err != nil || len(sum) != sha256.Size {
		return bad("hash")
	}
	at, ok := strings.CutPrefix(lines[3], "signed ")
	t, err := time.Parse(time.RFC3339, at)
	if !ok || err != nil {
		return bad("time")
	}
	c.Sequence, c.Signed = n, t
	copy(c.Sum[:], sum)
	return c, nil
}
