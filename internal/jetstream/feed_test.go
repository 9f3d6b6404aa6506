package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"spa/internal/bolt"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/projection"
	"spa/internal/query"
	"spa/internal/queryserver"
	"spa/internal/spa"
)

// feedLog is an event log with a read model projected from it and
// serving queries: the provider feed's index.
type feedLog struct {
	store *jetstream.Store
	index *query.Client
	nc    *nats.Conn
	url   string

	mu   sync.Mutex
	n    int               // events appended
	last map[string]uint64 // each provider subject's last sequence
}

func startFeedLog(t testing.TB) *feedLog {
	t.Helper()
	srv := jetstreamtest.Start(t)
	nc := jetstreamtest.Connect(t, srv)
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	model, err := bolt.Open(filepath.Join(t.TempDir(), "model.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		projection.New(store, model, nil, slog.New(slog.DiscardHandler)).Run(ctx)
	}()
	stop, err := queryserver.ServeQueries(nc, model, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		cancel()
		<-done
		model.Close()
	})
	return &feedLog{store: store, index: query.NewClient(nc), nc: nc, url: srv.ClientURL(), last: map[string]uint64{}}
}

// appendEvent appends one event: an offer to provider on a new referral,
// a referral event addressed to nobody (provider ""), or, with onProvider,
// an event on provider's own subject (which the feed never delivers).
func (l *feedLog) appendEvent(t testing.TB, provider string, onProvider bool) uint64 {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	id := spa.ReferralIDFor(fmt.Sprintf("feed-%d", l.n))
	var rec spa.Record
	var expected uint64
	switch {
	case onProvider:
		rec = record(provider, spa.CapacityReserved{Service: spa.ServiceHomeCareReablement, ReferralID: id, AssignmentID: fmt.Sprintf("a%d", l.n)})
		rec.EventID += fmt.Sprint(l.n)
		expected = l.last[provider]
	case provider == "":
		rec = record(id, spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonDied})
	default:
		rec = record(id, spa.OfferMade{AssignmentID: fmt.Sprintf("a%d", l.n), ProviderODS: provider, Service: spa.ServiceHomeCareReablement})
	}
	seq, err := l.store.Append(context.Background(), rec, expected)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if onProvider {
		l.last[provider] = seq
	}
	return seq
}

