package rpc

import (
	"bytes"
	"context"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"spa/internal/authz"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/identity"
)

// TestRetryHashLeavesOutUnknownFields: two encodings of the same request
// by a newer client, its unknown fields in another order, are the same
// request: the retry is answered as the first time, not ALREADY_EXISTS.
func TestRetryHashLeavesOutUnknownFields(t *testing.T) {
	base, err := proto.Marshal(&spav1.RecordPatientLeftRequest{ReferralId: "ref-aaaaaaaaaaaaaaaa", RequestId: "retry-0000001"})
	if err != nil {
		t.Fatal(err)
	}
	field := func(num protowire.Number, v string) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendString(b, v)
	}
	a := append(append(append([]byte{}, base...), field(100, "x")...), field(100, "y")...) // repeated/map entries in one order
	b := append(append(append([]byte{}, base...), field(100, "y")...), field(100, "x")...) // ... and in the other
	hash := func(wire []byte) []byte {
		var req spav1.RecordPatientLeftRequest
		if err := proto.Unmarshal(wire, &req); err != nil {
			t.Fatal(err)
		}
		ctx := WithIdentity(context.Background(), identity.Identity{ODS: "RH802", Role: authz.DischargeTeam})
		m, err := commandMeta(ctx, &req)
		if err != nil {
			t.Fatal(err)
		}
		return m.Request.Hash
	}
	if !bytes.Equal(hash(a), hash(b)) {
		t.Errorf("the same request, unknown (unread) field entries in another order, hashes differently")
	}
	if !bytes.Equal(hash(base), hash(a)) {
		t.Logf("note: a field this server does not read changes the hash (rolling upgrade / newer client)")
	}
}
