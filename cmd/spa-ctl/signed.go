package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"

	"spa/internal/checkpoint"
	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/signing"
)

// signingKey makes a key pair for the processes that append events.
func (c *ctl) signingKey(args []string) error {
	fs := c.flags("signing-key")
	out := fs.String("out", "", "directory to write signing.key (mode 0600) and signing.pub into (required; an existing key is never overwritten)")
	name := fs.String("name", "spa", "the key's name, in every signature (letters, digits, '-', '.', '_')")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *out == "" || fs.NArg() > 0 {
		return errors.New("signing-key: give --out DIR and nothing else")
	}
	key, err := signing.WriteKeyPair(*out, *name)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "private key: %s (give it to every spa-server and spa-worker with --signing-key; keep it secret)\npublic key:  %s (give it to auditors: spa-ctl verify --public-key)\n%s\n",
		filepath.Join(*out, signing.KeyFile), filepath.Join(*out, signing.PublicKeyFile), key.PublicKey())
	return nil
}

// makeCheckpoint asks a signer for a checkpoint now and prints it.
func (c *ctl) makeCheckpoint(ctx context.Context, args []string) error {
	nc, done, err := c.natsCommand("checkpoint", args, nil)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	note, made, err := checkpoint.Request(ctx, nc.Conn)
	switch {
	case err != nil:
		return fmt.Errorf("checkpoint: %w", err)
	case note == nil:
		fmt.Fprintln(c.stdout, "the log is empty: nothing to checkpoint")
	case made:
		fmt.Fprintf(c.stdout, "signed a checkpoint:\n%s", note)
	default:
		fmt.Fprintf(c.stdout, "the last checkpoint already covers the log:\n%s", note)
	}
	return nil
}

// checkpoints fetches every signed checkpoint and keeps them in a file:
// the auditor's copy, which a later rewrite of the stream cannot change.
func (c *ctl) checkpoints(ctx context.Context, args []string) error {
	var out string
	// Reading checkpoints is the auditor's part (an admin's seed is refused
	// here: its replies come to the auditor's inbox).
	nc, done, err := c.natsCommandAs(natsauth.Auditor, "checkpoints", args, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "", "add the checkpoints to this file (JSON lines; those already there are kept); without it they are printed")
	})
	if err != nil {
		return err
	}
	defer done()
	live, err := c.liveCheckpoints(ctx, nc.Conn)
	if err != nil {
		return err
	}
	if out == "" {
		for _, n := range live {
			fmt.Fprintf(c.stdout, "%s\n", n)
		}
		return nil
	}
	kept, err := readCheckpoints(out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	added := 0
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, n := range live {
		if containsNote(kept, n) {
			continue
		}
		b, _ := json.Marshal(checkpointLine{Note: string(n)})
		w.Write(append(b, '\n'))
		added++
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%d checkpoints in the stream, %d new, added to %s\n", len(live), added, out)
	var gone int
	for _, n := range kept {
		if !containsNote(live, n) {
			gone++
		}
	}
	if gone > 0 {
		return fmt.Errorf("checkpoints: %d checkpoints kept in %s are no longer in the stream: it was rewritten (spa-ctl verify --checkpoints %s reports what changed)", gone, out, out)
	}
	return nil
}

// checkpointLine is one line of a checkpoint file: a signed note.
type checkpointLine struct {
	Note string `json:"note"`
}

func containsNote(notes [][]byte, n []byte) bool {
	for _, m := range notes {
		if bytes.Equal(m, n) {
			return true
		}
	}
	return false
}

// readCheckpoints reads a checkpoint file (spa-ctl checkpoints --out).
func readCheckpoints(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var notes [][]byte
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l checkpointLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Note == "" {
			return nil, fmt.Errorf("%s:%d: not a checkpoint line (want {\"note\": ...}, as spa-ctl checkpoints --out writes)", path, n)
		}
		notes = append(notes, []byte(l.Note))
	}
	return notes, sc.Err()
}

// liveCheckpoints reads every checkpoint in the checkpoint stream.
func (c *ctl) liveCheckpoints(ctx context.Context, nc *nats.Conn) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	store, err := jetstream.Open(ctx, nc, jetstream.Requirements{})
	if err != nil {
		return nil, err
	}
	cps, err := store.OpenCheckpoints(ctx, jetstream.Requirements{})
	if err != nil {
		return nil, err
	}
	var notes [][]byte
	err = cps.All(ctx, func(n []byte) error {
		notes = append(notes, bytes.Clone(n))
		return nil
	})
	return notes, err
}

// publicKeys is --public-key: a key ("name+hash+base64") or a file
// holding one per line; repeatable.
type publicKeys []string

func (p *publicKeys) String() string { return strings.Join(*p, ",") }

func (p *publicKeys) Set(v string) error {
	if b, err := os.ReadFile(v); err == nil {
		for line := range strings.Lines(string(b)) {
			if line = strings.TrimSpace(line); line != "" {
				*p = append(*p, line)
			}
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if !strings.Contains(v, "+") {
		return fmt.Errorf("%q is neither a file nor a public key (name+hash+base64)", v)
	}
	*p = append(*p, v)
	return nil
}
