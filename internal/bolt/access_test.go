package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"spa/internal/bolt"
	"spa/internal/spa"
)

func openAccessIndex(t testing.TB, path string) *bolt.AccessIndex {
	t.Helper()
	x, err := bolt.OpenAccessIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// readBy is a reader's call at sequence seq that read read.
func readBy(seq uint64, user string, read ...spa.Accessed) bolt.AccessEntry {
	return bolt.AccessEntry{Sequence: seq, Read: read,
		Access: spa.Access{Actor: spa.Actor{ODS: "RJZ30", Role: "coordinator", User: user}, Purpose: "direct-care", Method: "ListReferrals",
			At: time.Date(2026, 11, 20, 9, 0, int(seq), 0, time.UTC), RequestID: fmt.Sprint("call-", seq)}}
}

// listAccessPages pages through list with size, and returns every record
// and the number of pages.
func listAccessPages(t *testing.T, size int, list func(after spa.AccessPosition, limit int) ([]spa.AccessRecord, spa.AccessPosition, error)) ([]spa.AccessRecord, int) {
	t.Helper()
	var all []spa.AccessRecord
	var after spa.AccessPosition
	for pages := 1; ; pages++ {
		recs, next, err := list(after, size)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > size {
			t.Fatalf("page size %d: a page of %d", size, len(recs))
		}
		all = append(all, recs...)
		if next == (spa.AccessPosition{}) {
			return all, pages
		}
		after = next
	}
}

// TestAccessIndexPages: a referral's reads come in pages, oldest first,
// each once, with no empty last page when the reads fill the pages
// exactly; the other referral read by the same calls is not among them.
func TestAccessIndexPages(t *testing.T) {
	t.Parallel()
	x := openAccessIndex(t, filepath.Join(t.TempDir(), "access.db"))
	id, other := spa.ReferralIDFor("access-pages"), spa.ReferralIDFor("access-other")
	var batch []bolt.AccessEntry
	for i := range 200 {
		batch = append(batch, readBy(uint64(i+1), fmt.Sprint("user-", i), spa.Accessed{ReferralID: other, NHSNumber: "9434765870"}, spa.Accessed{ReferralID: id, NHSNumber: "9434765919"}))
	}
	if err := x.Apply(batch); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 7, 100, 200, 500} {
		recs, pages := listAccessPages(t, size, func(after spa.AccessPosition, limit int) ([]spa.AccessRecord, spa.AccessPosition, error) {
			return x.ByReferral(id, after, limit)
		})
		if want := (200 + size - 1) / size; len(recs) != 200 || pages != want {
			t.Fatalf("page size %d: %d records in %d pages, want 200 in %d", size, len(recs), pages, want)
		}
		for i, r := range recs {
			want := spa.AccessRecord{Position: spa.AccessPosition{Sequence: uint64(i + 1), Index: 1}, Access: batch[i].Access, Accessed: batch[i].Read[1]}
			if r != want {
				t.Fatalf("page size %d: record %d is %+v, want %+v", size, i, r, want)
			}
		}
	}
}

