package spa

import "testing"

func TestCheckNHSNumber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		valid bool
	}{
		{"9434765919", true},
		{"4010232137", true},
		{"9434765918", false}, // wrong check digit
		{"1234567890", false}, // check digit would be 10
		{"0000000000", false}, // passes the arithmetic, all identical
		{"1111111111", false},
		{"943476591", false},   // 9 digits
		{"94347659190", false}, // 11 digits
		{"943476591X", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := CheckNHSNumber(tt.in) == ""; got != tt.valid {
			t.Errorf("CheckNHSNumber(%q) valid = %v, want %v (%s)", tt.in, got, tt.valid, CheckNHSNumber(tt.in))
		}
	}
	if got := FormatNHSNumber("9434765919"); got != "943 476 5919" {
		t.Errorf("FormatNHSNumber = %q", got)
	}
}

func TestIsODSCode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"RH802": true, "VLAXL": true, "A": true, "ABCDEFGH9": true,
		"": false, "ABCDEFGH90": false, "rh802": false, "RH 802": false, "RH-802": false,
	} {
		if got := IsODSCode(in); got != want {
			t.Errorf("IsODSCode(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestReferralIDFor(t *testing.T) {
	t.Parallel()
	a, b := ReferralIDFor("7f8c2a5e-request-1"), ReferralIDFor("7f8c2a5e-request-2")
	if a == b {
		t.Fatalf("different request ids gave the same referral id %s", a)
	}
	if a != ReferralIDFor("7f8c2a5e-request-1") {
		t.Fatal("ReferralIDFor is not deterministic")
	}
	for _, id := range []string{a, b} {
		if !IsReferralID(id) {
			t.Errorf("IsReferralID(%q) = false", id)
		}
	}
	for _, bad := range []string{"", "ref-", "ref-abc", "REF-7BTV6DKKQ64Y5TEP", "ref-7btv6dkkq64y5te1", "spa.referral.x"} {
		if IsReferralID(bad) {
			t.Errorf("IsReferralID(%q) = true", bad)
		}
	}
}

func TestNormalisePostcode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"br13jh": "BR1 3JH", " BR1 3JH ": "BR1 3JH", "da14 6lt": "DA14 6LT", "SW1A1AA": "SW1A 1AA"} {
		if got := normalisePostcode(in); got != want {
			t.Errorf("normalisePostcode(%q) = %q, want %q", in, got, want)
		}
	}
}
