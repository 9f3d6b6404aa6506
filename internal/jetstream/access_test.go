package jetstream_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/spa"
)

// TestAccessLogPages: a referral's access records come in pages, oldest
// first, each once, with no empty last page when the records fill the
// pages exactly.
func TestAccessLogPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	access := openAccessLog(t)
	id, other := spa.ReferralIDFor("access-pages"), spa.ReferralIDFor("access-other")
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	for i := range 200 {
		if err := access.Record(ctx, spa.Access{Actor: spa.Actor{ODS: "RJZ30", User: fmt.Sprint("user-", i)}, Purpose: "direct-care", Method: "GetReferral", At: at},
			[]spa.Accessed{{ReferralID: id, NHSNumber: "9434765919"}, {ReferralID: other, NHSNumber: "9434765870"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, size := range []int{1, 7, 100, 200, 500} {
		var users []string
		var after uint64
		pages := 0
		for {
			recs, next, err := access.List(ctx, spa.AccessQuery{ReferralID: id}, after, size)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, r := range recs {
				if r.GetReferralId() != id {
					t.Fatalf("a record of %s in %s's pages", r.GetReferralId(), id)
				}
				users = append(users, r.GetActor().GetUser())
			}
			if next == 0 {
				break
			}
			after = next
		}
		if want := (200 + size - 1) / size; len(users) != 200 || pages != want {
			t.Fatalf("page size %d: %d records in %d pages, want 200 in %d", size, len(users), pages, want)
		}
		for i, u := range users {
			if u != fmt.Sprint("user-", i) {
				t.Fatalf("page size %d: record %d is %s", size, i, u)
			}
		}
	}
}

// TestAccessByPatient: the reads of every referral of one patient are
// listed together, and only theirs, oldest first; a referral's own list
// still finds them.
func TestAccessByPatient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	access := openAccessLog(t)
	first, second, stranger := spa.ReferralIDFor("patient-1st"), spa.ReferralIDFor("patient-2nd"), spa.ReferralIDFor("stranger")
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	reads := [][]spa.Accessed{
		{{ReferralID: first, NHSNumber: "9434765919"}},
		{{ReferralID: stranger, NHSNumber: "9434765870"}, {ReferralID: second, NHSNumber: "9434765919"}},
		{{ReferralID: stranger, NHSNumber: "9434765870"}},
		{{ReferralID: first, NHSNumber: "9434765919"}},
	}
	for i, r := range reads {
		if err := access.Record(ctx, spa.Access{Actor: spa.Actor{ODS: "RJZ30", User: fmt.Sprint("user-", i)}, Purpose: "direct-care", Method: "GetReferral", At: at}, r); err != nil {
			t.Fatal(err)
		}
	}
	recs, next, err := access.List(ctx, spa.AccessQuery{NHSNumber: "9434765919"}, 0, 100)
	if err != nil || next != 0 {
		t.Fatal(next, err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.GetActor().GetUser()+" "+r.GetReferralId()+" "+r.GetNhsNumber())
	}
	want := []string{"user-0 " + first + " 9434765919", "user-1 " + second + " 9434765919", "user-3 " + first + " 9434765919"}
	if !slices.Equal(got, want) {
		t.Fatalf("the patient's reads: %q, want %q", got, want)
	}
	if recs, _, err := access.List(ctx, spa.AccessQuery{ReferralID: first}, 0, 100); err != nil || len(recs) != 2 {
		t.Fatalf("the referral's reads: %v %v", recs, err)
	}
}

// openAccessLog is the access log of a new embedded server.
func openAccessLog(t *testing.T) *jetstream.AccessLog {
	t.Helper()
	store := jetstreamtest.Store(t, jetstreamtest.Connect(t, jetstreamtest.Start(t)), jetstream.Setup{})
	access, err := store.OpenAccessLog(context.Background(), jetstream.Requirements{})
	if err != nil {
		t.Fatal(err)
	}
	return access
}
