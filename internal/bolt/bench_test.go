package bolt_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"spa/internal/bolt"
	"spa/internal/spa"
)

// BenchmarkBoardPage reads a page of 50 of the board from models of
// 10,000 and 100,000 referrals (modelOf's mix): ns/op should not grow
// with the model. go test -run '^$' -bench BoardPage -benchtime 200x
// ./internal/bolt prints it; building the larger model takes about 15 s
// on 2 cores.
func BenchmarkBoardPage(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		m := modelOf(b, n)
		pages := []struct {
			name   string
			filter bolt.Filter
			after  uint64
		}{
			{"unfiltered", bolt.Filter{}, 0},
			{"status held (1 in 100)", bolt.Filter{Status: spa.StatusHeld}, 0},
			{"status held, from the middle", bolt.Filter{Status: spa.StatusHeld}, uint64(n)},
			{"site (1 in 10)", bolt.Filter{SiteODS: "SITE3"}, 0},
			{"site and status held (1 in 1000)", bolt.Filter{SiteODS: "SITE3", Status: spa.StatusHeld}, 0},
			{"status withdrawn and pathway (most)", bolt.Filter{Status: spa.StatusWithdrawn, Pathway: spa.PathwayP1HomeFirst}, 0},
		}
		for _, p := range pages {
			b.Run(fmt.Sprintf("referrals=%d/%s", n, p.name), func(b *testing.B) {
				rows := 0
				for b.Loop() {
					page, _, err := m.List(p.filter, p.after, 50)
					if err != nil {
						b.Fatal(err)
					}
					rows = len(page)
				}
				b.ReportMetric(float64(rows), "rows")
			})
		}
		b.Run(fmt.Sprintf("referrals=%d/awaiting capacity of a borough and service", n), func(b *testing.B) {
			rows := 0
			for b.Loop() {
				waiting, err := m.AwaitingCapacity("borough 4", spa.ServiceStepDownBed)
				if err != nil {
					b.Fatal(err)
				}
				rows = len(waiting)
			}
			b.ReportMetric(float64(rows), "rows")
		})
	}
}

// BenchmarkApply applies the events of modelOf's referrals in batches of
// about 5,000 to a model growing to 20,000 referrals and reports what an
// event costs (the indexes' upkeep included).
func BenchmarkApply(b *testing.B) {
	var events uint64
	start := time.Now()
	for b.Loop() {
		m := modelOf(b, 20_000)
		events += m.Applied()
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(events), "ns/event")
}

// modelOf builds a model of n referrals at 10 sites and 10 boroughs: one
// in 100 held, one in 100 waiting for a step-down bed, one in 10 decided
// (home first) and left there, the others withdrawn after a decision.
func modelOf(b *testing.B, n int) *bolt.Model {
	b.Helper()
	m, err := bolt.Open(filepath.Join(b.TempDir(), "readmodel.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	var batch []bolt.Entry
	seq := uint64(0)
	add := func(id string, e spa.Event) {
		seq++
		batch = append(batch, bolt.Entry{Record: spa.Record{Sequence: seq, EventID: fmt.Sprint("e", seq), AggregateID: id,
			OccurredAt: at.Add(time.Duration(seq) * time.Second), Event: e}})
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		id := spa.ReferralIDFor(fmt.Sprintf("bench-%06d", i))
		d := spa.Details{Episode: spa.Episode{SiteODS: fmt.Sprint("SITE", rnd.IntN(10))}, Patient: spa.Patient{Borough: fmt.Sprint("Borough ", rnd.IntN(10))},
			ProposedPathway: spa.PathwayP1HomeFirst}
		add(id, spa.ReferralSubmitted{RequestID: id, Details: d, DischargeReadyDate: "2026-11-21"})
		switch k := rnd.IntN(100); {
		case k == 0:
			add(id, spa.ReferralHeld{Reason: spa.HoldReasonHousing})
		case k == 1:
			add(id, spa.PathwayDecided{Pathway: spa.PathwayP2StepDown, Service: spa.ServiceStepDownBed})
			add(id, spa.AwaitingCapacity{Service: spa.ServiceStepDownBed})
		case k < 12:
			add(id, spa.PathwayDecided{Pathway: spa.PathwayP1HomeFirst, Service: spa.ServiceHomeCareReablement})
		default:
			add(id, spa.PathwayDecided{Pathway: spa.PathwayP1HomeFirst, Service: spa.ServiceHomeCareReablement})
			add(id, spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonNoLongerNeeded})
		}
		if len(batch) >= 5000 || i == n-1 {
			if err := m.Apply(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return m
}
