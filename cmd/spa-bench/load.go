package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/identity"
	"spa/internal/spa"
)

// load drives referrals through their lifecycle on the API: the hospital
// submits while the patient still meets a criterion to reside, records the
// criteria (the Discharge Ready Date), the worker routes, the provider sees
// the offer on its watch stream and accepts, starts and completes it.
type load struct {
	api   *api
	today string
	// run prefixes the request ids: a run never replays another's.
	run  string
	next atomic.Int64
	// pending are the referrals whose offer is awaited, by referral id.
	pending sync.Map
	// answers are offers for the providers to answer; unanswered counts
	// those queued or being answered.
	answers    chan answer
	unanswered atomic.Int64
	// offers counts the offers each provider saw.
	offers map[string]*atomic.Int64
	acks   acks
	// position returns the log's last sequence, when the bench can ask
	// NATS; nil otherwise (the acks then stand for it).
	position func(ctx context.Context) (uint64, error)
	errs     *errorLog
	samplers sync.WaitGroup
}

// tracked is a referral whose offer is awaited.
type tracked struct {
	ph        *phase
	start     time.Time
	delivered chan struct{}
}

// answer is an offer a provider answers.
type answer struct {
	ph         *phase
	provider   benchProvider
	assignment string
}

func newLoad(a *api, run string, errs *errorLog) *load {
	l := &load{api: a, today: spa.LocalDate(time.Now()), run: run, answers: make(chan answer, 1<<16), offers: map[string]*atomic.Int64{}, errs: errs}
	for _, p := range providers {
		l.offers[p.ods] = new(atomic.Int64)
	}
	return l
}

// phase is one measured stretch of a run.
type phase struct {
	name string
	// answer: providers accept, start and complete what they are offered;
	// withdrawals: 1 referral in 101 is withdrawn instead of made ready.
	answer, withdrawals bool
	count               int
	calls               *calls
	e2e                 latencies
	lag                 latencies
	lagEvents           atomic.Uint64
	start               time.Time
	end                 atomic.Int64 // Unix nanoseconds; earlier once the phase made its count
	first, last         uint64
	submitted           atomic.Int64
	offered             atomic.Int64 // offers delivered within the window
	delivered           atomic.Int64 // offers delivered at all
	undelivered         atomic.Int64 // offers given up on (e2e holds how long they were awaited)
	commands            atomic.Int64 // commands answered within the window
}

func newPhase(name string, count int, answer, withdrawals bool) *phase {
	return &phase{name: name, count: count, answer: answer, withdrawals: withdrawals, calls: newCalls()}
}

// begin opens ph's window, of d from now.
func (ph *phase) begin(d time.Duration) {
	ph.start = time.Now()
	ph.end.Store(ph.start.Add(d).UnixNano())
}

// ends is when ph's window ends.
func (ph *phase) ends() time.Time { return time.Unix(0, ph.end.Load()) }

// endNow ends ph's window now, if it has not ended.
func (ph *phase) endNow() {
	if now := time.Now(); now.Before(ph.ends()) {
		ph.end.Store(now.UnixNano())
	}
}

// window is how long ph's window lasted.
func (ph *phase) window() time.Duration { return ph.ends().Sub(ph.start) }

func (ph *phase) inWindow(t time.Time) bool { return !t.Before(ph.start) && t.Before(ph.ends()) }

// take returns the next referral's number, or false once the phase has
// made its count.
func (l *load) take(ph *phase) (int, bool) {
	if ph.count > 0 && ph.submitted.Add(1) > int64(ph.count) {
		return 0, false
	}
	return int(l.next.Add(1) - 1), true
}

// command runs a command as id, records its latency and its sequence.
func (l *load) command(ctx context.Context, ph *phase, method string, id identity.Identity, f func(ctx context.Context, cc *grpc.ClientConn) (uint64, error)) error {
	var seq uint64
	err := l.api.call(ctx, ph.calls.of(method), id, "direct-care", func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		seq, err = f(ctx, cc)
		return err
	})
	if err != nil {
		l.errs.add(method, err)
		return err
	}
	l.acks.add(seq)
	if ph.inWindow(time.Now()) {
		ph.commands.Add(1)
	}
	return nil
}

