package fault

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	ijs "spa/internal/jetstream"
	"spa/internal/query"
	"spa/internal/referraltest"
	"spa/internal/spa"
)

// retryable reports whether a call's failure passes with time: the server
// is restarting, or what it depends on is failing over.
func retryable(err error) bool {
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.DeadlineExceeded
}

// attemptTimeout bounds one attempt of a call.
const attemptTimeout = 30 * time.Second

// failedAttempt is an attempt answered with a retryable code.
type failedAttempt struct {
	code codes.Code
	took time.Duration
}

func (f failedAttempt) String() string {
	return fmt.Sprintf("%s after %s", f.code, f.took.Round(time.Millisecond))
}

// retry calls f, each attempt with its own deadline, until it succeeds,
// fails for good, or ctx ends; it returns the failed attempts and the
// last error.
func retry(ctx context.Context, f func(ctx context.Context) error) ([]failedAttempt, error) {
	var failed []failedAttempt
	delay := 50 * time.Millisecond
	for {
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := f(actx)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return failed, err
		}
		failed = append(failed, failedAttempt{status.Code(err), time.Since(start)})
		sleep(ctx, delay)
		delay = min(2*delay, time.Second)
	}
}

// load submits referrals at a steady rate from several callers, each
// retrying UNAVAILABLE and lost connections with the same request id
// until acknowledged or the load's time is up. It is bounded in count
// (max) and in time (within, retries included).
type load struct {
	t       testing.TB
	prefix  string // of request ids
	client  spav1.ReferralServiceClient
	callers int
	rate    float64 // submissions started per second
	max     int
	within  time.Duration

	begun time.Time
	stop  chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	reqs     map[int]*spav1.SubmitReferralRequest // every one sent
	acks     map[int]ack
	failures []string // answers that are neither success nor retryable
	retried  map[codes.Code]int
}

// ack is an acknowledged submission.
type ack struct {
	i          int
	referralID string
	seq        uint64
	sent, at   time.Time       // first attempt; acknowledgement
	failed     []failedAttempt // the attempts before
}

// startLoad starts a load; end stops it.
func startLoad(t testing.TB, client spav1.ReferralServiceClient, prefix string, callers int, rate float64, max int, within time.Duration) *load {
	l := &load{t: t, prefix: prefix, client: client, callers: callers, rate: rate, max: max, within: within,
		begun: time.Now(), stop: make(chan struct{}), done: make(chan struct{}),
		reqs: map[int]*spav1.SubmitReferralRequest{}, acks: map[int]ack{}, retried: map[codes.Code]int{}}
	ctx, cancel := context.WithDeadline(context.Background(), l.begun.Add(within))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				l.submit(ctx, i)
			}
		}()
	}
	go func() {
		defer close(l.done)
		defer cancel()
		defer wg.Wait()
		defer close(jobs)
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		for i := range max {
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case jobs <- i:
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { l.end() })
	return l
}

func (l *load) requestID(i int) string { return fmt.Sprintf("fault-%s-%05d", l.prefix, i) }

func (l *load) submit(ctx context.Context, i int) {
	req := &spav1.SubmitReferralRequest{RequestId: l.requestID(i), Referral: referraltest.Details(i)}
	l.mu.Lock()
	l.reqs[i] = req
	l.mu.Unlock()
	sent := time.Now()
	var res *spav1.SubmitReferralResponse
	failed, err := retry(ctx, func(ctx context.Context) (err error) {
		res, err = l.client.SubmitReferral(ctx, req)
		return err
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range failed {
		l.retried[f.code]++
	}
	switch {
	case err == nil:
		l.acks[i] = ack{i: i, referralID: res.GetReferralId(), seq: res.GetSequence(), sent: sent, at: time.Now(), failed: failed}
	case ctx.Err() != nil && retryable(err):
		// Not acknowledged within the load's time: it may or may not be
		// in the log, and is not counted.
	default:
		l.failures = append(l.failures, fmt.Sprintf("submit %s: %v", req.GetRequestId(), err))
	}
}

// end stops starting submissions, lets those in flight finish (within
// the load's time) and returns once every caller has stopped.
func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// finished reports whether the load has ended by itself (count or time).
func (l *load) finished() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// acked returns how many submissions are acknowledged so far.
func (l *load) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// firstSentAfter returns the first acknowledgement of a submission sent
// after at, if there is one yet.
func (l *load) firstSentAfter(at time.Time) (ack, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first ack
	for _, a := range l.acks {
		if a.sent.After(at) && (first.at.IsZero() || a.at.Before(first.at)) {
			first = a
		}
	}
	return first, !first.at.IsZero()
}

// results returns the acknowledged submissions, by acknowledgement time.
func (l *load) results() []ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]ack, 0, len(l.acks))
	for _, a := range l.acks {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b ack) int { return a.at.Compare(b.at) })
	return out
}

