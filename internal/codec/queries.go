package codec

import (
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
