package rpc_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"spa/internal/authz"
)

// TestEveryMethodHasRoles: the roles table lists exactly the API's
// methods; a method missing from it would be refused to everyone, a row
// for a method the API no longer has is stale.
func TestEveryMethodHasRoles(t *testing.T) {
	var api []string
	for _, m := range methods(t) {
		api = append(api, "/"+string(m.Parent().FullName())+"/"+string(m.Name()))
	}
	slices.Sort(api)
	if diff := cmp.Diff(api, authz.Methods()); diff != "" {
		t.Fatalf("authz table against the API's methods (-api +table):\n%s", diff)
	}
}
