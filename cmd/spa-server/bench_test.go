package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/referraltest"
)

// BenchmarkSubmitReferral measures durable intake through the real server:
// gRPC, validation, load, optimistic append to JetStream (fsync on every
// write unless no-sync), answer. 8 callers per core.
func BenchmarkSubmitReferral(b *testing.B) {
	for _, mode := range []struct {
		name string
		args []string
	}{{"fsync", nil}, {"no-sync", []string{"--no-sync"}}} {
		b.Run(mode.name, func(b *testing.B) {
			s := startServer(b, append([]string{"--data-dir", b.TempDir()}, mode.args...)...)
			ctx := callCtx(b)
			var n atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					if _, err := s.client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("bench-%09d", i), Referral: referraltest.Details(i)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "referrals/s")
		})
	}
}

// BenchmarkReadYourWrite measures one caller's submit followed by a
// GetReferral that waits for the read model to apply it: the latency from
// command to a query that sees it.
func BenchmarkReadYourWrite(b *testing.B) {
	s := startServer(b, "--data-dir", b.TempDir())
	ctx := callCtx(b)
	b.ResetTimer()
	for i := range b.N {
		res, err := s.client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("ryw-%09d", i), Referral: referraltest.Details(i)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.client.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: res.GetReferralId(), MinSequence: res.GetSequence()}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubmitToOffer measures one referral's way from submission to an
// offer: the router's pathway decision and its offer with the reservation
// (two guarded appends, the second an atomic batch), as seen by a client
// polling the board.
func BenchmarkSubmitToOffer(b *testing.B) {
	s := startServer(b, "--data-dir", b.TempDir(), "--scheduler=false")
	c := clientsOf(s)
	addProvider(b, c, "NQR01", 10000, nil, spav1.Service_SERVICE_HOME_CARE_REABLEMENT)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ResetTimer()
	for i := range b.N {
		res, err := c.referrals.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: fmt.Sprintf("offer-%09d", i), Referral: referraltest.Details(i)})
		if err != nil {
			b.Fatal(err)
		}
		for {
			r, err := c.referrals.GetReferral(ctx, &spav1.GetReferralRequest{ReferralId: res.GetReferralId(), MinSequence: res.GetSequence()})
			if err != nil {
				b.Fatal(err)
			}
			if r.GetReferral().GetStatus() == spav1.ReferralStatus_REFERRAL_STATUS_OFFERED {
				break
			}
		}
	}
}
