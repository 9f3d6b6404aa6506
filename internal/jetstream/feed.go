package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"spa/internal/backoff"
	"spa/internal/spa"
)

// FeedIndex lists the referral events addressed to a provider: the read
// model's index of the provider feed (query.Client is one).
type FeedIndex interface {
	// ProviderFeed returns the sequences of up to limit referral events
	// addressed to provider after sequence after, oldest first, once the
	// index has applied minSequence, and the sequence it had applied:
	// every such event up to it is listed unless the page is full.
	ProviderFeed(ctx context.Context, provider string, after uint64, limit int, minSequence uint64) ([]uint64, uint64, error)
}

// Feed is the event log with the provider feed of one server process
// (ADR 35): Replay and the rest as the Store's, and Watch, whose cost is
// proportional to the events addressed to the watching provider. A watch
// catches up from the read model's index (FeedIndex) and reads only the
// events it lists, by sequence; then it takes its events from one fan-out
// per process, an ordered consumer over the referral subjects that runs
// while any watch is open and hands each event to the watches of its
// provider. Safe for concurrent use.
type Feed struct {
	*Store
	index FeedIndex
	// buffer is how many events wait for a watcher at most; a watcher
	// that falls further behind catches up from the index again.
	buffer int
	// indexGate logs an index that cannot answer once.
	indexGate *backoff.Gate

	mu  sync.Mutex
	hub *hub // nil while no watch is open
}

// Feed tuning.
const (
	// DefaultFeedBuffer is how many events wait for a watcher at most.
	DefaultFeedBuffer = 256
	// feedPage is how many sequences one index query asks for.
	feedPage = 256
	// feedGets is how many events a catching-up watch reads at once.
	feedGets = 32
	// feedIndexWait bounds how long one index query is waited for, and
	// retried, before the watch reads the log instead.
	feedIndexWait = 2 * time.Second
)

// NewFeed returns the provider feed of store, catching up from index (nil:
// by reading every referral event from the cursor, as a scan). A watcher
// gets at most buffer events ahead of what it has sent (0:
// DefaultFeedBuffer) before it falls back to catching up.
func NewFeed(store *Store, index FeedIndex, buffer int) *Feed {
	if buffer <= 0 {
		buffer = DefaultFeedBuffer
	}
	return &Feed{Store: store, index: index, buffer: buffer, indexGate: backoff.NewGate("provider feed index", store.log)}
}

// errLost ends a watch's live phase: its buffer filled (or the fan-out
// stopped), so it catches up from where it is.
var errLost = errors.New("jetstream: the watch fell behind the fan-out")

// Watch calls fn for every event on referral subjects addressed to
// provider that comes after sequence after (KindOutOfRange if after is
// beyond the log's end), in log order, none twice and none missed, as
// it is appended, until ctx ends or fn fails; every interval in which no
// such event was sent, fn is called with an empty event whose Sequence is
// the last one passed (a heartbeat that moves the cursor on).
//
// It subscribes to the fan-out first, which hands it every event of its
// provider from the fan-out's next sequence on; it sends the events
// before that sequence from the index (or, where the index cannot answer
// or has not got so far, by reading the log), then the fan-out's. A watch
// whose buffer fills subscribes again and catches up the same way: a
// slow watcher never holds up the others, and loses nothing.
func (f *Feed) Watch(ctx context.Context, provider string, after uint64, interval time.Duration, fn func(spa.StoredEvent) error) error {
	last, err := f.LastSequence(ctx)
	if err != nil {
		return err
	}
	if after > last {
		return spa.Errorf(spa.KindOutOfRange, "after_sequence %d is beyond the log's last sequence %d", after, last)
	}
	w := &watcher{provider: provider, fn: fn, cursor: after, interval: interval}
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		w.tick = t.C
	}
	sub, err := f.subscribe(ctx, provider)
	if err != nil {
		return err
	}
	defer func() { f.unsubscribe(sub) }()
	for {
		if err := f.catchUp(ctx, w, sub.from-1); err != nil {
			return err
		}
		if err := w.live(ctx, sub); !errors.Is(err, errLost) {
			return err
		}
		next, err := f.subscribe(ctx, provider)
		if err != nil {
			return err
		}
		f.unsubscribe(sub)
		sub = next
	}
}

