package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"spa/internal/app"
	"spa/internal/spa"
)

// countingStore records the size of every batch appended.
type countingStore struct {
	app.Store
	mu      sync.Mutex
	batches []int
}

func (c *countingStore) AppendBatch(ctx context.Context, b []spa.Append) ([]uint64, error) {
	c.mu.Lock()
	c.batches = append(c.batches, len(b))
	c.mu.Unlock()
	return c.Store.AppendBatch(ctx, b)
}

// storeRouting reads providers straight from the log.
type storeRouting struct {
	store app.Store
	ods   []string
}

func (r storeRouting) Providers(string) ([]spa.Provider, error) {
	var out []spa.Provider
	for _, ods := range r.ods {
		recs, _, err := r.store.Load(context.Background(), spa.AggregateProvider, ods)
		if err != nil {
			return nil, err
		}
		var p spa.Provider
		for _, rec := range recs {
			p.Apply(rec)
		}
		out = append(out, p)
	}
	return out, nil
}
func (storeRouting) AwaitingCapacity(string, spa.Service) ([]spa.Referral, error) { return nil, nil }
func (storeRouting) AwaitingTest() ([]spa.Referral, error)                        { return nil, nil }
func (storeRouting) Policies() (spa.Policies, error)                              { return spa.DefaultPolicies, nil }
func (storeRouting) CatchUp(context.Context) error                                { return nil }

// TestRoutingIsOneCommit: from submission to offer, the router appends one
// batch (the pathway decided, the offer and the provider's reservation),
// and a referral no provider can take one batch (decided, queued); both in
// the log and in memory.
func TestRoutingIsOneCommit(t *testing.T) {
	t.Parallel()
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			counted := &countingStore{Store: store}
			clock := app.WithClock(func() time.Time { return now })
			a := app.New(counted, nil, clock, app.WithWorker("w1", storeRouting{store: store, ods: []string{"NQR01"}}))
			d := spa.ProviderDetails{ODS: "NQR01", Name: "Reablement", Boroughs: []string{"Bromley"}, Services: []spa.Service{spa.ServiceHomeCareReablement}}
			if _, _, err := a.RegisterProvider(ctx, app.Meta{}, spa.RegisterProvider{Details: d}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := a.UpdateCapacity(ctx, app.Meta{}, spa.UpdateCapacity{ProviderODS: "NQR01", Capacity: []spa.Capacity{{Service: spa.ServiceHomeCareReablement, Available: 1, Open: true, AsOf: now}}}); err != nil {
				t.Fatal(err)
			}
			for i, want := range []struct {
				batch  int
				status spa.Status
			}{{3, spa.StatusOffered}, {2, spa.StatusAwaitingCapacity}} {
				c := submit()
				c.RequestID = fmt.Sprintf("one-commit-%d", i)
				sub, err := a.SubmitReferral(ctx, app.Meta{}, c)
				if err != nil {
					t.Fatal(err)
				}
				counted.batches = nil
				if err := a.RouteReferral(ctx, sub.ReferralID, now); err != nil {
					t.Fatal(err)
				}
				if len(counted.batches) != 1 || counted.batches[0] != want.batch {
					t.Fatalf("referral %d: routed in batches %v, want one of %d", i, counted.batches, want.batch)
				}
				recs, _, err := store.Load(ctx, spa.AggregateReferral, sub.ReferralID)
				if err != nil {
					t.Fatal(err)
				}
				if r := spa.Replay(recs); r.Status != want.status {
					t.Fatalf("referral %d: status %v, want %v (%d events)", i, r.Status, want.status, len(recs))
				}
			}
		})
	}
}