// lifecycle takes referral r through the hospital's side and waits, until
// until, for its offer to reach the provider's watch; it reports whether
// it did.
func (l *load) lifecycle(ctx context.Context, ph *phase, r referral, until time.Time) bool {
	reqID := requestID(l.run, r.i)
	id := spa.ReferralIDFor(reqID)
	t := &tracked{ph: ph, start: time.Now(), delivered: make(chan struct{})}
	if !r.withdrawn {
		l.pending.Store(id, t)
	}
	who := team(r.site)
	err := l.command(ctx, ph, "SubmitReferral", who, func(ctx context.Context, cc *grpc.ClientConn) (uint64, error) {
		res, err := spav1.NewReferralServiceClient(cc).SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: reqID, Referral: r.details(false, l.today)})
		return res.GetSequence(), err
	})
	if err == nil && r.withdrawn {
		_ = l.command(ctx, ph, "WithdrawReferral", who, func(ctx context.Context, cc *grpc.ClientConn) (uint64, error) {
			res, err := spav1.NewReferralServiceClient(cc).WithdrawReferral(ctx, &spav1.WithdrawReferralRequest{ReferralId: id,
				Reason: spav1.WithdrawalReason_WITHDRAWAL_REASON_DETERIORATED, RequestId: reqID + "-w"})
			return res.GetSequence(), err
		})
		return false
	}
	if err == nil {
		err = l.command(ctx, ph, "RecordCriteriaToReside", who, func(ctx context.Context, cc *grpc.ClientConn) (uint64, error) {
			res, err := spav1.NewReferralServiceClient(cc).RecordCriteriaToReside(ctx, &spav1.RecordCriteriaToResideRequest{ReferralId: id,
				AssessedOn: l.today, RequestId: reqID + "-c"})
			return res.GetSequence(), err
		})
	}
	if err != nil {
		l.pending.Delete(id)
		return false
	}
	wait := time.NewTimer(time.Until(until))
	defer wait.Stop()
	select {
	case <-t.delivered:
		return true
	case <-ctx.Done():
	case <-wait.C:
	}
	if _, ok := l.pending.LoadAndDelete(id); ok && ctx.Err() == nil {
		// Counted at what it waited: a lower bound of its latency.
		ph.undelivered.Add(1)
		ph.e2e.add(time.Since(t.start))
	}
	return false
}

// requestID is the request id of referral i's submission in run.
func requestID(run string, i int) string { return fmt.Sprintf("%s-%07d", run, i) }

// offered is called for every OfferMade a provider's watch delivers.
func (l *load) offered(p benchProvider, ev *spav1.StoredEvent) {
	now := time.Now()
	l.offers[p.ods].Add(1)
	v, ok := l.pending.LoadAndDelete(ev.GetEnvelope().GetAggregateId())
	if !ok {
		return // not awaited: another run's, or given up
	}
	t := v.(*tracked)
	t.ph.e2e.add(now.Sub(t.start))
	t.ph.delivered.Add(1)
	if t.ph.inWindow(now) {
		t.ph.offered.Add(1)
	}
	close(t.delivered)
	if !t.ph.answer {
		return
	}
	l.unanswered.Add(1)
	select {
	case l.answers <- answer{ph: t.ph, provider: p, assignment: ev.GetEnvelope().GetOfferMade().GetAssignmentId()}:
	default:
		l.unanswered.Add(-1)
		l.errs.add("answer", fmt.Errorf("more than %d offers wait for an answer: one dropped", cap(l.answers)))
	}
}

// answerOffers answers queued offers as their providers until ctx ends:
// accept, start care, complete.
func (l *load) answerOffers(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-l.answers:
			l.answer(ctx, a)
			l.unanswered.Add(-1)
		}
	}
}

