package app_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"spa/internal/app"
	"spa/internal/spa"
)

// TestCapacityRoutesTheQueueOldestFirst: a change of a provider's
// capacity routes the referrals waiting for a service it offers in a
// borough it serves, each once (its boroughs repeated in another case
// name the same queue), oldest first across the queues it reads, and no
// other.
func TestCapacityRoutesTheQueueOldestFirst(t *testing.T) {
	t.Parallel()
	provider := spa.Provider{Details: spa.ProviderDetails{ODS: "NQR10", Boroughs: []string{"Bromley", "Lewisham", "BROMLEY"},
		Services: []spa.Service{spa.ServiceStepDownBed, spa.ServiceCareHomeBed}}}
	waiting := func(id string, seq uint64) spa.Referral { return spa.Referral{ID: id, SubmittedSequence: seq} }
	routing := &queues{provider: provider, waiting: map[string][]spa.Referral{
		queueOf("bromley", spa.ServiceStepDownBed):  {waiting("r1", 10), waiting("r4", 40)},
		queueOf("lewisham", spa.ServiceCareHomeBed): {waiting("r2", 20)},
		queueOf("lewisham", spa.ServiceStepDownBed): {waiting("r3", 30)},
		queueOf("croydon", spa.ServiceStepDownBed):  {waiting("r0", 5)},
		queueOf("bromley", spa.ServiceHospiceBed):   {waiting("r5", 1)},
	}}
	store := &loads{memStore: memStore{recs: map[string][]spa.Record{}}}
	a := app.New(store, nil, app.WithWorker("w1", routing))
	prompt := spa.Record{Sequence: 50, AggregateID: "NQR10", OccurredAt: now, Event: spa.CapacityUpdated{}}
	if err := a.Route(context.Background(), prompt); err != nil {
		t.Fatal(err)
	}
	if want := []string{"r1", "r2", "r3", "r4"}; !slices.Equal(store.ids, want) {
		t.Fatalf("routed %v, want %v", store.ids, want)
	}
}

func queueOf(borough string, s spa.Service) string {
	return strings.ToLower(borough) + "/" + string(rune('0'+s))
}

// queues is a worker's routing view holding one provider and the
// no-capacity queues.
type queues struct {
	provider spa.Provider
	waiting  map[string][]spa.Referral
}

func (q *queues) Providers(string) ([]spa.Provider, error) { return []spa.Provider{q.provider}, nil }
func (q *queues) AwaitingCapacity(borough string, s spa.Service) ([]spa.Referral, error) {
	return q.waiting[queueOf(borough, s)], nil
}
func (q *queues) AwaitingTest() ([]spa.Referral, error) { return nil, nil }
func (q *queues) Policies() (spa.Policies, error)       { return spa.DefaultPolicies, nil }
func (q *queues) CatchUp(context.Context) error         { return nil }

// loads is a memStore that records the referrals loaded, in order.
type loads struct {
	memStore
	mu  sync.Mutex
	ids []string
}

func (l *loads) Load(ctx context.Context, agg spa.Aggregate, id string) ([]spa.Record, uint64, error) {
	l.mu.Lock()
	l.ids = append(l.ids, id)
	l.mu.Unlock()
	return l.memStore.Load(ctx, agg, id)
}
