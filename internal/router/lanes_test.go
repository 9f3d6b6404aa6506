package router

import (
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// subjMsg is a prompt with a subject and a number, nothing else.
type subjMsg struct {
	jetstream.Msg
	subject string
	n       int
}

func (m subjMsg) Subject() string { return m.subject }

// TestLanesKeepEachSubjectsOrder: prompts of one subject are taken one at
// a time in the order added, prompts of different subjects overlap, and
// never more than n at once.
func TestLanesKeepEachSubjectsOrder(t *testing.T) {
	const n, subjects, each = 3, 7, 50
	var mu sync.Mutex
	taken := map[string][]int{}
	running := map[string]bool{}
	inFlight, most := 0, 0
	release := make(chan struct{})
	full := make(chan struct{}) // closed once n prompts are taken at once
	l := newLanes(n, func(msg jetstream.Msg) {
		m := msg.(subjMsg)
		mu.Lock()
		if running[m.subject] {
			t.Errorf("two prompts of %s taken at once", m.subject)
		}
		running[m.subject] = true
		inFlight++
		if inFlight == n && most < n {
			close(full)
		}
		most = max(most, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		running[m.subject] = false
		inFlight--
		taken[m.subject] = append(taken[m.subject], m.n)
		mu.Unlock()
	})
	go func() {
		<-full // nothing finishes until n lanes overlap
		for range subjects * each {
			release <- struct{}{}
		}
	}()
	for i := range each {
		for s := range subjects {
			l.add(subjMsg{subject: fmt.Sprintf("spa.referral.R%d", s), n: i})
		}
	}
	l.wait()
	for s := range subjects {
		got := taken[fmt.Sprintf("spa.referral.R%d", s)]
		if len(got) != each {
			t.Fatalf("subject %d: %d prompts taken, want %d", s, len(got), each)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("subject %d: prompt %d taken in place %d: %v", s, v, i, got)
			}
		}
	}
	if most != n {
		t.Errorf("%d prompts taken at once, want %d", most, n)
	}
}
