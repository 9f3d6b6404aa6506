package app_test

import (
	"context"
	"testing"
	"time"

	"spa/internal/app"
	"spa/internal/spa"
)

// TestRetryOfNoOpRegistrationChangesNothing: a RegisterProvider that
// changed nothing (the same details again) is noted with its request id;
// when its reply is lost and another request changes the details
// meanwhile, its retry is answered as the first time and reverts nothing.
func TestRetryOfNoOpRegistrationChangesNothing(t *testing.T) {
	store := &memStore{recs: map[string][]spa.Record{}}
	a := app.New(store, nil, app.WithClock(func() time.Time { return now }))
	ctx := context.Background()
	d1 := spa.ProviderDetails{ODS: "VLAXL", Name: "Elmwood Care Home", Boroughs: []string{"Bromley"}, Services: []spa.Service{spa.ServiceCareHomeBed}}
	if _, _, err := a.RegisterProvider(ctx, app.Meta{Request: spa.Request{ID: "sync-00000001", Hash: []byte("d1")}}, spa.RegisterProvider{Details: d1}); err != nil {
		t.Fatal(err)
	}
	// The nightly sync sends the same details again: nothing changes, OK.
	x := app.Meta{Request: spa.Request{ID: "sync-00000002", Hash: []byte("d1")}}
	first, unchanged, err := a.RegisterProvider(ctx, x, spa.RegisterProvider{Details: d1})
	if err != nil || !unchanged {
		t.Fatalf("%d %v %v", first, unchanged, err)
	}
	// Its reply is lost. Meanwhile an administrator renames the provider.
	d2 := d1
	d2.Name = "Elmwood House"
	if _, _, err := a.RegisterProvider(ctx, app.Meta{Request: spa.Request{ID: "admin-0000001", Hash: []byte("d2")}}, spa.RegisterProvider{Details: d2}); err != nil {
		t.Fatal(err)
	}
	before, _, _ := store.Load(ctx, spa.AggregateProvider, "VLAXL")
	// The sync retries its request as it was.
	seq, unchanged, err := a.RegisterProvider(ctx, x, spa.RegisterProvider{Details: d1})
	after, _, _ := store.Load(ctx, spa.AggregateProvider, "VLAXL")
	if len(after) != len(before) {
		last := after[len(after)-1].Event.(spa.ProviderRegistered)
		t.Fatalf("the retry appended %d event(s) (seq %d, unchanged=%v, err=%v): the provider is %q again; first answer: version %d, unchanged",
			len(after)-len(before), seq, unchanged, err, last.Details.Name, first)
	}
}

// TestRetriedNoOpAcceptAnsweredTheSame: an accept answered OK as a no-op
// (already accepted by an earlier request) is noted; once care has
// started, its retry is answered OK as the first time, not
// FAILED_PRECONDITION.
func TestRetriedNoOpAcceptAnsweredTheSame(t *testing.T) {
	store := &memStore{recs: map[string][]spa.Record{}}
	a := app.New(store, nil, app.WithClock(func() time.Time { return now }))
	ctx := context.Background()
	sub, err := a.SubmitReferral(ctx, app.Meta{}, submit())
	if err != nil {
		t.Fatal(err)
	}
	ref := sub.ReferralID
	if _, _, err := a.RegisterProvider(ctx, app.Meta{}, spa.RegisterProvider{Details: spa.ProviderDetails{ODS: "VLAXL", Name: "Elmwood", Boroughs: []string{"Bromley"}, Services: []spa.Service{spa.ServiceCareHomeBed}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AppendBatch(ctx, []spa.Append{{Record: spa.Record{EventID: "offer-1", AggregateID: ref, OccurredAt: now, RecordedAt: now,
		Event: spa.OfferMade{AssignmentID: ref + "-a1", ProviderODS: "VLAXL", Service: spa.ServiceCareHomeBed}}}}); err != nil {
		t.Fatal(err)
	}
	accept := spa.TransitionAssignment{AssignmentID: ref + "-a1", To: spa.TaskAccepted}
	if _, err := a.TransitionAssignment(ctx, app.Meta{Request: spa.Request{ID: "accept-000001", Hash: []byte("accept")}}, accept); err != nil {
		t.Fatal(err)
	}
	// A second accept (another request id) is answered OK: nothing to do.
	y := app.Meta{Request: spa.Request{ID: "accept-000002", Hash: []byte("accept")}}
	if _, err := a.TransitionAssignment(ctx, y, accept); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TransitionAssignment(ctx, app.Meta{}, spa.TransitionAssignment{AssignmentID: ref + "-a1", To: spa.TaskInProgress}); err != nil {
		t.Fatal(err)
	}
	// Its reply was lost; it is retried as it was.
	if _, err := a.TransitionAssignment(ctx, y, accept); err != nil {
		t.Fatalf("retry of a request answered OK the first time: %v", err)
	}
}
