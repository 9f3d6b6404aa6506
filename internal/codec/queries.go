package codec

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// ProviderQueryFromProto converts a provider directory query.
func ProviderQueryFromProto(req *spav1.ListProvidersRequest) spa.ProviderQuery {
	return spa.ProviderQuery{Borough: req.GetBorough(), Service: spa.Service(req.GetService()), PageSize: req.GetPageSize(), PageToken: req.GetPageToken()}
}

// AssignmentQueryFromProto converts an assignment list query.
func AssignmentQueryFromProto(req *spav1.ListAssignmentsRequest) spa.AssignmentQuery {
	return spa.AssignmentQuery{ProviderODS: req.GetProviderOds(), Status: spa.TaskStatus(req.GetStatus()), PageSize: req.GetPageSize(), PageToken: req.GetPageToken()}
}

// AccessQueryFromProto converts an access log query.
func AccessQueryFromProto(req *spav1.ListAccessRequest) spa.AccessQuery {
	return spa.AccessQuery{ReferralID: req.GetReferralId(), NHSNumber: req.GetNhsNumber(), PageSize: req.GetPageSize(), PageToken: req.GetPageToken()}
}

// AccessQueryToProto converts an access log query for the access index.
func AccessQueryToProto(q spa.AccessQuery) *spav1.ListAccessRequest {
	return &spav1.ListAccessRequest{ReferralId: q.ReferralID, NhsNumber: q.NHSNumber, PageSize: q.PageSize, PageToken: q.PageToken}
}

// AccessRecordToProto converts one referral's read as the access log
// lists it.
func AccessRecordToProto(r spa.AccessRecord) *spav1.AccessRecord {
	a := r.Access
	return &spav1.AccessRecord{
		ReferralId: r.Accessed.ReferralID, NhsNumber: r.Accessed.NHSNumber,
		Actor:   &spav1.Actor{Ods: a.Actor.ODS, Role: a.Actor.Role, User: a.Actor.User},
		Purpose: a.Purpose, Method: a.Method, At: timestamppb.New(a.At), Refused: a.Refused,
		CorrelationId: a.CorrelationID, RequestId: a.RequestID,
	}
}