// check fails the test for any answer that was neither an
// acknowledgement nor a retryable failure, and logs the load's figures.
func (l *load) check() []ack {
	l.t.Helper()
	l.mu.Lock()
	sent, failures, retried := len(l.reqs), l.failures, maps.Clone(l.retried)
	l.mu.Unlock()
	for _, f := range failures {
		l.t.Errorf("non-retryable answer: %s", f)
	}
	acks := l.results()
	l.t.Logf("load: %d submissions sent in %s by %d callers at %.0f/s, %d acknowledged, %d not acknowledged in time, %d failed; attempts answered and retried: %v",
		sent, time.Since(l.begun).Round(time.Millisecond), l.callers, l.rate, len(acks), sent-len(acks)-len(failures), len(failures), retried)
	slow := slices.Clone(acks)
	slices.SortFunc(slow, func(a, b ack) int { return cmp.Compare(b.at.Sub(b.sent), a.at.Sub(a.sent)) })
	for _, a := range slow[:min(3, len(slow))] {
		l.t.Logf("load: slowest acknowledgements: %s took %s (sent %s into the load), sequence %d, failed attempts before: %v",
			l.requestID(a.i), a.at.Sub(a.sent).Round(time.Millisecond), a.sent.Sub(l.begun).Round(time.Millisecond), a.seq, a.failed)
	}
	return acks
}

// maxSeq returns the highest acknowledged sequence.
func maxSeq(acks []ack) uint64 {
	var m uint64
	for _, a := range acks {
		m = max(m, a.seq)
	}
	return m
}

// longestGap returns the longest time between two acknowledgements from
// begun on, and when it started.
func longestGap(acks []ack, begun time.Time) (time.Duration, time.Time) {
	var gap time.Duration
	var at time.Time
	prev := begun
	for _, a := range acks {
		if d := a.at.Sub(prev); d > gap {
			gap, at = d, prev
		}
		prev = a.at
	}
	return gap, at
}

// checkBoard pages through the board once the read model has applied
// minSeq and checks that every acknowledged referral is on it exactly
// once, and that nothing is there that was never sent. It returns the
// referrals on the board, missing and duplicated.
func checkBoard(t testing.TB, client spav1.ReferralServiceClient, l *load, acks []ack) (onBoard, missing, duplicates int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settleWithin)
	defer cancel()
	seen := map[string]int{}
	req := &spav1.ListReferralsRequest{PageSize: 500, MinSequence: maxSeq(acks)}
	for {
		var page *spav1.ListReferralsResponse
		_, err := retry(ctx, func(ctx context.Context) (err error) {
			page, err = client.ListReferrals(ctx, req)
			return err
		})
		if err != nil {
			t.Fatalf("list referrals: %v", err)
		}
		for _, r := range page.GetReferrals() {
			seen[r.GetReferralId()]++
		}
		if page.GetNextPageToken() == "" {
			break
		}
		req.PageToken = page.GetNextPageToken()
	}
	sent := map[string]bool{}
	l.mu.Lock()
	for _, r := range l.reqs {
		sent[spa.ReferralIDFor(r.GetRequestId())] = true
	}
	l.mu.Unlock()
	for _, a := range acks {
		if seen[a.referralID] == 0 {
			missing++
			t.Errorf("acknowledged referral %s (sequence %d) is not on the board", a.referralID, a.seq)
		}
	}
	for id, n := range seen {
		if n > 1 {
			duplicates++
			t.Errorf("referral %s is on the board %d times", id, n)
		}
		if !sent[id] {
			t.Errorf("referral %s is on the board but was never submitted", id)
		}
	}
	return len(seen), missing, duplicates
}

