// Package await is for tests: it polls a condition until it holds or a
// deadline passes, so that tests wait for what they need and never sleep
// a fixed time in the hope that it happened.
package await

import (
	"testing"
	"time"
)

// Interval is the time between two polls.
const Interval = 20 * time.Millisecond

// True polls cond until it returns true; the test fails, naming what it
// waited for, if within passes first.
func True(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(Interval)
	}
}
