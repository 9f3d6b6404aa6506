package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"spa/internal/app"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/spa"
)

// busy is a provider with a long history on a JetStream store.
type busy struct {
	nc    *nats.Conn
	store *jetstream.Store
	app   *app.App
	ods   string
	start time.Time
	// counts are the UpdateCapacity commands it ran, in order.
	counts []countCommand
	last   uint64
}

type countCommand struct {
	meta app.Meta
	c    spa.UpdateCapacity
	seq  uint64
}

// newBusy registers provider ods and gives it n events: every tenth a
// count of vacancies made through the App with a request id, the others
// reservations, takings up and releases as the router appends them, the
// occupied units left out by the next count. Clock time advances a minute
// per event.
func newBusy(tb testing.TB, ods string, n int) *busy {
	tb.Helper()
	nc := jetstreamtest.Connect(tb, jetstreamtest.Start(tb))
	store := jetstreamtest.Store(tb, nc, jetstream.Setup{})
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	p := &busy{nc: nc, store: store, ods: ods, start: start}
	p.app = app.New(store, nil, app.WithClock(func() time.Time { return start.Add(time.Duration(n+60) * time.Minute) }))
	ctx := context.Background()
	seq, _, err := p.app.RegisterProvider(ctx, app.Meta{Request: spa.Request{ID: "register-" + ods, Hash: []byte("r")}},
		spa.RegisterProvider{Details: spa.ProviderDetails{ODS: ods, Name: "Elmwood", Boroughs: []string{"Bromley"}, Services: []spa.Service{spa.ServiceCareHomeBed}}})
	if err != nil {
		tb.Fatal(err)
	}
	p.last = seq
	for i := 1; i < n; i++ {
		at := start.Add(time.Duration(i) * time.Minute)
		if i%10 == 0 {
			p.count(tb, int32(2+i%7), at)
			continue
		}
		as := fmt.Sprintf("%s-a%d-", ods, i/10)
		var e spa.Event
		switch i % 10 {
		case 1, 3, 5, 6:
			e = spa.CapacityReserved{Service: spa.ServiceCareHomeBed, AssignmentID: as + fmt.Sprint(i%10), Tracked: true}
		case 2:
			e = spa.CapacityOccupied{Service: spa.ServiceCareHomeBed, AssignmentID: as + "1"}
		case 4:
			e = spa.CapacityReleased{Service: spa.ServiceCareHomeBed, AssignmentID: as + "3"}
		case 7:
			e = spa.CapacityReleased{Service: spa.ServiceCareHomeBed, AssignmentID: as + "5"}
		case 8:
			e = spa.CapacityOccupied{Service: spa.ServiceCareHomeBed, AssignmentID: as + "6"}
		case 9:
			e = spa.CapacityReleased{Service: spa.ServiceCareHomeBed, AssignmentID: as + "6"}
		}
		p.append(tb, e, at)
	}
	return p
}

// count declares units as of at through the App, with a request id.
func (p *busy) count(tb testing.TB, units int32, at time.Time) {
	tb.Helper()
	i := len(p.counts)
	meta := app.Meta{Request: spa.Request{ID: fmt.Sprintf("count-%s.%d", p.ods, i), Hash: []byte(fmt.Sprint(i))}}
	c := spa.UpdateCapacity{ProviderODS: p.ods, Capacity: []spa.Capacity{{Service: spa.ServiceCareHomeBed, Available: units, Open: true, AsOf: at}}}
	seq, unchanged, err := p.app.UpdateCapacity(context.Background(), meta, c)
	if err != nil || unchanged {
		tb.Fatalf("count %d: %d, unchanged %t, %v", i, seq, unchanged, err)
	}
	p.counts = append(p.counts, countCommand{meta: meta, c: c, seq: seq})
	p.last = seq
}

// append appends a router's event on the provider's subject.
func (p *busy) append(tb testing.TB, e spa.Event, at time.Time) {
	tb.Helper()
	rec := spa.Record{EventID: fmt.Sprintf("evt-%s-%d", p.ods, p.last), AggregateID: p.ods, OccurredAt: at, RecordedAt: at, Event: e}
	seq, err := p.store.Append(context.Background(), rec, p.last)
	if err != nil {
		tb.Fatal(err)
	}
	p.last = seq
}

