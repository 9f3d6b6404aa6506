package main

import (
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// latencies keeps every sample of one measure; runs are bounded in count
// and time, so the samples fit in memory and percentiles are exact.
type latencies struct {
	mu      sync.Mutex
	samples []time.Duration
	errors  int
	retries int
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.samples = append(l.samples, d)
	l.mu.Unlock()
}

func (l *latencies) failed() {
	l.mu.Lock()
	l.errors++
	l.mu.Unlock()
}

func (l *latencies) retried() {
	l.mu.Lock()
	l.retries++
	l.mu.Unlock()
}

// summary is what a report says of a measure, in milliseconds.
type summary struct {
	Count   int     `json:"count"`
	Errors  int     `json:"errors,omitempty"`
	Retries int     `json:"retries,omitempty"`
	P50     float64 `json:"p50_ms"`
	P95     float64 `json:"p95_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

func (l *latencies) summary() summary {
	l.mu.Lock()
	s := slices.Clone(l.samples)
	out := summary{Count: len(s), Errors: l.errors, Retries: l.retries}
	l.mu.Unlock()
	if len(s) == 0 {
		return out
	}
	slices.Sort(s)
	out.P50, out.P95, out.P99 = ms(percentile(s, 50)), ms(percentile(s, 95)), ms(percentile(s, 99))
	out.Max = ms(s[len(s)-1])
	return out
}

// percentile returns the p-th percentile of sorted samples (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return round(float64(d.Microseconds())/1000, 3) }

func round(f float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(f*p) / p
}

// perSecond is n over d, rounded.
func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round(float64(n)/d.Seconds(), 1)
}

// ratio is a over b, rounded; 0 when b is.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round(a/b, 3)
}

// calls keeps the latencies of each RPC method of one phase.
type calls struct {
	mu      sync.Mutex
	methods map[string]*latencies
}

func newCalls() *calls { return &calls{methods: map[string]*latencies{}} }

func (c *calls) of(method string) *latencies {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.methods[method]
	if l == nil {
		l = &latencies{}
		c.methods[method] = l
	}
	return l
}

func (c *calls) summaries() map[string]summary {
	c.mu.Lock()
	names := make([]string, 0, len(c.methods))
	for m := range c.methods {
		names = append(names, m)
	}
	c.mu.Unlock()
	sort.Strings(names)
	out := make(map[string]summary, len(names))
	for _, m := range names {
		out[m] = c.of(m).summary()
	}
	return out
}
