package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	spav1 "spa/internal/gen/spa/v1"
)

func TestProviderDirectory(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	providers := spav1.NewProviderServiceClient(s.conn)
	ctx := callCtx(t)

	home := &spav1.ProviderDetails{Ods: "VLAXL", Name: "Elmwood Care Home", Boroughs: []string{"Bromley", "Bexley"},
		Services: []spav1.Service{spav1.Service_SERVICE_CARE_HOME_BED, spav1.Service_SERVICE_DESIGNATED_STEP_DOWN_BED}, AcceptsInfectionPositive: true}
	reablement := &spav1.ProviderDetails{Ods: "NQR01", Name: "Bromley Reablement Team", Boroughs: []string{"Bromley"},
		Services: []spav1.Service{spav1.Service_SERVICE_HOME_CARE_REABLEMENT, spav1.Service_SERVICE_URGENT_COMMUNITY_RESPONSE}, TrustedAssessor: true}
	var last uint64
	for _, d := range []*spav1.ProviderDetails{home, reablement} {
		res, err := providers.RegisterProvider(ctx, &spav1.RegisterProviderRequest{Provider: d})
		if err != nil || res.GetUnchanged() {
			t.Fatalf("register %s: %v %v", d.GetOds(), res, err)
		}
		last = res.GetSequence()
	}
	again, err := providers.RegisterProvider(ctx, &spav1.RegisterProviderRequest{Provider: reablement})
	if err != nil || !again.GetUnchanged() || again.GetSequence() != last {
		t.Fatalf("re-register: %v %v", again, err)
	}

	asOf := timestamppb.New(time.Now().Add(-time.Minute).Truncate(time.Second))
	beds := &spav1.Capacity{Service: spav1.Service_SERVICE_CARE_HOME_BED, AvailableUnits: 2, Open: true, AsOf: asOf}
	capRes, err := providers.UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: "VLAXL", Capacity: []*spav1.Capacity{beds}})
	if err != nil {
		t.Fatal(err)
	}

	list, err := providers.ListProviders(ctx, &spav1.ListProvidersRequest{Borough: "bexley", MinSequence: capRes.GetSequence()})
	if err != nil {
		t.Fatal(err)
	}
	want := []*spav1.Provider{{
		Details: &spav1.ProviderDetails{Ods: "VLAXL", Name: "Elmwood Care Home", Boroughs: []string{"Bexley", "Bromley"},
			Services: []spav1.Service{spav1.Service_SERVICE_DESIGNATED_STEP_DOWN_BED, spav1.Service_SERVICE_CARE_HOME_BED}, AcceptsInfectionPositive: true},
		Capacity: []*spav1.Capacity{{Service: spav1.Service_SERVICE_DESIGNATED_STEP_DOWN_BED},
			{Service: beds.Service, AvailableUnits: 2, DeclaredUnits: 2, Open: true, AsOf: asOf}},
		Version: capRes.GetSequence(),
	}}
	if diff := cmp.Diff(want, list.GetProviders(), protocmp.Transform()); diff != "" {
		t.Fatalf("providers in Bexley (-want +got):\n%s", diff)
	}
	all, err := providers.ListProviders(ctx, &spav1.ListProvidersRequest{Service: spav1.Service_SERVICE_HOME_CARE_REABLEMENT})
	if err != nil || len(all.GetProviders()) != 1 || all.GetProviders()[0].GetDetails().GetOds() != "NQR01" {
		t.Fatalf("reablement providers: %v %v", all, err)
	}

	for name, call := range map[string]func() error{
		"older count": func() error {
			_, err := providers.UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: "VLAXL", Capacity: []*spav1.Capacity{
				{Service: spav1.Service_SERVICE_CARE_HOME_BED, AvailableUnits: 9, AsOf: timestamppb.New(asOf.AsTime().Add(-time.Hour))}}})
			return err
		},
		"service not offered": func() error {
			_, err := providers.UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: "NQR01", Capacity: []*spav1.Capacity{
				{Service: spav1.Service_SERVICE_HOSPICE_BED, AvailableUnits: 1, AsOf: asOf}}})
			return err
		},
	} {
		if status.Code(call()) != codes.FailedPrecondition {
			t.Errorf("%s: %v, want FailedPrecondition", name, call())
		}
	}
	if _, err := providers.UpdateCapacity(ctx, &spav1.UpdateCapacityRequest{ProviderOds: "ZZZ99", Capacity: []*spav1.Capacity{beds}}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown provider: %v", err)
	}
	if _, err := providers.RegisterProvider(ctx, &spav1.RegisterProviderRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty registration: %v", err)
	}
	if _, err := providers.ListProviders(ctx, &spav1.ListProvidersRequest{Service: 99}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown service filter: %v", err)
	}
}
