package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// RequestSubject is where an operator asks the signers for a checkpoint
// now (spa-ctl checkpoint); one signer of the queue group answers. Only
// operators need publish on it.
const RequestSubject = "spa.signer.checkpoint"

// queueGroup is the signers' queue group on RequestSubject.
const queueGroup = "spa-signers"

// answer is a signer's reply to a request.
type answer struct {
	Note  string `json:"note,omitempty"`
	Made  bool   `json:"made,omitempty"`
	Error string `json:"error,omitempty"`
}

// makeTimeout bounds the checkpoint one request makes.
const makeTimeout = time.Minute

// Serve answers requests on RequestSubject with Make until ctx ends.
func (s *Signer) Serve(ctx context.Context, nc *nats.Conn) error {
	reqs := make(chan *nats.Msg, 16)
	sub, err := nc.ChanQueueSubscribe(RequestSubject, queueGroup, reqs)
	if err != nil {
		return fmt.Errorf("checkpoint: subscribe %s: %w", RequestSubject, err)
	}
	defer sub.Unsubscribe()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-reqs:
			mctx, cancel := context.WithTimeout(ctx, makeTimeout)
			res, err := s.Make(mctx)
			cancel()
			a := answer{Note: string(res.Note), Made: res.Made}
			if err != nil {
				a = answer{Error: err.Error()}
			}
			b, _ := json.Marshal(a)
			if err := m.Respond(b); err != nil {
				s.log.Warn("checkpoint: answer a request", "err", err)
			}
		}
	}
}

// Request asks a signer for a checkpoint now and returns the last
// checkpoint stored after it (nil when the log is empty), and whether
// the signer made it (false: the last one already covered the log).
func Request(ctx context.Context, nc *nats.Conn) (note []byte, made bool, err error) {
	msg, err := nc.RequestWithContext(ctx, RequestSubject, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, false, errors.New("no signer answers: is spa-server running on this NATS (with --checkpoint-every above 0)?")
	}
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint request: %w", err)
	}
	var a answer
	if err := json.Unmarshal(msg.Data, &a); err != nil {
		return nil, false, fmt.Errorf("checkpoint request: the answer: %w", err)
	}
	if a.Error != "" {
		return nil, false, fmt.Errorf("the signer failed: %s", a.Error)
	}
	if a.Note == "" {
		return nil, false, nil
	}
	return []byte(a.Note), a.Made, nil
}