// history is the provider's history as a command reads it, and the state
// it folds to.
func (p *busy) history(tb testing.TB) (spa.History, spa.Provider) {
	tb.Helper()
	h, s, err := p.read()
	if err != nil {
		tb.Fatal(err)
	}
	return h, s
}

func (p *busy) read() (spa.History, spa.Provider, error) {
	var s spa.Provider
	h, err := p.store.History(context.Background(), spa.AggregateProvider, p.ods, spa.ProviderStateVersion, "", func(b []byte) error { return json.Unmarshal(b, new(spa.Provider)) })
	if err != nil {
		return h, s, err
	}
	if h.Snapshot != nil {
		if err := json.Unmarshal(h.Snapshot.State, &s); err != nil {
			return h, s, err
		}
	}
	for _, rec := range h.Records {
		s.Apply(rec)
	}
	return h, s, nil
}

// replayed is the provider's state folded from every one of its events.
func (p *busy) replayed(tb testing.TB) spa.Provider {
	tb.Helper()
	recs, _, err := p.store.Load(context.Background(), spa.AggregateProvider, p.ods)
	if err != nil {
		tb.Fatal(err)
	}
	var s spa.Provider
	for _, rec := range recs {
		s.Apply(rec)
	}
	return s
}

// TestUpdateCapacityOnALongHistory: a provider with 5,000 events is read
// from a snapshot and the few events after it, and UpdateCapacity decides
// on the state a replay of every event gives; a retry is answered as the
// first time, however old, and the id with another request is refused.
func TestUpdateCapacityOnALongHistory(t *testing.T) {
	t.Parallel()
	p := newBusy(t, "VLAXL", 5000)
	ctx := context.Background()

	h, got := p.history(t)
	if h.Snapshot == nil || len(h.Records) > 64 || h.Last != p.last {
		t.Fatalf("history: snapshot %v, %d records after it, last %d (want %d)", h.Snapshot != nil, len(h.Records), h.Last, p.last)
	}
	want := p.replayed(t)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("state (-replayed +from the snapshot):\n%s", diff)
	}

	// The counts as recorded, again, without a request id: unchanged, at
	// the provider's version.
	cur, _ := want.CapacityFor(spa.ServiceCareHomeBed)
	same := spa.UpdateCapacity{ProviderODS: "VLAXL", Capacity: []spa.Capacity{{Service: spa.ServiceCareHomeBed, Available: cur.Declared, Open: cur.Open, AsOf: cur.AsOf}}}
	if v, unchanged, err := p.app.UpdateCapacity(ctx, app.Meta{}, same); err != nil || !unchanged || v != p.last {
		t.Fatalf("the same counts: %d, unchanged %t, %v; want %d, unchanged", v, unchanged, err, p.last)
	}
	// An older count is refused: the snapshot knows the last as-of.
	older := same
	older.Capacity = []spa.Capacity{{Service: spa.ServiceCareHomeBed, Available: 9, Open: true, AsOf: cur.AsOf.Add(-time.Minute)}}
	if _, _, err := p.app.UpdateCapacity(ctx, app.Meta{}, older); spa.KindOf(err) != spa.KindFailedPrecondition {
		t.Fatalf("an older count: %v, want failed precondition", err)
	}
	p.count(t, 11, cur.AsOf.Add(time.Minute))
	if after := p.replayed(t); after.Capacity[0].Declared != 11 || after.Version != p.last {
		t.Fatalf("after a new count: %+v", after.Capacity)
	}

	retries := []struct {
		name string
		cmd  countCommand
	}{
		{"the last", p.counts[len(p.counts)-1]},
		{"one well before the snapshot", p.counts[3]},
		{"the first", p.counts[0]},
	}
	for _, r := range retries {
		t.Run("retry of "+r.name, func(t *testing.T) {
			seq, unchanged, err := p.app.UpdateCapacity(ctx, r.cmd.meta, r.cmd.c)
			if err != nil || unchanged || seq != r.cmd.seq {
				t.Fatalf("retry: %d, unchanged %t, %v; want %d as the first time", seq, unchanged, err, r.cmd.seq)
			}
			other := r.cmd.meta
			other.Request.Hash = []byte("another request")
			if _, _, err := p.app.UpdateCapacity(ctx, other, r.cmd.c); spa.KindOf(err) != spa.KindAlreadyExists {
				t.Fatalf("the id with another request: %v, want already exists", err)
			}
		})
	}
	if h, _ := p.history(t); h.Last != p.last {
		t.Fatalf("the retries appended: last %d, want %d", h.Last, p.last)
	}
}

