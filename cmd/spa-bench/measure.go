package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

	spav1 "spa/internal/gen/spa/v1"
	ijs "spa/internal/jetstream"
)

// setup registers every provider with its capacity (RegisterProvider
// appends nothing for details already registered) and returns the highest
// sequence the API answered: the watches start there.
func (l *load) setup(ctx context.Context, ph *phase) (uint64, error) {
	now := time.Now()
	for _, p := range providers {
		err := l.command(ctx, ph, "RegisterProvider", p.identity(), func(ctx context.Context, cc *grpc.ClientConn) (uint64, error) {
			res, err := spav1.NewProviderServiceClient(cc).RegisterProvider(ctx, &spav1.RegisterProviderRequest{Provider: p.details()})
			return res.GetSequence(), err
		})
		if err != nil {
			return 0, fmt.Errorf("register provider %s: %w", p.ods, err)
		}
		if err := l.updateCapacity(ctx, ph, "UpdateCapacity", p, now); err != nil {
			return 0, fmt.Errorf("capacity of %s: %w", p.ods, err)
		}
	}
	return l.acks.highest(), nil
}

func (l *load) updateCapacity(ctx context.Context, ph *phase, method string, p benchProvider, at time.Time) error {
	return l.command(ctx, ph, method, p.identity(), func(ctx context.Context, cc *grpc.ClientConn) (uint64, error) {
		res, err := spav1.NewProviderServiceClient(cc).UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: p.ods, Capacity: p.capacity(at)})
		return res.GetSequence(), err
	})
}

// Names of the measures taken after the load phases.
const (
	boardFiltered = "ListReferrals (rare site or status)"
	boardFirst    = "ListReferrals (first page)"
	capacityBusy  = "UpdateCapacity (busiest provider)"
	capacityIdle  = "UpdateCapacity (idle provider)"
)

// boardPages reads the board as a coordinator, one call at a time, within
// within: samples first pages filtered by the rare site or by the
// withdrawn status (alternately) and, between every other two, an
// unfiltered first page.
func (l *load) boardPages(ctx context.Context, ph *phase, samples int, within time.Duration) {
	deadline := time.Now().Add(within)
	filtered := []*spav1.ListReferralsRequest{{SiteOds: rareSite}, {Status: spav1.ReferralStatus_REFERRAL_STATUS_WITHDRAWN}}
	page := func(method string, req *spav1.ListReferralsRequest) {
		err := l.api.call(ctx, ph.calls.of(method), coordinator, "care-coordination", func(ctx context.Context, cc *grpc.ClientConn) error {
			_, err := spav1.NewReferralServiceClient(cc).ListReferrals(ctx, req)
			return err
		})
		if err != nil {
			l.errs.add(method, err)
		}
	}
	for k := 0; k < samples && time.Now().Before(deadline) && ctx.Err() == nil; k++ {
		page(boardFiltered, filtered[k%len(filtered)])
		if k%2 == 0 {
			page(boardFirst, &spav1.ListReferralsRequest{})
		}
	}
}

// capacityUpdates has the provider offered most in the run and the idle
// one count their capacity, alternately, samples times each within
// within; it returns the busy one's offers.
func (l *load) capacityUpdates(ctx context.Context, ph *phase, samples int, within time.Duration) int64 {
	busy := providers[0]
	for _, p := range providers {
		if l.offers[p.ods].Load() > l.offers[busy.ods].Load() {
			busy = p
		}
	}
	deadline := time.Now().Add(within)
	for k := 0; k < 2*samples && time.Now().Before(deadline) && ctx.Err() == nil; k++ {
		p, method := busy, capacityBusy
		if k%2 == 1 {
			p, method = idleProvider, capacityIdle
		}
		_ = l.updateCapacity(ctx, ph, method, p, time.Now())
	}
	return l.offers[busy.ods].Load()
}

// shapes replays a referral's events as the auditor, with their stored
// bytes: the submission's shape (its data and headers) and the average
// size of its events.
func (l *load) shapes(ctx context.Context, referralID string) (submission shape, avg int, n int, err error) {
	var events []*spav1.StoredEvent
	err = l.api.call(ctx, new(latencies), auditor, "audit", func(ctx context.Context, cc *grpc.ClientConn) error {
		events = nil
		stream, err := spav1.NewAuditServiceClient(cc).ReplayEvents(ctx, &spav1.ReplayEventsRequest{ReferralId: referralID, IncludeData: true})
		if err != nil {
			return err
		}
		for {
			res, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			events = append(events, res.GetEvent())
		}
	})
	if err != nil {
		return shape{}, 0, 0, fmt.Errorf("replay %s: %w", referralID, err)
	}
	if len(events) == 0 || events[0].GetType() != "ReferralSubmitted" {
		return shape{}, 0, 0, fmt.Errorf("replay %s: no submission", referralID)
	}
	total := 0
	for _, e := range events {
		total += len(e.GetData())
	}
	first := events[0]
	submission = shape{data: len(first.GetData()), headers: map[string]string{
		ijs.HeaderEventType: first.GetType(),
		ijs.HeaderHash:      fmt.Sprintf("%x", first.GetHash()),
		ijs.HeaderSignature: first.GetSignature(),
	}}
	return submission, total / len(events), len(events), nil
}