// checkLog reads every ReferralSubmitted event back through the audit
// API and checks that each acknowledged referral was submitted exactly
// once, at its acknowledged sequence. It returns the events read, the
// acknowledged referrals absent from the log, and those in it more than
// once.
func checkLog(t testing.TB, audit spav1.AuditServiceClient, acks []ack) (events, lost, duplicates int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settleWithin)
	defer cancel()
	var at map[string][]uint64
	_, err := retry(ctx, func(ctx context.Context) error {
		at = map[string][]uint64{}
		stream, err := audit.ReplayEvents(ctx, &spav1.ReplayEventsRequest{EventTypes: []string{"ReferralSubmitted"}})
		if err != nil {
			return err
		}
		for {
			res, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			id := strings.TrimPrefix(res.GetEvent().GetSubject(), "spa.referral.")
			at[id] = append(at[id], res.GetEvent().GetSequence())
		}
	})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	for _, seqs := range at {
		events += len(seqs)
	}
	for _, a := range acks {
		seqs := at[a.referralID]
		switch {
		case len(seqs) == 0:
			lost++
			t.Errorf("acknowledged referral %s (sequence %d) is not in the log", a.referralID, a.seq)
		case len(seqs) > 1:
			duplicates++
			t.Errorf("referral %s was submitted %d times, at %v", a.referralID, len(seqs), seqs)
		case seqs[0] != a.seq:
			t.Errorf("referral %s: acknowledged at sequence %d, stored at %d", a.referralID, a.seq, seqs[0])
		}
	}
	return events, lost, duplicates
}

// resubmit sends every acknowledged request again, from several callers:
// each must be answered as a replay of the first, with its referral and
// sequence. It returns how many were.
func resubmit(t testing.TB, client spav1.ReferralServiceClient, l *load, acks []ack) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settleWithin)
	defer cancel()
	jobs := make(chan ack)
	var wg sync.WaitGroup
	var mu sync.Mutex
	replayed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range jobs {
				l.mu.Lock()
				req := l.reqs[a.i]
				l.mu.Unlock()
				var res *spav1.SubmitReferralResponse
				_, err := retry(ctx, func(ctx context.Context) (err error) {
					res, err = client.SubmitReferral(ctx, req)
					return err
				})
				switch {
				case err != nil:
					t.Errorf("resubmit %s: %v", req.GetRequestId(), err)
				case !res.GetReplayed() || res.GetReferralId() != a.referralID || res.GetSequence() != a.seq:
					t.Errorf("resubmit %s = %v; first answer: referral %s at sequence %d", req.GetRequestId(), res, a.referralID, a.seq)
				default:
					mu.Lock()
					replayed++
					mu.Unlock()
				}
			}
		}()
	}
	for _, a := range acks {
		jobs <- a
	}
	close(jobs)
	wg.Wait()
	return replayed
}

// events is a view of SPA_EVENTS and the routers' consumer over NATS.
type events struct {
	js natsjs.JetStream
}

func newEvents(t testing.TB, nc *nats.Conn) *events {
	t.Helper()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &events{js: js}
}

// info returns the event stream's info.
func (e *events) info() (*natsjs.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, ijs.StreamName)
	if err != nil {
		return nil, err
	}
	return s.CachedInfo(), nil
}

// routersIdle reports whether the routers' consumer has nothing pending
// and nothing awaiting an acknowledgement (or a redelivery).
func (e *events) routersIdle() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, ijs.StreamName, ijs.RouterConsumer)
	if err != nil {
		return false
	}
	info := c.CachedInfo()
	return info.NumPending == 0 && info.NumAckPending == 0
}

