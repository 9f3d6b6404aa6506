package app

import (
	"context"

	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// ListAssignments returns a provider's assignments from the read model.
func (a *App) ListAssignments(ctx context.Context, req *spav1.ListAssignmentsRequest) (*spav1.ListAssignmentsResponse, error) {
	if err := spa.ValidateAssignmentQuery(req.GetProviderOds(), spa.TaskStatus(req.GetStatus())); err != nil {
		return nil, err
	}
	return a.reads.ListAssignments(ctx, req)
}
