package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/jetstream/jetstreamtest"
	"spa/internal/spa"
)

// page returns n referrals read together, as a board page returns them,
// every third of an unknown patient.
func page(n int) []spa.Accessed {
	read := make([]spa.Accessed, n)
	for i := range read {
		read[i] = spa.Accessed{ReferralID: spa.ReferralIDFor(fmt.Sprint("page-", i))}
		if i%3 != 0 {
			read[i].NHSNumber = fmt.Sprintf("94347659%02d", i%100)
		}
	}
	return read
}

// TestAccessRecordPerCall: each call is one message on the call subject,
// however many referrals it read, and reads back as it was recorded.
func TestAccessRecordPerCall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, access := openAccessLog(t)
	at := time.Date(2026, 11, 20, 9, 0, 0, 123, time.UTC)
	type call struct {
		Access spa.Access
		Read   []spa.Accessed
	}
	calls := []call{
		{spa.Access{Actor: spa.Actor{ODS: "RJZ30", Role: "coordinator", User: "jane"}, Purpose: "direct-care", Method: "/spa.v1.ReferralService/ListReferrals",
			At: at, CorrelationID: "ward-round", RequestID: "call-1"}, page(500)},
		{spa.Access{Actor: spa.Actor{ODS: "X26", Role: "provider"}, Purpose: "direct-care", Method: "/spa.v1.ReferralService/GetReferral",
			At: at.Add(time.Second), Refused: true, RequestID: "call-2"}, page(1)},
		{spa.Access{Actor: spa.Actor{ODS: "SPA", Role: "auditor"}, Purpose: "audit", Method: "/spa.v1.AuditService/ReplayEvents", At: at.Add(2 * time.Second)}, page(2)},
	}
	for _, c := range calls {
		if err := access.Record(ctx, c.Access, c.Read); err != nil {
			t.Fatal(err)
		}
	}
	info := streamInfo(t, js, natsjs.WithSubjectFilter(">"))
	if info.State.Msgs != 3 || info.State.Subjects[jetstream.AccessCallSubject] != 3 {
		t.Fatalf("SPA_ACCESS holds %d messages on %v after 3 calls (503 referrals); want 3, all on %s", info.State.Msgs, info.State.Subjects, jetstream.AccessCallSubject)
	}
	last, err := access.Last(ctx)
	if err != nil || last != 3 {
		t.Fatalf("last sequence %d %v, want 3", last, err)
	}
	var got []call
	err = access.Follow(ctx, 1, 10, func(b jetstream.Batch) error {
		for _, e := range b.Events {
			acc, read, err := jetstream.DecodeAccess(e)
			if err != nil {
				return err
			}
			got = append(got, call{acc, read})
		}
		if b.CaughtUp {
			return jetstream.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(calls, got); diff != "" {
		t.Fatalf("read back (-recorded +read):\n%s", diff)
	}
}

// TestDecodeOlderAccessRecords: a record of one referral, as written
// before ADR 33, reads as one call that read its subject's referral, with
// the patient it stored; a message on a subject of no access record is an
// error, not a read of nothing.
func TestDecodeOlderAccessRecords(t *testing.T) {
	t.Parallel()
	id := spa.ReferralIDFor("older")
	at := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	want := spa.Access{Actor: spa.Actor{ODS: "RJZ30", Role: "coordinator", User: "u"}, Purpose: "direct-care", Method: "GetReferral", At: at, RequestID: "r1", Refused: true}
	rec := func(nhs string) []byte {
		data, err := proto.Marshal(&spav1.AccessRecord{ReferralId: id, NhsNumber: nhs, Actor: &spav1.Actor{Ods: "RJZ30", Role: "coordinator", User: "u"},
			Purpose: "direct-care", Method: "GetReferral", At: timestamppb.New(at), RequestId: "r1", Refused: true})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, c := range []struct {
		subject string
		data    []byte
		nhs     string
	}{
		{"spa.access." + id, rec(""), ""},
		{"spa.access." + id + ".unknown", rec(""), ""},
		{"spa.access." + id + ".9434765919", rec("9434765919"), "9434765919"},
	} {
		acc, read, err := jetstream.DecodeAccess(spa.StoredEvent{Sequence: 7, Subject: c.subject, Data: c.data})
		if err != nil {
			t.Fatalf("%s: %v", c.subject, err)
		}
		if diff := cmp.Diff(want, acc); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", c.subject, diff)
		}
		if diff := cmp.Diff([]spa.Accessed{{ReferralID: id, NHSNumber: c.nhs}}, read); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", c.subject, diff)
		}
	}
	for _, subject := range []string{"spa.access." + id + ".a.b", "spa.referral." + id} {
		if _, _, err := jetstream.DecodeAccess(spa.StoredEvent{Sequence: 8, Subject: subject, Data: rec("")}); err == nil {
			t.Errorf("%s decoded as an access record", subject)
		}
	}
	if _, _, err := jetstream.DecodeAccess(spa.StoredEvent{Sequence: 9, Subject: jetstream.AccessCallSubject, Data: []byte{0xff}}); err == nil {
		t.Error("a corrupt call record decoded")
	}
}

// BenchmarkRecordPage measures recording the reads of a board page of
// 500 rows, fsync on every write as in production: before ADR 33 one
// AccessRecord per row on its referral's subject (500 appends in flight
// at once), since then one AccessCall per call.
func BenchmarkRecordPage(b *testing.B) {
	const rows = 500
	read := page(rows)
	acc := spa.Access{Actor: spa.Actor{ODS: "RJZ30", Role: "coordinator", User: "jane"}, Purpose: "direct-care",
		Method: "/spa.v1.ReferralService/ListReferrals", At: time.Now(), RequestID: "call-bench"}
	b.Run("per-referral-before", func(b *testing.B) {
		js, _ := openAccessLog(b, func(o *server.Options) { o.SyncAlways = true })
		ctx := context.Background()
		for b.Loop() {
			futures := make([]natsjs.PubAckFuture, 0, rows)
			for _, r := range read {
				data, err := proto.Marshal(&spav1.AccessRecord{ReferralId: r.ReferralID, NhsNumber: r.NHSNumber, Actor: &spav1.Actor{Ods: acc.Actor.ODS, Role: acc.Actor.Role, User: acc.Actor.User},
					Purpose: acc.Purpose, Method: acc.Method, At: timestamppb.New(acc.At), RequestId: acc.RequestID})
				if err != nil {
					b.Fatal(err)
				}
				patient := r.NHSNumber
				if patient == "" {
					patient = "unknown"
				}
				f, err := js.PublishAsync("spa.access."+r.ReferralID+"."+patient, data, natsjs.WithExpectStream(jetstream.AccessStreamName))
				if err != nil {
					b.Fatal(err)
				}
				futures = append(futures, f)
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				case <-ctx.Done():
					b.Fatal(ctx.Err())
				}
			}
		}
		report(b, js)
	})
	b.Run("per-call-after", func(b *testing.B) {
		js, access := openAccessLog(b, func(o *server.Options) { o.SyncAlways = true })
		ctx := context.Background()
		for b.Loop() {
			if err := access.Record(ctx, acc, read); err != nil {
				b.Fatal(err)
			}
		}
		report(b, js)
	})
}

// report adds a benchmark's figures per page: messages and bytes stored,
// and pages recorded a second.
func report(b *testing.B, js natsjs.JetStream) {
	b.Helper()
	info := streamInfo(b, js)
	b.ReportMetric(float64(info.State.Msgs)/float64(b.N), "msgs/page")
	b.ReportMetric(float64(info.State.Bytes)/float64(b.N), "stored-bytes/page")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
}

func streamInfo(t testing.TB, js natsjs.JetStream, opts ...natsjs.StreamInfoOpt) *natsjs.StreamInfo {
	t.Helper()
	s, err := js.Stream(context.Background(), jetstream.AccessStreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// openAccessLog is the access log of a new embedded server (adjusted by
// adjust), and a JetStream client of it.
func openAccessLog(t testing.TB, adjust ...func(*server.Options)) (natsjs.JetStream, *jetstream.AccessLog) {
	t.Helper()
	nc := jetstreamtest.Connect(t, jetstreamtest.Start(t, adjust...))
	store := jetstreamtest.Store(t, nc, jetstream.Setup{})
	access, err := store.OpenAccessLog(context.Background(), jetstream.Requirements{})
	if err != nil {
		t.Fatal(err)
	}
	return store.JetStream(), access
}
