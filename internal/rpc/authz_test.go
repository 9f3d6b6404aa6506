package rpc_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"spa/internal/authz"
	"spa/internal/spa"
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

// TestNoHandlerRunsForNobody: a handler reached without a verified
// identity (a server built without Auth) answers UNAUTHENTICATED and
// does nothing, for every method.
func TestNoHandlerRunsForNobody(t *testing.T) {
	x := newAPI(t)
	valid := validRequests()
	for _, m := range methods(t) {
		req, ok := valid[m.FullName()]
		if !ok {
			req = newRequest(t, m)
		}
		var de *spa.Error
		if err := x.handle(t, context.Background(), m, req); !errors.As(err, &de) || de.Kind != spa.KindUnauthenticated {
			t.Errorf("%s without an identity: %v; want unauthenticated", m.FullName(), err)
		}
	}
}
