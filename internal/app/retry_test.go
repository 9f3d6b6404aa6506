package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"spa/internal/app"
	"spa/internal/spa"
)

// TestEveryCommandIsSafeToRetry: every command with a request id, retried
// with the same request once JetStream's dedupe window has passed and on a
// new App (a restarted server), answers as the first time (the same
// sequence) and appends nothing; the same id with another request is
// KindAlreadyExists. An accept retried after the assignment moved on
// (its reply was lost, then care started) still answers OK.
func TestEveryCommandIsSafeToRetry(t *testing.T) {
	t.Parallel()
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			clock := app.WithClock(func() time.Time { return now })
			a := app.New(store, nil, clock)
			ctx := context.Background()
			sub, err := a.SubmitReferral(ctx, app.Meta{}, submit())
			if err != nil {
				t.Fatal(err)
			}
			ref := sub.ReferralID
			home := spa.ProviderDetails{ODS: "VLAXL", Name: "Elmwood Care Home", Boroughs: []string{"Bromley"}, Services: []spa.Service{spa.ServiceCareHomeBed}}
			if _, _, err := a.RegisterProvider(ctx, app.Meta{}, spa.RegisterProvider{Details: home}); err != nil {
				t.Fatal(err)
			}
			// The router's offer, as it appends it.
			offer := spa.Record{EventID: "offer-1", AggregateID: ref, OccurredAt: now, RecordedAt: now,
				Event: spa.OfferMade{AssignmentID: ref + "-a1", ProviderODS: "VLAXL", Service: spa.ServiceCareHomeBed}}
			if _, err := store.AppendBatch(ctx, []spa.Append{{Record: offer}}); err != nil {
				t.Fatal(err)
			}
			renamed := home
			renamed.Name = "Elmwood House"
			transition := func(to spa.TaskStatus) func(*app.App, app.Meta) (uint64, error) {
				return func(a *app.App, m app.Meta) (uint64, error) {
					return a.TransitionAssignment(ctx, m, spa.TransitionAssignment{AssignmentID: ref + "-a1", To: to})
				}
			}
			// In an order each is allowed in, the first time.
			commands := []struct {
				name string
				run  func(*app.App, app.Meta) (uint64, error)
			}{
				{"RecordCriteriaToReside", func(a *app.App, m app.Meta) (uint64, error) {
					_, seq, err := a.RecordCriteriaToReside(ctx, m, spa.RecordCriteriaToReside{ReferralID: ref, AssessedOn: "2026-11-22"})
					return seq, err
				}},
				{"RecordInfectionTest", func(a *app.App, m app.Meta) (uint64, error) {
					return a.RecordInfectionTest(ctx, m, spa.RecordInfectionTest{ReferralID: ref,
						Test: spa.InfectionTest{Type: spa.TestTypePCR, TakenAt: now.Add(-time.Hour), Result: spa.TestResultNegative}})
				}},
				{"HoldReferral", func(a *app.App, m app.Meta) (uint64, error) {
					return a.HoldReferral(ctx, m, spa.HoldReferral{ReferralID: ref, Reason: spa.HoldReasonHousing})
				}},
				{"ReleaseHold", func(a *app.App, m app.Meta) (uint64, error) {
					return a.ReleaseHold(ctx, m, spa.ReleaseHold{ReferralID: ref})
				}},
				{"UpdateCapacity", func(a *app.App, m app.Meta) (uint64, error) {
					seq, _, err := a.UpdateCapacity(ctx, m, spa.UpdateCapacity{ProviderODS: "VLAXL",
						Capacity: []spa.Capacity{{Service: spa.ServiceCareHomeBed, Available: 2, Open: true, AsOf: now}}})
					return seq, err
				}},
				{"RegisterProvider", func(a *app.App, m app.Meta) (uint64, error) {
					seq, _, err := a.RegisterProvider(ctx, m, spa.RegisterProvider{Details: renamed})
					return seq, err
				}},
				{"AcceptOffer", transition(spa.TaskAccepted)},
				{"RecordPatientLeft", func(a *app.App, m app.Meta) (uint64, error) {
					return a.RecordPatientLeft(ctx, m, spa.RecordPatientLeft{ReferralID: ref, LeftAt: now})
				}},
				{"StartCare", transition(spa.TaskInProgress)},
				{"WithdrawReferral", func(a *app.App, m app.Meta) (uint64, error) {
					return a.WithdrawReferral(ctx, m, spa.WithdrawReferral{ReferralID: ref, Reason: spa.WithdrawalReasonDied})
				}},
			}
			meta := func(i int, body string) app.Meta {
				return app.Meta{Request: spa.Request{ID: fmt.Sprintf("retry-test-%02d", i), Hash: []byte(body)}}
			}
			events := func() int {
				t.Helper()
				refs, _, err := store.Load(ctx, spa.AggregateReferral, ref)
				if err != nil {
					t.Fatal(err)
				}
				provs, _, err := store.Load(ctx, spa.AggregateProvider, "VLAXL")
				if err != nil {
					t.Fatal(err)
				}
				return len(refs) + len(provs)
			}
			first := make([]uint64, len(commands))
			for i, c := range commands {
				before := events()
				if first[i], err = c.run(a, meta(i, "the request")); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if events() == before {
					t.Fatalf("%s appended nothing", c.name)
				}
			}
			// Past the dedupe window, on a new App: only the log remembers.
			time.Sleep(200 * time.Millisecond)
			restarted := app.New(store, nil, clock)
			before := events()
			for i, c := range commands {
				seq, err := c.run(restarted, meta(i, "the request"))
				if err != nil || seq != first[i] {
					t.Errorf("%s retried: sequence %d, %v; want the first answer, sequence %d", c.name, seq, err, first[i])
				}
				if _, err := c.run(restarted, meta(i, "another request")); spa.KindOf(err) != spa.KindAlreadyExists {
					t.Errorf("%s with its request id and another request: %v; want already exists", c.name, err)
				}
			}
			if after := events(); after != before {
				t.Fatalf("retries appended %d events", after-before)
			}
		})
	}
}