func (l *load) answer(ctx context.Context, a answer) {
	as := spav1.NewAssignmentServiceClient
	steps := []struct {
		method string
		call   func(ctx context.Context, c spav1.AssignmentServiceClient, id, req string) (uint64, error)
	}{
		{"AcceptOffer", func(ctx context.Context, c spav1.AssignmentServiceClient, id, req string) (uint64, error) {
			res, err := c.AcceptOffer(ctx, &spav1.AcceptOfferRequest{AssignmentId: id, RequestId: req})
			return res.GetSequence(), err
		}},
		{"StartCare", func(ctx context.Context, c spav1.AssignmentServiceClient, id, req string) (uint64, error) {
			res, err := c.StartCare(ctx, &spav1.StartCareRequest{AssignmentId: id, RequestId: req})
			return res.GetSequence(), err
		}},
		{"CompleteAssignment", func(ctx context.Context, c spav1.AssignmentServiceClient, id, req string) (uint64, error) {
			res, err := c.CompleteAssignment(ctx, &spav1.CompleteAssignmentRequest{AssignmentId: id, RequestId: req})
			return res.GetSequence(), err
		}},
	}
	for i, s := range steps {
		req := fmt.Sprintf("%s-%s-%d", l.run, a.assignment, i)
		if len(req) > 64 {
			req = req[len(req)-64:]
		}
		err := l.command(ctx, a.ph, s.method, a.provider.identity(), func(ctx context.Context, cc *grpc.ClientConn) (uint64, error) {
			return s.call(ctx, as(cc), a.assignment, req)
		})
		if err != nil {
			return
		}
	}
}

