package spa

import (
	"math"
	"testing"
)

// TestAccessPageTokens: an access log page token names a record and a
// referral in it, for its own query only; a token made before a record
// could name several referrals (a sequence) still reads, as the whole of
// that record.
func TestAccessPageTokens(t *testing.T) {
	t.Parallel()
	byReferral := AccessQuery{ReferralID: ReferralIDFor("tokens")}
	byPatient := AccessQuery{NHSNumber: "9434765919"}
	pos := AccessPosition{Sequence: 70000, Index: 499}
	q := byReferral
	q.PageToken = byReferral.NextPageToken(pos)
	if _, after, err := q.Validate(); err != nil || after != pos {
		t.Fatalf("a token of %+v reads as %+v, %v", pos, after, err)
	}
	q.PageToken = seqPageToken(byReferral.key(), 70000)
	if _, after, err := q.Validate(); err != nil || after != (AccessPosition{Sequence: 70000, Index: math.MaxUint32}) {
		t.Fatalf("a sequence token reads as %+v, %v", after, err)
	}
	if byReferral.NextPageToken(AccessPosition{}) != "" {
		t.Fatal("a token for no next page")
	}
	for name, token := range map[string]string{
		"another query's": byPatient.NextPageToken(pos),
		"of 4 bytes":      PageToken(byReferral.key(), []byte{1, 2, 3, 4}),
		"not a token":     "nonsense!",
	} {
		q.PageToken = token
		if _, _, err := q.Validate(); KindOf(err) != KindInvalid {
			t.Errorf("%s token: %v, want invalid", name, err)
		}
	}
}