// settle waits until the log has stopped growing: the routers have
// nothing left to do and every read model (applied returns their applied
// sequences) has applied the last event, for half a second in a row. It
// returns the last sequence and how long it waited.
func (e *events) settle(t testing.TB, applied func() ([]uint64, bool)) (uint64, time.Duration) {
	t.Helper()
	start := time.Now()
	var last uint64
	var stableSince time.Time
	await.True(t, settleWithin, "the log stopped growing and every read model applied it", func() bool {
		info, err := e.info()
		if err != nil {
			stableSince = time.Time{}
			return false
		}
		seqs, ok := applied()
		idle := ok && e.routersIdle()
		for _, s := range seqs {
			idle = idle && s == info.State.LastSeq
		}
		if !idle || info.State.LastSeq != last {
			last, stableSince = info.State.LastSeq, time.Time{}
			return false
		}
		if stableSince.IsZero() {
			stableSince = time.Now()
		}
		return time.Since(stableSince) >= 500*time.Millisecond
	})
	return last, time.Since(start)
}

// workerApplied returns a function that reads the named workers' applied
// sequences over their control subjects.
func workerApplied(nc *nats.Conn, ids ...string) func() ([]uint64, bool) {
	wc := query.NewClient(nc)
	return func() ([]uint64, bool) {
		var out []uint64
		for _, id := range ids {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := wc.WorkerStatus(ctx, id)
			cancel()
			if err != nil || !st.Serving {
				return nil, false
			}
			out = append(out, st.Applied)
		}
		return out, true
	}
}

// rebuilt is one worker's line of `spa-ctl rebuild`.
type rebuilt struct {
	state         string // the summary: "swapped at sequence N (swap X ms)"
	live, rebuilt string
}

// ctlRebuild runs `spa-ctl rebuild` against natsURL (every worker),
// connecting with the admin seed in nkey if not empty, and checks that
// each of ids reports swapped, with the rebuilt digest equal to the live
// one.
func ctlRebuild(t testing.TB, natsURL, nkey string, ids ...string) map[string]rebuilt {
	t.Helper()
	start := time.Now()
	args := []string{"rebuild", "--nats-url", natsURL}
	if nkey != "" {
		args = append(args, "--nats-nkey", nkey)
	}
	stdout, stderr, err := runCtl(t, settleWithin, args...)
	if err != nil {
		t.Errorf("spa-ctl rebuild: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	out := map[string]rebuilt{}
	var cur string
	for line := range strings.Lines(stdout) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "  live "):
			r := out[cur]
			r.live = strings.TrimSpace(strings.TrimPrefix(line, "  live "))
			out[cur] = r
		case strings.HasPrefix(line, "  rebuilt "):
			r := out[cur]
			r.rebuilt = strings.TrimSpace(strings.TrimPrefix(line, "  rebuilt "))
			out[cur] = r
		default:
			id, state, ok := strings.Cut(line, ": ")
			if ok {
				cur = id
				out[cur] = rebuilt{state: state}
			}
		}
	}
	for _, id := range ids {
		r, ok := out[id]
		switch {
		case !ok:
			t.Errorf("spa-ctl rebuild did not report worker %s:\n%s", id, stdout)
		case !strings.HasPrefix(r.state, query.RebuildSwapped) || r.live == "" || r.live != r.rebuilt:
			t.Errorf("worker %s rebuild: %s, live %q, rebuilt %q", id, r.state, r.live, r.rebuilt)
		default:
			t.Logf("spa-ctl rebuild: %s %s, digest %s", id, r.state, r.live)
		}
	}
	t.Logf("spa-ctl rebuild took %s", time.Since(start).Round(time.Millisecond))
	return out
}

// durations formats a list of durations, rounded to milliseconds, with
// their minimum, median and maximum.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("min %s, median %s, max %s (each: %s)", s[0].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond),
		s[len(s)-1].Round(time.Millisecond), strings.Join(parts, " "))
}