// TestRequestIDChecked: a request id that is not 8-64 characters of
// A-Z a-z 0-9 . _ - is a field violation, with the command's own.
func TestRequestIDChecked(t *testing.T) {
	t.Parallel()
	a := app.New(&memStore{recs: map[string][]spa.Record{}}, nil, app.WithClock(func() time.Time { return now }))
	_, err := a.HoldReferral(context.Background(), app.Meta{Request: spa.Request{ID: "short", Hash: []byte("x")}},
		spa.HoldReferral{ReferralID: "ref-aaaaaaaaaaaaaaaa"})
	var e *spa.Error
	if !asError(err, &e) || e.Kind != spa.KindInvalid || !hasField(e, "request_id") || !hasField(e, "reason") {
		t.Fatalf("err = %v; want request_id and reason violations", err)
	}
}

func asError(err error, e **spa.Error) bool {
	x, ok := err.(*spa.Error)
	*e = x
	return ok
}

func hasField(e *spa.Error, field string) bool {
	for _, v := range e.Violations {
		if v.Field == field {
			return true
		}
	}
	return false
}

// TestSubmissionRetriedAfterAnAmendment: a submission retried after the
// ward amended the referral is the same submission (it is compared with
// the details as submitted), not ALREADY_EXISTS.
func TestSubmissionRetriedAfterAnAmendment(t *testing.T) {
	t.Parallel()
	a := app.New(&memStore{recs: map[string][]spa.Record{}}, nil, app.WithClock(func() time.Time { return now }))
	ctx := context.Background()
	sub, err := a.SubmitReferral(ctx, app.Meta{}, submit())
	if err != nil {
		t.Fatal(err)
	}
	d := submit().Details
	d.Risks.Falls = true
	if _, _, err := a.AmendReferral(ctx, app.Meta{}, spa.AmendReferral{ReferralID: sub.ReferralID, Details: d, Paths: []string{"risks"}, Reason: "fell on the ward"}); err != nil {
		t.Fatal(err)
	}
	again, err := a.SubmitReferral(ctx, app.Meta{}, submit())
	if err != nil || again.ReferralID != sub.ReferralID {
		t.Fatalf("retried submission after an amendment: %+v, %v", again, err)
	}
}
