package rpc

import (
	"context"

	"spa/internal/app"
	"spa/internal/codec"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// Referrals implements spav1.ReferralServiceServer on the application.
type Referrals struct {
	spav1.UnimplementedReferralServiceServer
	app *app.App
}

var _ spav1.ReferralServiceServer = (*Referrals)(nil)

// NewReferrals returns the ReferralService. Register it together with
// ErrorInterceptor, which maps its errors to status codes.
func NewReferrals(a *app.App) *Referrals { return &Referrals{app: a} }

// SubmitReferral implements spav1.ReferralServiceServer.
func (s *Referrals) SubmitReferral(ctx context.Context, req *spav1.SubmitReferralRequest) (*spav1.SubmitReferralResponse, error) {
	m, err := meta(ctx)
	if err != nil {
		return nil, err
	}
	m.OccurredAt = codec.TimeFromProto(req.GetOccurredAt())
	res, err := s.app.SubmitReferral(ctx, m, spa.SubmitReferral{RequestID: req.GetRequestId(), Details: codec.DetailsFromProto(req.GetReferral())})
	if err != nil {
		return nil, err
	}
	return &spav1.SubmitReferralResponse{ReferralId: res.ReferralID, Sequence: res.Sequence, Replayed: res.Replayed}, nil
}

// RecordCriteriaToReside implements spav1.ReferralServiceServer.
func (s *Referrals) RecordCriteriaToReside(ctx context.Context, req *spav1.RecordCriteriaToResideRequest) (*spav1.RecordCriteriaToResideResponse, error) {
	m, err := commandMeta(ctx, req)
	if err != nil {
		return nil, err
	}
	m.OccurredAt = codec.TimeFromProto(req.GetOccurredAt())
	r, seq, err := s.app.RecordCriteriaToReside(ctx, m, spa.RecordCriteriaToReside{
		ReferralID: req.GetReferralId(), CriteriaMet: codec.CriteriaFromProto(req.GetCriteriaMet()), AssessedOn: req.GetAssessedOn(),
	})
	if err != nil {
		return nil, err
	}
	return &spav1.RecordCriteriaToResideResponse{Sequence: seq, Status: spav1.ReferralStatus(r.Status), DischargeReadyDate: r.DischargeReadyDate}, nil
}

// AmendReferral implements spav1.ReferralServiceServer.
func (s *Referrals) AmendReferral(ctx context.Context, req *spav1.AmendReferralRequest) (*spav1.AmendReferralResponse, error) {
	m, err := commandMeta(ctx, req)
	if err != nil {
		return nil, err
	}
	m.OccurredAt = codec.TimeFromProto(req.GetOccurredAt())
	seq, unchanged, err := s.app.AmendReferral(ctx, m, spa.AmendReferral{
		ReferralID: req.GetReferralId(), Details: codec.ChangesFromProto(req.GetChanges()), Paths: req.GetUpdateMask().GetPaths(), Reason: req.GetReason(),
	})
	if err != nil {
		return nil, err
	}
	return &spav1.AmendReferralResponse{Sequence: seq, Unchanged: unchanged}, nil
}

// RecordInfectionTest implements spav1.ReferralServiceServer.
func (s *Referrals) RecordInfectionTest(ctx context.Context, req *spav1.RecordInfectionTestRequest) (*spav1.RecordInfectionTestResponse, error) {
	m, err := commandMeta(ctx, req)
	if err != nil {
		return nil, err
	}
	var test spa.InfectionTest
	if t := codec.TestFromProto(req.GetTest()); t != nil {
		test = *t
	}
	m.OccurredAt = codec.TimeFromProto(req.GetOccurredAt())
	seq, err := s.app.RecordInfectionTest(ctx, m, spa.RecordInfectionTest{ReferralID: req.GetReferralId(), Test: test})
	if err != nil {
		return nil, err
	}
	return &spav1.RecordInfectionTestResponse{Sequence: seq}, nil
}

// WithdrawReferral implements spav1.ReferralServiceServer.
func (s *Referrals) WithdrawReferral(ctx context.Context, req *spav1.WithdrawReferralRequest) (*spav1.WithdrawReferralResponse, error) {
	seq, err := command(ctx, req, s.app.WithdrawReferral, spa.WithdrawReferral{
		ReferralID: req.GetReferralId(), Reason: spa.WithdrawalReason(req.GetReason()), Note: req.GetNote(),
	})
	return &spav1.WithdrawReferralResponse{Sequence: seq}, err
}

// HoldReferral implements spav1.ReferralServiceServer.
func (s *Referrals) HoldReferral(ctx context.Context, req *spav1.HoldReferralRequest) (*spav1.HoldReferralResponse, error) {
	seq, err := command(ctx, req, s.app.HoldReferral, spa.HoldReferral{ReferralID: req.GetReferralId(), Reason: spa.HoldReason(req.GetReason()), Note: req.GetNote()})
	return &spav1.HoldReferralResponse{Sequence: seq}, err
}

// ReleaseHold implements spav1.ReferralServiceServer.
func (s *Referrals) ReleaseHold(ctx context.Context, req *spav1.ReleaseHoldRequest) (*spav1.ReleaseHoldResponse, error) {
	seq, err := command(ctx, req, s.app.ReleaseHold, spa.ReleaseHold{ReferralID: req.GetReferralId(), Note: req.GetNote()})
	return &spav1.ReleaseHoldResponse{Sequence: seq}, err
}

// RecordPatientLeft implements spav1.ReferralServiceServer.
func (s *Referrals) RecordPatientLeft(ctx context.Context, req *spav1.RecordPatientLeftRequest) (*spav1.RecordPatientLeftResponse, error) {
	seq, err := command(ctx, req, s.app.RecordPatientLeft, spa.RecordPatientLeft{ReferralID: req.GetReferralId(), LeftAt: codec.TimeFromProto(req.GetLeftAt())})
	return &spav1.RecordPatientLeftResponse{Sequence: seq}, err
}

// GetReferral implements spav1.ReferralServiceServer.
func (s *Referrals) GetReferral(ctx context.Context, req *spav1.GetReferralRequest) (*spav1.GetReferralResponse, error) {
	return query(ctx, s.app.GetReferral, req)
}

// ListReferrals implements spav1.ReferralServiceServer.
func (s *Referrals) ListReferrals(ctx context.Context, req *spav1.ListReferralsRequest) (*spav1.ListReferralsResponse, error) {
	return query(ctx, s.app.ListReferrals, req)
}

// command runs a command that answers with a sequence, as the caller in
// the request metadata, with req's request id.
func command[C any](ctx context.Context, req retryable, run func(context.Context, app.Meta, C) (uint64, error), c C) (uint64, error) {
	m, err := commandMeta(ctx, req)
	if err != nil {
		return 0, err
	}
	return run(ctx, m, c)
}