// watcher is one watch's position and its client.
type watcher struct {
	provider string
	fn       func(spa.StoredEvent) error
	// cursor: every event addressed to provider up to it has been sent.
	cursor uint64
	// sent: an event was sent since the last tick.
	sent bool
	// tick fires every interval (nil: no heartbeats).
	tick     <-chan time.Time
	interval time.Duration
}

// send sends e unless it is at or before the cursor.
func (w *watcher) send(e spa.StoredEvent) error {
	if e.Sequence <= w.cursor {
		return nil
	}
	if err := w.fn(e); err != nil {
		return err
	}
	w.cursor, w.sent = e.Sequence, true
	return nil
}

// beat moves the cursor on to passed (every event addressed to the
// provider up to it has been sent) and sends a heartbeat if no event was
// sent since the last tick.
func (w *watcher) beat(passed uint64) error {
	w.cursor = max(w.cursor, passed)
	if w.sent {
		w.sent = false
		return nil
	}
	return w.fn(spa.StoredEvent{Sequence: w.cursor})
}

// beatIfDue beats at the cursor if a tick is due.
func (w *watcher) beatIfDue() error {
	select {
	case <-w.tick:
		return w.beat(w.cursor)
	default:
		return nil
	}
}

// live sends what the fan-out hands sub, with a heartbeat on every tick,
// until ctx ends, fn fails, or sub is lost (errLost).
func (w *watcher) live(ctx context.Context, sub *subscription) error {
	var spare []spa.StoredEvent
	drain := func() error {
		events, lost := sub.take(spare)
		for _, e := range events {
			if err := w.send(e); err != nil {
				return err
			}
		}
		clear(events)
		spare = events[:0]
		if lost {
			return errLost
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.wake:
			if err := drain(); err != nil {
				return err
			}
		case <-w.tick:
			// Every event of the provider up to passed is in sub's
			// buffer (or sub is lost): the fan-out buffers an event
			// before it counts it passed.
			passed := sub.hub.passed()
			if err := drain(); err != nil {
				return err
			}
			if err := w.beat(passed); err != nil {
				return err
			}
		}
	}
}

// catchUp sends the events addressed to w's provider after its cursor up
// to sequence until: those the index lists, read by sequence; and, when
// the index cannot answer or has not applied until within feedIndexWait,
// the rest by reading the log (scan).
func (f *Feed) catchUp(ctx context.Context, w *watcher, until uint64) error {
	// waitUntil: the last page listed everything the index had; ask
	// again once it has applied until.
	waitUntil := false
	for w.cursor < until {
		if f.index == nil {
			return f.scan(ctx, w, until)
		}
		before, minSeq := w.cursor, w.cursor
		if waitUntil {
			minSeq = until
		}
		seqs, applied, err := f.page(ctx, w.provider, w.cursor, minSeq)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return f.scan(ctx, w, until) // the gate has logged it
		}
		full := len(seqs) == feedPage
		covered := applied // every event up to it is listed
		if full {
			covered = seqs[len(seqs)-1]
		}
		for len(seqs) > 0 && seqs[len(seqs)-1] > until {
			seqs = seqs[:len(seqs)-1] // the fan-out hands those on
		}
		if err := f.sendAt(ctx, w, seqs); err != nil {
			return err
		}
		w.cursor = max(w.cursor, min(covered, until))
		if waitUntil && w.cursor == before {
			// Waited for, the index got no further: read the log.
			return f.scan(ctx, w, until)
		}
		waitUntil = !full
		if err := w.beatIfDue(); err != nil {
			return err
		}
	}
	return nil
}

