package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/authz"
	"spa/internal/await"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/referraltest"
	"spa/internal/rpc"
)

// listAccess pages through ListAccess with req, and returns every record.
// A server just started may answer UNAVAILABLE until its worker's access
// index has caught up: that is asked again.
func listAccess(t *testing.T, audit spav1.AuditServiceClient, req *spav1.ListAccessRequest) []*spav1.AccessRecord {
	t.Helper()
	var all []*spav1.AccessRecord
	for {
		var res *spav1.ListAccessResponse
		var err error
		await.True(t, 30*time.Second, "the access index answers", func() bool {
			res, err = audit.ListAccess(callCtx(t), req)
			return status.Code(err) != codes.Unavailable
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(res.GetRecords()); req.GetPageSize() > 0 && n > int(req.GetPageSize()) {
			t.Fatalf("a page of %d records, asked for %d", n, req.GetPageSize())
		}
		all = append(all, res.GetRecords()...)
		if req.PageToken = res.GetNextPageToken(); req.PageToken == "" {
			return all
		}
	}
}

// TestAccessRecordPerCall: a board page of many rows is one access record
// in SPA_ACCESS, written before the page is returned, and ListAccess
// finds the read under each referral and each patient of the page, a
// record per referral, as it finds a GetReferral and a refused one.
func TestAccessRecordPerCall(t *testing.T) {
	t.Parallel()
	natsURL := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dir := t.TempDir()
	s := startServer(t, "--data-dir", dir, "--scheduler=false", "--nats-listen", natsURL)
	ctx := callCtx(t)
	audit := spav1.NewAuditServiceClient(s.conn)
	opts, err := natsauth.Client{Identity: natsauth.Auditor, NkeyFile: natsauth.SeedFile(filepath.Join(dir, "nats"), natsauth.Auditor)}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+natsURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	accessMsgs := func() uint64 {
		t.Helper()
		st, err := js.Stream(ctx, jetstream.AccessStreamName)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.Msgs
	}

	const rows = 60
	var token uint64
	patients := map[string]string{} // referral id -> NHS number
	for i := range rows {
		d := referraltest.Details(700 + i)
		sub, err := s.client.SubmitReferral(ctx, &spav1.SubmitReferralRequest{RequestId: fmt.Sprint("per-call-", i), Referral: d})
		if err != nil {
			t.Fatal(err)
		}
		token = max(token, sub.GetSequence())
		patients[sub.GetReferralId()] = d.GetPatient().GetNhsNumber()
	}
	before := accessMsgs()
	board := metadata.AppendToOutgoingContext(ctx, "x-request-id", "board-of-60")
	page, err := s.client.ListReferrals(board, &spav1.ListReferralsRequest{PageSize: 500, MinSequence: token})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetReferrals()) != rows {
		t.Fatalf("a board of %d rows, want %d", len(page.GetReferrals()), rows)
	}
	if after := accessMsgs(); after != before+1 {
		t.Fatalf("a board page of %d rows added %d access records, want 1", rows, after-before)
	}

	// Every row's referral, and its patient, lists the board's read.
	for _, r := range page.GetReferrals() {
		id := r.GetReferralId()
		for _, req := range []*spav1.ListAccessRequest{{ReferralId: id}, {NhsNumber: patients[id]}} {
			recs := listAccess(t, audit, req)
			if len(recs) != 1 || recs[0].GetRequestId() != "board-of-60" || recs[0].GetReferralId() != id || recs[0].GetNhsNumber() != patients[id] ||
				recs[0].GetMethod() != "/spa.v1.ReferralService/ListReferrals" || recs[0].GetActor().GetRole() != string(authz.Coordinator) || recs[0].GetRefused() {
				t.Fatalf("%v lists %v; want the board's read of %s", req, recs, id)
			}
		}
	}

	// Three reads of one referral and a refused one: five records in
	// pages of two, oldest first.
	id := page.GetReferrals()[7].GetReferralId()
	for i := range 3 {
		if _, err := s.client.GetReferral(metadata.AppendToOutgoingContext(ctx, "x-request-id", fmt.Sprint("get-read-", i)), &spav1.GetReferralRequest{ReferralId: id}); err != nil {
			t.Fatal(err)
		}
	}
	stranger := metadata.AppendToOutgoingContext(ctx, rpc.MetadataActorODS, "RJ224", rpc.MetadataActorRole, string(authz.DischargeTeam),
		rpc.MetadataPurpose, "direct-care", "x-request-id", "stranger")
	if _, err := s.client.GetReferral(stranger, &spav1.GetReferralRequest{ReferralId: id}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("another site's team reading the referral: %v, want PERMISSION_DENIED", err)
	}
	for _, req := range []*spav1.ListAccessRequest{{ReferralId: id, PageSize: 2}, {NhsNumber: patients[id], PageSize: 2}} {
		var got []string
		for _, r := range listAccess(t, audit, req) {
			got = append(got, fmt.Sprintf("%s/%s/%t", r.GetRequestId(), r.GetActor().GetOds(), r.GetRefused()))
		}
		if want := []string{"board-of-60/SPA/false", "get-read-0/SPA/false", "get-read-1/SPA/false", "get-read-2/SPA/false", "stranger/RJ224/true"}; !slices.Equal(got, want) {
			t.Errorf("%v: %q, want %q", req, got, want)
		}
	}
}

// TestOlderAccessRecordsListed: records the access log kept before ADR 33
// (one per referral, on the referral's subject) are listed after the
// upgrade, by referral and by patient, before the reads made since.
func TestOlderAccessRecordsListed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, "--data-dir", dir, "--scheduler=false")
	sub, err := s.client.SubmitReferral(callCtx(t), &spav1.SubmitReferralRequest{RequestId: "older-records", Referral: referraltest.Details(801)})
	if err != nil {
		t.Fatal(err)
	}
	id, nhs := sub.GetReferralId(), referraltest.NHSNumber(801)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	// What the previous version wrote: a record without the patient in
	// its subject, and one with it.
	emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := emb.Connect("older-version")
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UTC()
	for i, subject := range []string{"spa.access." + id, "spa.access." + id + "." + nhs} {
		r := &spav1.AccessRecord{ReferralId: id, Actor: &spav1.Actor{Ods: "RJZ30", Role: "coordinator", User: fmt.Sprint("older-", i)},
			Purpose: "direct-care", Method: "/spa.v1.ReferralService/GetReferral", At: timestamppb.New(at), RequestId: fmt.Sprint("older-", i)}
		if i == 1 {
			r.NhsNumber = nhs
		}
		data, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(context.Background(), subject, data, natsjs.WithExpectStream(jetstream.AccessStreamName)); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	emb.Shutdown()

	s = startServer(t, "--data-dir", dir, "--scheduler=false")
	if _, err := s.client.GetReferral(metadata.AppendToOutgoingContext(callCtx(t), "x-request-id", "read-since"), &spav1.GetReferralRequest{ReferralId: id}); err != nil {
		t.Fatal(err)
	}
	audit := spav1.NewAuditServiceClient(s.conn)
	for _, c := range []struct {
		req  *spav1.ListAccessRequest
		want []string
	}{
		{&spav1.ListAccessRequest{ReferralId: id, PageSize: 1}, []string{"older-0 " + id + " ", "older-1 " + id + " " + nhs, "read-since " + id + " " + nhs}},
		{&spav1.ListAccessRequest{NhsNumber: nhs}, []string{"older-1 " + id + " " + nhs, "read-since " + id + " " + nhs}},
	} {
		var got []string
		for _, r := range listAccess(t, audit, c.req) {
			got = append(got, r.GetRequestId()+" "+r.GetReferralId()+" "+r.GetNhsNumber())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%v: %q, want %q", c.req, got, c.want)
		}
	}
}