// addressed returns, per provider, the sequences of the referral events
// addressed to it: what its watch must deliver.
func (l *feedLog) addressed(t testing.TB) map[string][]uint64 {
	t.Helper()
	out := map[string][]uint64{}
	err := l.store.Replay(context.Background(), spa.EventFilter{}, func(e spa.StoredEvent) error {
		if agg, _, _ := spa.AggregateOfSubject(e.Subject); agg == spa.AggregateReferral && e.Provider != "" {
			out[e.Provider] = append(out[e.Provider], e.Sequence)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// session is what one watch received: its events' sequences, and the
// cursor it ended at (the last event's or heartbeat's).
type session struct {
	provider      string
	after, cursor uint64
	got           []uint64
}

var errEnough = errors.New("enough")

// watchSession watches from after until stop says so (given the session so
// far), checking that the cursor never goes back and that events come in
// order.
func watchSession(ctx context.Context, f *jetstream.Feed, provider string, after uint64, interval time.Duration,
	slow func(), stop func(s *session) bool) (*session, error) {
	s := &session{provider: provider, after: after, cursor: after}
	err := f.Watch(ctx, provider, after, interval, func(e spa.StoredEvent) error {
		if e.Sequence < s.cursor || e.Data != nil && e.Sequence == s.cursor {
			return fmt.Errorf("%s: cursor %d after %d", provider, e.Sequence, s.cursor)
		}
		if e.Data != nil {
			if e.Provider != provider {
				return fmt.Errorf("%s received an event for %q", provider, e.Provider)
			}
			s.got = append(s.got, e.Sequence)
			if slow != nil {
				slow()
			}
		}
		s.cursor = e.Sequence
		if stop(s) {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return s, err
}

// check compares what a session received with the events the log has for
// its provider between its start and its last cursor.
func (s *session) check(addressed map[string][]uint64) error {
	var want []uint64
	for _, seq := range addressed[s.provider] {
		if seq > s.after && seq <= s.cursor {
			want = append(want, seq)
		}
	}
	if !slices.Equal(s.got, want) {
		return fmt.Errorf("%s from %d to %d: received %v, the log has %v", s.provider, s.after, s.cursor, s.got, want)
	}
	return nil
}

// brokenIndex is an index that fails (not a failure that passes): every
// watch reads the log instead.
type brokenIndex struct{}

func (brokenIndex) ProviderFeed(context.Context, string, uint64, int, uint64) ([]uint64, uint64, error) {
	return nil, 0, errors.New("index broken")
}

// laggingIndex is an index that has applied no more than lag events
// beyond after, and never waits: a read model behind the fan-out.
type laggingIndex struct {
	jetstream.FeedIndex
	lag uint64
}

func (l laggingIndex) ProviderFeed(ctx context.Context, provider string, after uint64, limit int, _ uint64) ([]uint64, uint64, error) {
	seqs, applied, err := l.FeedIndex.ProviderFeed(ctx, provider, after, limit, after)
	if err != nil || applied <= after+l.lag {
		return seqs, applied, err
	}
	applied = after + l.lag
	for len(seqs) > 0 && seqs[len(seqs)-1] > applied {
		seqs = seqs[:len(seqs)-1]
	}
	return seqs, applied, nil
}

// haltedIndex is an index that stopped at sequence at and answers at
// once whatever it is asked to wait for: a read model whose projection
// halted.
type haltedIndex struct {
	jetstream.FeedIndex
	at uint64
}

func (h haltedIndex) ProviderFeed(ctx context.Context, provider string, after uint64, limit int, _ uint64) ([]uint64, uint64, error) {
	if after >= h.at {
		return nil, h.at, nil
	}
	return laggingIndex{FeedIndex: h.FeedIndex, lag: h.at - after}.ProviderFeed(ctx, provider, after, limit, 0)
}

// TestFeedExact appends events for five providers (offers, events
// addressed to nobody, events on the providers' own subjects) while
// watchers resume again and again from random cursors, some of them slow
// enough to overflow their buffer of 2, through five feeds: the read
// model's index, an index that lags behind the log, one that stopped
// part-way, none that works, and none at all. Every session must receive exactly the events the log
// addresses to its provider between its cursor and where it ended, in
// order, none twice; and a cursor beyond the log is OUT_OF_RANGE.
func TestFeedExact(t *testing.T) {
	t.Parallel()
	l := startFeedLog(t)
	providers := []string{"NQR01", "NQR02", "STP01", "VLAXL", "HOS01"}
	feeds := map[string]*jetstream.Feed{
		"index":   jetstream.NewFeed(l.store, l.index, 2),
		"lagging": jetstream.NewFeed(l.store, laggingIndex{FeedIndex: l.index, lag: 7}, 2),
		"broken":  jetstream.NewFeed(l.store, brokenIndex{}, 2),
		"none":    jetstream.NewFeed(l.store, nil, 2),
	}
	appendSome := func(rng *rand.Rand, n int) {
		for range n {
			p := providers[rng.IntN(len(providers))]
			switch rng.IntN(5) {
			case 0:
				l.appendEvent(t, "", false)
			case 1:
				l.appendEvent(t, p, true)
			default:
				l.appendEvent(t, p, false)
			}
		}
	}
	appendSome(rand.New(rand.NewPCG(1, 1)), 150)
	feeds["halted"] = jetstream.NewFeed(l.store, haltedIndex{FeedIndex: l.index, at: 100}, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	appending := make(chan struct{})
	var final uint64 // the last event, addressed to nobody
	go func() {
		defer close(appending)
		rng := rand.New(rand.NewPCG(2, 2))
		for range 30 {
			appendSome(rng, 10)
			time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
		}
		final = l.appendEvent(t, "", false)
	}()
	done := func() bool {
		select {
		case <-appending:
			return true
		default:
			return false
		}
	}

	var mu sync.Mutex
	var sessions []*session
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	i := 0
	for name, f := range feeds {
		for k := range 4 {
			i++
			seed := uint64(i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, 3))
				provider := providers[rng.IntN(len(providers))]
				var slow func()
				if k == 0 {
					// Slow: falls behind the fan-out and catches up.
					slow = func() { time.Sleep(20 * time.Millisecond) }
				}
				for {
					last, err := l.store.LastSequence(ctx)
					if err != nil {
						errs <- err
						return
					}
					after := uint64(rng.Int64N(int64(last) + 1))
					ended := done()
					want := 1 + rng.IntN(25)
					s, err := watchSession(ctx, f, provider, after, 5*time.Millisecond, slow, func(s *session) bool {
						if ended {
							return s.cursor >= final
						}
						return len(s.got) >= want || done()
					})
					if err != nil {
						errs <- fmt.Errorf("%s feed: %w", name, err)
						return
					}
					mu.Lock()
					sessions = append(sessions, s)
					mu.Unlock()
					if ended {
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	addressed := l.addressed(t)
	events := 0
	for _, s := range sessions {
		if err := s.check(addressed); err != nil {
			t.Error(err)
		}
		events += len(s.got)
	}
	t.Logf("%d sessions received %d events, log of %d", len(sessions), events, final)

	for name, f := range feeds {
		err := f.Watch(ctx, "NQR01", final+1000, time.Second, func(spa.StoredEvent) error { return nil })
		if spa.KindOf(err) != spa.KindOutOfRange {
			t.Errorf("%s feed: a cursor beyond the log: %v", name, err)
		}
	}
}

// TestFeedPages: a provider with more events than one index page holds
// gets them all, in order, from any cursor, while others' events come
// between.
func TestFeedPages(t *testing.T) {
	t.Parallel()
	l := startFeedLog(t)
	var want []uint64
	for i := range 700 {
		if i%3 == 0 {
			l.appendEvent(t, "STP01", false)
		}
		want = append(want, l.appendEvent(t, "NQR01", false))
	}
	f := jetstream.NewFeed(l.store, l.index, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, after := range []uint64{0, want[10], want[300] - 1} {
		from := slices.IndexFunc(want, func(seq uint64) bool { return seq > after })
		s, err := watchSession(ctx, f, "NQR01", after, time.Second, nil, func(s *session) bool { return len(s.got) == len(want)-from })
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.got, want[from:]) {
			t.Fatalf("from %d: received %d events %v..., want %d %v...", after, len(s.got), s.got[:min(5, len(s.got))], len(want)-from, want[from:from+5])
		}
	}
	// The index refuses what the feed never asks.
	for _, q := range []struct {
		provider string
		limit    int
	}{{"not ods", 10}, {"NQR01", 0}, {"NQR01", query.MaxFeedPage + 1}} {
		if _, _, err := l.index.ProviderFeed(ctx, q.provider, 0, q.limit, 0); spa.KindOf(err) != spa.KindInvalid {
			t.Errorf("feed query %+v: %v, want invalid", q, err)
		}
	}
}

// BenchmarkFeedCatchUp measures a watch that resumes from cursor 0 and
// catches up on 100 events addressed to its provider, with 1 or 100
// events of other providers after each of them: through the read model's
// index, and by reading the log (as every watch did before ADR 35), on a
// feed that another watch keeps running. It reports the time and the
// NATS messages the watch's connection received per event delivered.
func BenchmarkFeedCatchUp(b *testing.B) {
	const mine = 100
	for _, others := range []int{1, 100} {
		l := startFeedLog(b)
		var last uint64
		for i := range mine {
			l.appendEvent(b, "NQR01", false)
			for k := range others {
				last = l.appendEvent(b, fmt.Sprintf("P%03d", (i+k)%100), false)
			}
		}
		for {
			st, err := l.index.Status(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if st.Applied >= last {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The watch's own connection, to count what it receives.
		nc, err := nats.Connect(l.url)
		if err != nil {
			b.Fatal(err)
		}
		store, err := jetstream.Open(context.Background(), nc, jetstream.Requirements{})
		if err != nil {
			b.Fatal(err)
		}
		for _, path := range []struct {
			name  string
			index jetstream.FeedIndex
		}{{"index", query.NewClient(nc)}, {"scan", nil}} {
			b.Run(fmt.Sprintf("%s/others=%d", path.name, others), func(b *testing.B) {
				f := jetstream.NewFeed(store, path.index, 0)
				// Another watch keeps the fan-out running, as on a server
				// with watchers.
				ctx, cancel := context.WithCancel(context.Background())
				idle := make(chan error, 1)
				go func() { idle <- f.Watch(ctx, "IDLE1", 0, time.Minute, func(spa.StoredEvent) error { return nil }) }()
				defer func() {
					cancel()
					<-idle
				}()
				before := nc.Stats().InMsgs
				b.ResetTimer()
				for range b.N {
					s, err := watchSession(context.Background(), f, "NQR01", 0, time.Minute, nil, func(s *session) bool { return len(s.got) == mine })
					if err != nil || len(s.got) != mine {
						b.Fatalf("%v, %d events", err, len(s.got))
					}
				}
				b.StopTimer()
				delivered := float64(b.N * mine)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/delivered, "ns/event")
				b.ReportMetric(float64(nc.Stats().InMsgs-before)/delivered, "msgs/event")
			})
		}
		nc.Close()
	}
}