// page asks the index for a page of provider's feed after after, once it
// has applied minSeq, retrying an index that is busy or unreachable for
// at most feedIndexWait.
func (f *Feed) page(ctx context.Context, provider string, after, minSeq uint64) (seqs []uint64, applied uint64, err error) {
	pctx, cancel := context.WithTimeout(ctx, feedIndexWait)
	defer cancel()
	r := &backoff.Retrier{Gate: f.indexGate, Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}
	err = backoff.Retry(pctx, r, Retryable, func(ctx context.Context) (err error) {
		seqs, applied, err = f.index.ProviderFeed(ctx, provider, after, feedPage, minSeq)
		return err
	})
	return seqs, applied, err
}

// sendAt reads the events at seqs (referral events addressed to w's
// provider, by the index) feedGets at a time, and sends them.
func (f *Feed) sendAt(ctx context.Context, w *watcher, seqs []uint64) error {
	for len(seqs) > 0 {
		n := min(len(seqs), feedGets)
		events, err := f.eventsAt(ctx, seqs[:n])
		if err != nil {
			return err
		}
		for _, e := range events {
			if agg, _, ok := spa.AggregateOfSubject(e.Subject); !ok || agg != spa.AggregateReferral || e.Provider != w.provider {
				return fmt.Errorf("jetstream: the feed index lists sequence %d for %s, but it holds an event on %s for %q", e.Sequence, w.provider, e.Subject, e.Provider)
			}
			if err := w.send(e); err != nil {
				return err
			}
		}
		seqs = seqs[n:]
	}
	return nil
}

// eventsAt returns the stored events at seqs, in that order, reading them
// at once; each read is retried like Load.
func (s *Store) eventsAt(ctx context.Context, seqs []uint64) ([]spa.StoredEvent, error) {
	out := make([]spa.StoredEvent, len(seqs))
	g, gctx := errgroup.WithContext(ctx)
	for i, seq := range seqs {
		g.Go(func() error {
			return s.do(gctx, s.reads, func(ctx context.Context) error {
				msg, err := s.stream.GetMsg(ctx, seq)
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					// Listed by a read model that applied it: a replica
					// behind answered.
					return &retryableError{fmt.Errorf("jetstream: event %d: %w", seq, err)}
				}
				if err != nil {
					return fmt.Errorf("jetstream: event %d: %w", seq, err)
				}
				out[i] = storedEvent(msg.Sequence, msg.Subject, msg.Time, msg.Header, msg.Data)
				return nil
			})
		})
	}
	return out, g.Wait()
}