// waitAnswered waits until no offer waits for an answer, or within
// passes; it reports whether none does.
func (l *load) waitAnswered(ctx context.Context, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for l.unanswered.Load() > 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// watch follows p's assignments from sequence after until ctx ends,
// reconnecting from the last cursor when the stream breaks.
func (l *load) watch(ctx context.Context, p benchProvider, after uint64) {
	cursor := after
	for ctx.Err() == nil {
		err := l.follow(ctx, p, &cursor)
		if ctx.Err() != nil {
			return
		}
		l.errs.add("WatchAssignments", err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (l *load) follow(ctx context.Context, p benchProvider, cursor *uint64) error {
	cctx, cc, err := l.api.as(ctx, p.identity(), "direct-care")
	if err != nil {
		return err
	}
	stream, err := spav1.NewAssignmentServiceClient(cc).WatchAssignments(cctx, &spav1.WatchAssignmentsRequest{ProviderOds: p.ods, AfterSequence: *cursor})
	if err != nil {
		return err
	}
	for {
		res, err := stream.Recv()
		if err != nil {
			return err
		}
		*cursor = res.GetCursor()
		l.acks.seen(res.GetCursor())
		if ev := res.GetEvent(); ev.GetType() == "OfferMade" {
			l.offered(p, ev)
		}
	}
}

// startWatches has every provider that takes referrals watch its
// assignments from after, and answerers goroutines answer offers; stop
// ends them and waits.
func (l *load) startWatches(ctx context.Context, after uint64, answerers int) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, p := range providers {
		if p.open {
			wg.Go(func() { l.watch(ctx, p, after) })
		}
	}
	for range answerers {
		wg.Go(func() { l.answerOffers(ctx) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// closedLoop runs clients callers for ph's window, each taking one
// referral at a time from submission to its offer delivered.
func (l *load) closedLoop(ctx context.Context, ph *phase, clients int, window time.Duration) {
	l.open(ctx, ph, window)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(ph.ends()) {
				i, ok := l.take(ph)
				if !ok {
					return
				}
				l.lifecycle(ctx, ph, referralOf(i, ph.withdrawals), ph.ends())
			}
		})
	}
	wg.Wait()
	ph.endNow() // when the phase made its count early
	l.close(ctx, ph)
}

// openLoop starts referrals at rate a second for ph's window, whatever
// happens to those already started, and waits for their offers up to
// drain after the window.
func (l *load) openLoop(ctx context.Context, ph *phase, rate float64, window, drain time.Duration) {
	l.open(ctx, ph, window)
	interval := time.Duration(float64(time.Second) / rate)
	until := ph.ends().Add(drain)
	var wg sync.WaitGroup
	for k := 0; ctx.Err() == nil; k++ {
		at := ph.start.Add(time.Duration(k) * interval)
		if !at.Before(ph.ends()) {
			break
		}
		i, ok := l.take(ph)
		if !ok {
			ph.endNow()
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() { l.lifecycle(ctx, ph, referralOf(i, ph.withdrawals), until) })
	}
	// The window's log position is taken at its end, before the drain.
	l.close(ctx, ph)
	wg.Wait()
}

// open starts ph's window and the projection lag sampler.
func (l *load) open(ctx context.Context, ph *phase, window time.Duration) {
	ph.first = l.logPosition(ctx)
	ph.begin(window)
	l.samplers.Go(func() { l.sampleLag(ctx, ph) })
}

// close ends ph's window (waiting for its end) and its sampler.
func (l *load) close(ctx context.Context, ph *phase) {
	if d := time.Until(ph.ends()); d > 0 {
		time.Sleep(d)
	}
	ph.last = l.logPosition(ctx)
	l.samplers.Wait()
}

// logPosition is the log's last sequence: from NATS when the bench may
// ask it, or else the highest sequence the API has shown it.
func (l *load) logPosition(ctx context.Context) uint64 {
	if l.position != nil {
		if seq, err := l.position(ctx); err == nil {
			return seq
		}
	}
	return l.acks.highest()
}

// lagEvery is how often the projection lag is sampled.
const lagEvery = 250 * time.Millisecond

// sampleLag samples the read model's applied sequence (ListProviders
// answers with it) during ph's window: its lag behind the commands the
// API had acknowledged when the sample was sent, in time (the age of
// the oldest acknowledged command it had not applied) and in events.
func (l *load) sampleLag(ctx context.Context, ph *phase) {
	for ctx.Err() == nil && time.Now().Before(ph.ends()) {
		sent := time.Now()
		highest := l.acks.highest()
		var applied uint64
		err := l.api.call(ctx, ph.calls.of("ListProviders (lag sample)"), coordinator, "direct-care", func(ctx context.Context, cc *grpc.ClientConn) error {
			res, err := spav1.NewProviderServiceClient(cc).ListProviders(ctx, &spav1.ListProvidersRequest{PageSize: 1})
			applied = res.GetSequence()
			return err
		})
		if err == nil {
			ph.lag.add(l.acks.lag(sent, applied))
			if highest > applied {
				for {
					old := ph.lagEvents.Load()
					if highest-applied <= old || ph.lagEvents.CompareAndSwap(old, highest-applied) {
						break
					}
				}
			}
		}
		time.Sleep(time.Until(sent.Add(lagEvery)))
	}
}

// acks are the sequences the API acknowledged commands with, and when.
type acks struct {
	mu   sync.Mutex
	list []ack
	max  uint64
}

type ack struct {
	seq uint64
	at  time.Time
}

func (a *acks) add(seq uint64) {
	a.mu.Lock()
	a.list = append(a.list, ack{seq: seq, at: time.Now()})
	a.max = max(a.max, seq)
	a.mu.Unlock()
}

// seen notes a sequence the API showed that no command of the bench
// appended (a watch's cursor).
func (a *acks) seen(seq uint64) {
	a.mu.Lock()
	a.max = max(a.max, seq)
	a.mu.Unlock()
}

func (a *acks) highest() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.max
}

// lag returns how long the oldest command acknowledged before sent that
// the read model had not applied (applied) has waited, and forgets those
// it had.
func (a *acks) lag(sent time.Time, applied uint64) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	keep := a.list[:0]
	var oldest time.Time
	for _, k := range a.list {
		if k.seq <= applied {
			continue
		}
		keep = append(keep, k)
		if k.at.Before(sent) && (oldest.IsZero() || k.at.Before(oldest)) {
			oldest = k.at
		}
	}
	a.list = keep
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest)
}

// errorLog counts failures by what failed and prints the first of each.
type errorLog struct {
	mu     sync.Mutex
	w      io.Writer
	counts map[string]int
}

func newErrorLog(w io.Writer) *errorLog { return &errorLog{w: w, counts: map[string]int{}} }

func (e *errorLog) add(what string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts[what]++
	if e.counts[what] == 1 {
		fmt.Fprintf(e.w, "spa-bench: %s failed (first of its kind; all are counted): %v\n", what, err)
	}
}

func (e *errorLog) total() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.counts))
	for k, v := range e.counts {
		out[k] = v
	}
	return out
}