// TestAccessIndexByPatient: the reads of every referral of one patient
// are listed together, and only theirs, oldest first, one for each
// referral a call read, in pages that may end inside a call; a read whose
// patient was unknown is found by its referral only.
func TestAccessIndexByPatient(t *testing.T) {
	t.Parallel()
	x := openAccessIndex(t, filepath.Join(t.TempDir(), "access.db"))
	first, second, stranger := spa.ReferralIDFor("patient-1st"), spa.ReferralIDFor("patient-2nd"), spa.ReferralIDFor("stranger")
	const nhs = "9434765919"
	batch := []bolt.AccessEntry{
		readBy(1, "user-0", spa.Accessed{ReferralID: first, NHSNumber: nhs}),
		readBy(2, "user-1", spa.Accessed{ReferralID: stranger, NHSNumber: "9434765870"}, spa.Accessed{ReferralID: second, NHSNumber: nhs}, spa.Accessed{ReferralID: first, NHSNumber: nhs}),
		readBy(3, "user-2", spa.Accessed{ReferralID: stranger, NHSNumber: "9434765870"}),
		readBy(4, "user-3", spa.Accessed{ReferralID: first}),
		readBy(5, "user-4", spa.Accessed{ReferralID: first, NHSNumber: nhs}),
	}
	// Two batches, the second redelivered: nothing is indexed twice.
	for _, b := range [][]bolt.AccessEntry{batch[:2], batch, batch[3:]} {
		if err := x.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	if x.Applied() != 5 {
		t.Fatalf("applied %d, want 5", x.Applied())
	}
	want := []string{"user-0 " + first, "user-1 " + second, "user-1 " + first, "user-4 " + first}
	for _, size := range []int{1, 2, 3, 100} {
		recs, _ := listAccessPages(t, size, func(after spa.AccessPosition, limit int) ([]spa.AccessRecord, spa.AccessPosition, error) {
			return x.ByPatient(nhs, after, limit)
		})
		var got []string
		for _, r := range recs {
			if r.Accessed.NHSNumber != nhs {
				t.Fatalf("a read of %s in %s's list", r.Accessed.NHSNumber, nhs)
			}
			got = append(got, r.Access.Actor.User+" "+r.Accessed.ReferralID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("page size %d: the patient's reads %q, want %q", size, got, want)
		}
	}
	recs, next, err := x.ByReferral(first, spa.AccessPosition{}, 100)
	if err != nil || next != (spa.AccessPosition{}) {
		t.Fatal(next, err)
	}
	var users []string
	for _, r := range recs {
		users = append(users, r.Access.Actor.User+" "+r.Accessed.NHSNumber)
	}
	if want := []string{"user-0 " + nhs, "user-1 " + nhs, "user-3 ", "user-4 " + nhs}; !slices.Equal(users, want) {
		t.Fatalf("the referral's reads %q, want %q", users, want)
	}
	// A page token made before a record could name several referrals is a
	// sequence: the page after it starts with the next record.
	recs, _, err = x.ByReferral(first, spa.AccessPosition{Sequence: 2, Index: ^uint32(0)}, 100)
	if err != nil || len(recs) != 2 || recs[0].Position.Sequence != 4 {
		t.Fatalf("after the whole of record 2: %+v %v", recs, err)
	}
}

// TestAccessIndexKeepsItsPlace: the index is kept on file with its
// applied sequence; bound to another access log, or to one that ends
// before it, it is emptied to be built again; a reader waiting for a
// sequence is woken by the batch that applies it.
func TestAccessIndexKeepsItsPlace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "access.db")
	x, err := bolt.OpenAccessIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	id := spa.ReferralIDFor("kept")
	if reset, err := x.Bind("SPA_ACCESS created 1", 0); err != nil || reset {
		t.Fatal(reset, err)
	}
	waited := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		waited <- x.WaitFor(ctx, 2)
	}()
	if err := x.Apply([]bolt.AccessEntry{readBy(1, "a", spa.Accessed{ReferralID: id}), readBy(2, "b", spa.Accessed{ReferralID: id})}); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("waiting for sequence 2: %v", err)
	}
	x.Close()

	x = openAccessIndex(t, path)
	if x.Applied() != 2 {
		t.Fatalf("reopened at %d, want 2", x.Applied())
	}
	if reset, err := x.Bind("SPA_ACCESS created 1", 2); err != nil || reset {
		t.Fatalf("the same log: reset %t, %v", reset, err)
	}
	for _, c := range []struct {
		log  string
		last uint64
	}{{"SPA_ACCESS created 1", 1}, {"SPA_ACCESS created 2", 5}} {
		if err := x.Apply([]bolt.AccessEntry{readBy(x.Applied()+1, "c", spa.Accessed{ReferralID: id})}); err != nil {
			t.Fatal(err)
		}
		reset, err := x.Bind(c.log, c.last)
		if err != nil || !reset {
			t.Fatalf("%s ending at %d: reset %t, %v", c.log, c.last, reset, err)
		}
		recs, _, err := x.ByReferral(id, spa.AccessPosition{}, 10)
		if err != nil || len(recs) != 0 || x.Applied() != 0 {
			t.Fatalf("%s: after the reset %d records, applied %d, %v", c.log, len(recs), x.Applied(), err)
		}
	}
}

// BenchmarkAccessIndex measures a worker's access index: indexing the
// record of a 500-row board page (one transaction, as the projection
// commits a batch of one), and reading a page of 100 of one referral's, or
// one patient's, reads from an index of 100,000 reads, as ListAccess does.
func BenchmarkAccessIndex(b *testing.B) {
	rows := func(call, n int) []spa.Accessed {
		read := make([]spa.Accessed, n)
		for i := range read {
			read[i] = spa.Accessed{ReferralID: spa.ReferralIDFor(fmt.Sprint("bench-", call, "-", i)), NHSNumber: fmt.Sprintf("9%09d", call*n+i)}
		}
		return read
	}
	b.Run("index-500-row-call", func(b *testing.B) {
		x := openAccessIndex(b, filepath.Join(b.TempDir(), "access.db"))
		seq := uint64(0)
		read := rows(0, 500)
		for b.Loop() {
			seq++
			if err := x.Apply([]bolt.AccessEntry{readBy(seq, "bench", read...)}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)*500/b.Elapsed().Seconds(), "rows/s")
	})
	x := openAccessIndex(b, filepath.Join(b.TempDir(), "access.db"))
	id, nhs := spa.ReferralIDFor("bench-target"), "9434765919"
	var batch []bolt.AccessEntry
	for call := range 1000 {
		read := rows(call, 100)
		if call%5 == 0 {
			read[50] = spa.Accessed{ReferralID: id, NHSNumber: nhs}
		}
		batch = append(batch, readBy(uint64(call+1), "bench", read...))
		if len(batch) == 100 {
			if err := x.Apply(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	for _, c := range []struct {
		name string
		list func(after spa.AccessPosition, limit int) ([]spa.AccessRecord, spa.AccessPosition, error)
	}{
		{"page-of-100-by-referral", func(after spa.AccessPosition, limit int) ([]spa.AccessRecord, spa.AccessPosition, error) {
			return x.ByReferral(id, after, limit)
		}},
		{"page-of-100-by-patient", func(after spa.AccessPosition, limit int) ([]spa.AccessRecord, spa.AccessPosition, error) {
			return x.ByPatient(nhs, after, limit)
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				recs, _, err := c.list(spa.AccessPosition{Sequence: 100}, 100)
				if err != nil || len(recs) != 100 {
					b.Fatal(len(recs), err)
				}
			}
		})
	}
}
