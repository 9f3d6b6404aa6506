package router

import (
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// lanes runs take on prompts, up to n at once, one subject at a time:
// a prompt whose subject has one being taken waits behind it, so each
// aggregate's prompts are taken in the order they were fetched (log
// order), and prompts of different aggregates overlap.
type lanes struct {
	take  func(jetstream.Msg)
	slots chan struct{}
	wg    sync.WaitGroup

	mu sync.Mutex
	// queued holds, per subject being taken, the prompts waiting behind
	// the one being taken.
	queued map[string][]jetstream.Msg
}

func newLanes(n int, take func(jetstream.Msg)) *lanes {
	return &lanes{take: take, slots: make(chan struct{}, n), queued: make(map[string][]jetstream.Msg)}
}

// add has msg taken after the prompts of its subject already added. It
// blocks while n lanes are busy, so a router never holds more prompts
// than it works on, besides those queued behind their own subject.
func (l *lanes) add(msg jetstream.Msg) {
	subject := msg.Subject()
	l.mu.Lock()
	if q, busy := l.queued[subject]; busy {
		l.queued[subject] = append(q, msg)
		l.mu.Unlock()
		return
	}
	l.queued[subject] = nil
	l.mu.Unlock()
	l.slots <- struct{}{}
	l.wg.Add(1)
	go func() {
		defer func() { <-l.slots; l.wg.Done() }()
		for {
			l.take(msg)
			l.mu.Lock()
			q := l.queued[subject]
			if len(q) == 0 {
				delete(l.queued, subject)
				l.mu.Unlock()
				return
			}
			msg, l.queued[subject] = q[0], q[1:]
			l.mu.Unlock()
		}
	}()
}

// wait returns once every prompt added has been taken.
func (l *lanes) wait() { l.wg.Wait() }