// scan sends the events addressed to w's provider after its cursor up to
// sequence until by reading every referral event in between: what a
// watch costs where the index cannot help (ADR 9's feed).
func (f *Feed) scan(ctx context.Context, w *watcher, until uint64) error {
	if w.cursor >= until {
		return nil
	}
	opts := FollowOptions{From: w.cursor + 1, Subjects: []string{SubjectOf(spa.AggregateReferral, "*")}, Batch: 256, What: "provider feed scan"}
	if w.tick != nil {
		opts.Tick = w.interval // to look at w.tick while nothing arrives
	}
	err := f.Follow(ctx, opts, func(b Batch) error {
		for _, e := range b.Events {
			if e.Sequence > until {
				return ErrStop
			}
			if e.Provider == w.provider {
				if err := w.send(e); err != nil {
					return err
				}
			}
			w.cursor = max(w.cursor, e.Sequence)
		}
		if err := w.beatIfDue(); err != nil {
			return err
		}
		if b.CaughtUp || w.cursor >= until {
			return ErrStop
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.cursor = max(w.cursor, until)
	return nil
}

// subscribe subscribes to provider's events on the fan-out, starting it
// at the log's end if no watch runs it.
func (f *Feed) subscribe(ctx context.Context, provider string) (*subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hub == nil || f.hub.hasEnded() {
		last, err := f.LastSequence(ctx)
		if err != nil {
			return nil, err
		}
		f.hub = f.startHub(last)
	}
	return f.hub.add(provider, f.buffer), nil
}

// unsubscribe ends sub; the last subscription of a fan-out stops it, and
// waits until its consumer is gone.
func (f *Feed) unsubscribe(sub *subscription) {
	f.mu.Lock()
	h := sub.hub
	idle := h.remove(sub)
	if idle && f.hub == h {
		f.hub = nil
	}
	f.mu.Unlock()
	if idle {
		h.stop()
		<-h.done
	}
}

// hub is the fan-out: one ordered consumer over the referral subjects,
// from the sequence after the one it started at, that hands each event
// to the subscriptions of its provider.
type hub struct {
	stop context.CancelFunc
	done chan struct{}

	mu sync.Mutex
	// last is the last sequence handed on (at first, the log's last when
	// the hub started): the hub hands every later event on.
	last  uint64
	subs  map[string]map[*subscription]struct{}
	n     int
	ended bool
}

// startHub starts a fan-out from the sequence after last; it runs until
// its last subscription ends.
func (f *Feed) startHub(last uint64) *hub {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hub{stop: cancel, done: make(chan struct{}), last: last, subs: map[string]map[*subscription]struct{}{}}
	go func() {
		defer close(h.done)
		opts := FollowOptions{From: last + 1, Subjects: []string{SubjectOf(spa.AggregateReferral, "*")}, What: "provider feed"}
		err := f.Follow(ctx, opts, func(b Batch) error {
			h.hand(b.Events)
			return nil
		})
		h.end()
		if ctx.Err() == nil {
			f.log.Warn("provider feed stopped; its watches catch up and start it again", "err", err)
		}
	}()
	return h
}

// hand hands events to the subscriptions of their providers, then counts
// them passed.
func (h *hub) hand(events []spa.StoredEvent) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range events {
		for sub := range h.subs[e.Provider] {
			sub.push(e)
		}
	}
	h.last = events[len(events)-1].Sequence
}

// passed returns the last sequence the hub has handed on.
func (h *hub) passed() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// add subscribes to provider's events after the last one handed on.
func (h *hub) add(provider string, buffer int) *subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	sub := &subscription{hub: h, provider: provider, from: h.last + 1, max: buffer, wake: make(chan struct{}, 1), lost: h.ended}
	if h.subs[provider] == nil {
		h.subs[provider] = map[*subscription]struct{}{}
	}
	h.subs[provider][sub] = struct{}{}
	h.n++
	return sub
}

// remove ends sub, and reports whether it was the last.
func (h *hub) remove(sub *subscription) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[sub.provider][sub]; !ok {
		return false
	}
	delete(h.subs[sub.provider], sub)
	if len(h.subs[sub.provider]) == 0 {
		delete(h.subs, sub.provider)
	}
	h.n--
	return h.n == 0
}

// end marks the hub stopped: every subscription is lost.
func (h *hub) end() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = true
	for _, subs := range h.subs {
		for sub := range subs {
			sub.lose()
		}
	}
}

func (h *hub) hasEnded() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ended
}

// subscription is one watch's buffer on the fan-out.
type subscription struct {
	hub      *hub
	provider string
	// from is the first sequence the hub hands on to it.
	from uint64
	max  int
	wake chan struct{} // signalled after each push

	mu    sync.Mutex
	queue []spa.StoredEvent
	// lost: an event could not be buffered (or the hub stopped); the
	// queue holds what came before it.
	lost bool
}

// push buffers e, or marks the subscription lost if its buffer is full.
// It never blocks.
func (s *subscription) push(e spa.StoredEvent) {
	s.mu.Lock()
	switch {
	case s.lost:
	case len(s.queue) >= s.max:
		s.lost = true
	default:
		s.queue = append(s.queue, e)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *subscription) lose() {
	s.mu.Lock()
	s.lost = true
	s.mu.Unlock()
	s.signal()
}

func (s *subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the buffered events, oldest first, and whether the
// subscription is lost; spare becomes the new buffer.
func (s *subscription) take(spare []spa.StoredEvent) ([]spa.StoredEvent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = spare[:0]
	return q, s.lost
}