// TestLastUnitPromisedOnce: on a provider with a long history, two
// reservations of its last unit decided at once on the state a command
// reads (a snapshot and the events after it), each appended under the
// sequence it read, as the router appends them: exactly one is appended,
// and the other, decided again, finds no unit free.
func TestLastUnitPromisedOnce(t *testing.T) {
	t.Parallel()
	p := newBusy(t, "VLAXL", 500)
	ctx := context.Background()
	h, s := p.history(t)
	if h.Snapshot == nil {
		t.Fatal("no snapshot after 500 events")
	}
	// Leave one unit: a count of one more than is reserved, then as many
	// reservations as are left less one.
	c, _ := s.CapacityFor(spa.ServiceCareHomeBed)
	p.count(t, c.Reserved+1, c.AsOf.Add(time.Minute))
	_, s = p.history(t)
	c, _ = s.CapacityFor(spa.ServiceCareHomeBed)
	for i := range c.Available - 1 {
		p.append(t, spa.CapacityReserved{Service: spa.ServiceCareHomeBed, AssignmentID: fmt.Sprintf("held-%d", i), Tracked: true}, p.start)
	}
	if _, s = p.history(t); s.Capacity[0].Available != 1 {
		t.Fatalf("set up: %+v, want one unit available", s.Capacity[0])
	}

	var ready, wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]error, 2)
	for i := range results {
		ready.Add(1)
		wg.Go(func() {
			h, s, err := p.read()
			ready.Done()
			<-start
			if err != nil {
				results[i] = err
				return
			}
			if c, _ := s.CapacityFor(spa.ServiceCareHomeBed); c.Available < 1 {
				results[i] = fmt.Errorf("no unit free")
				return
			}
			rec := spa.Record{EventID: fmt.Sprintf("race-%d", i), AggregateID: "VLAXL", OccurredAt: p.start, RecordedAt: p.start,
				Event: spa.CapacityReserved{Service: spa.ServiceCareHomeBed, AssignmentID: fmt.Sprintf("race-%d", i), Tracked: true}}
			_, results[i] = p.store.AppendBatch(ctx, []spa.Append{{Record: rec, Expected: h.Last, Guard: true}})
		})
	}
	ready.Wait()
	close(start)
	wg.Wait()
	won := 0
	for i, err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, spa.ErrConcurrentChange):
			t.Errorf("reservation %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d reservations appended (%v), want exactly one", won, results)
	}
	_, s = p.history(t)
	if c, _ := s.CapacityFor(spa.ServiceCareHomeBed); c.Available != 0 || c.Reserved != c.Declared {
		t.Fatalf("after the race: %+v, want no unit available", c)
	}
	if diff := cmp.Diff(p.replayed(t), s); diff != "" {
		t.Fatalf("state (-replayed +from the snapshot):\n%s", diff)
	}
}

// BenchmarkUpdateCapacity declares a provider's vacancies (a new count
// each time, so each appends) on a provider with 10 and with 10,000
// events before it: the cost must not grow with the history. Besides the
// time, it reports the messages the App's connection sends (requests and
// appends: round trips) and the bytes it receives per declaration.
func BenchmarkUpdateCapacity(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			p := newBusy(b, "VLAXL", n)
			at := p.start.Add(time.Duration(n) * time.Minute)
			before := p.nc.Stats()
			b.ResetTimer()
			for i := range b.N {
				p.count(b, int32(1+i%5), at.Add(time.Duration(i)*time.Millisecond))
			}
			b.StopTimer()
			after := p.nc.Stats()
			b.ReportMetric(float64(after.OutMsgs-before.OutMsgs)/float64(b.N), "sent/op")
			b.ReportMetric(float64(after.InBytes-before.InBytes)/float64(b.N), "Brecv/op")
		})
	}
}
