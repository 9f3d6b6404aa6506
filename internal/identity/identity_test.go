package identity_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"

	"spa/internal/authz"
	"spa/internal/identity"
)

func TestFromCertificate(t *testing.T) {
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	team := identity.Identity{ODS: "RJZ30", Role: authz.DischargeTeam, User: "jane.smith"}
	if got := team.URI().String(); got != "urn:spa:identity:RJZ30:discharge-team" {
		t.Fatalf("URI %s", got)
	}
	for _, c := range []struct {
		name string
		uris []*url.URL
		want string // an error containing this; "" for team
	}{
		{"the identity", []*url.URL{uri("https://example.org/x"), team.URI()}, ""},
		{"none", []*url.URL{uri("https://example.org/x")}, "has no urn:spa:identity"},
		{"two", []*url.URL{team.URI(), uri("urn:spa:identity:X26:auditor")}, "has 2 identity URIs"},
		{"no role", []*url.URL{uri("urn:spa:identity:RJZ30")}, "want urn:spa:identity:<ODS>:<role>"},
		{"unknown role", []*url.URL{uri("urn:spa:identity:RJZ30:superuser")}, `role "superuser" is not one of`},
		{"not an ODS code", []*url.URL{uri("urn:spa:identity:rjz30:provider")}, "is not an ODS code"},
		{"a user that would forge a log line", []*url.URL{team.URI()}, "control characters"},
	} {
		cn := "jane.smith"
		if strings.HasPrefix(c.name, "a user that") {
			cn = "jane\nlevel=ERROR forged=1"
		}
		got, err := identity.FromCertificate(&x509.Certificate{Subject: pkix.Name{CommonName: cn}, URIs: c.uris})
		switch {
		case c.want == "" && (err != nil || got != team):
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, team)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v; want an error with %q", c.name, err, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	for s, want := range map[string]identity.Identity{
		"HOS10/provider":         {ODS: "HOS10", Role: authz.Provider},
		"SPA/auditor/jane.smith": {ODS: "SPA", Role: authz.Auditor, User: "jane.smith"},
		"SPA/admin/a/b (with /)": {ODS: "SPA", Role: authz.Admin, User: "a/b (with /)"},
	} {
		if got, err := identity.Parse(s); err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "HOS10", "HOS10/", "hos10/provider", "HOS10/owner", "/provider"} {
		if _, err := identity.Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}
