package rpc

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"spa/internal/app"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// Assignments implements spav1.AssignmentServiceServer on the application.
type Assignments struct {
	spav1.UnimplementedAssignmentServiceServer
	app       *app.App
	heartbeat time.Duration
	stopping  <-chan struct{}
}

var _ spav1.AssignmentServiceServer = (*Assignments)(nil)

// NewAssignments returns the AssignmentService; watchers get a heartbeat
// every heartbeat without events, and when stopping closes (the server is
// shutting down) their streams end with UNAVAILABLE, so that they resume
// from their cursor elsewhere. Register it together with the error
// interceptors.
func NewAssignments(a *app.App, heartbeat time.Duration, stopping <-chan struct{}) *Assignments {
	return &Assignments{app: a, heartbeat: heartbeat, stopping: stopping}
}

// WatchAssignments implements spav1.AssignmentServiceServer.
func (s *Assignments) WatchAssignments(req *spav1.WatchAssignmentsRequest, stream grpc.ServerStreamingServer[spav1.WatchAssignmentsResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	m, err := meta(ctx)
	if err != nil {
		return err
	}
	err = s.app.WatchAssignments(ctx, m, req.GetProviderOds(), req.GetAfterSequence(), s.heartbeat, func(e spa.StoredEvent) error {
		if e.Data == nil {
			return stream.Send(&spav1.WatchAssignmentsResponse{Cursor: e.Sequence, Heartbeat: true})
		}
		return stream.Send(&spav1.WatchAssignmentsResponse{Cursor: e.Sequence, Event: storedEvent(e, false)})
	})
	select {
	case <-s.stopping:
		return status.Error(codes.Unavailable, "the server is shutting down; resume from your last cursor")
	default:
		return err
	}
}

func (s *Assignments) transition(ctx context.Context, req retryable, id string, to spa.TaskStatus, reason string) (uint64, error) {
	return command(ctx, req, s.app.TransitionAssignment, spa.TransitionAssignment{AssignmentID: id, To: to, Reason: reason})
}

// AcceptOffer implements spav1.AssignmentServiceServer.
func (s *Assignments) AcceptOffer(ctx context.Context, req *spav1.AcceptOfferRequest) (*spav1.AcceptOfferResponse, error) {
	seq, err := s.transition(ctx, req, req.GetAssignmentId(), spa.TaskAccepted, "")
	return &spav1.AcceptOfferResponse{Sequence: seq}, err
}

// DeclineOffer implements spav1.AssignmentServiceServer.
func (s *Assignments) DeclineOffer(ctx context.Context, req *spav1.DeclineOfferRequest) (*spav1.DeclineOfferResponse, error) {
	seq, err := s.transition(ctx, req, req.GetAssignmentId(), spa.TaskRejected, req.GetReason())
	return &spav1.DeclineOfferResponse{Sequence: seq}, err
}

// StartCare implements spav1.AssignmentServiceServer.
func (s *Assignments) StartCare(ctx context.Context, req *spav1.StartCareRequest) (*spav1.StartCareResponse, error) {
	seq, err := s.transition(ctx, req, req.GetAssignmentId(), spa.TaskInProgress, "")
	return &spav1.StartCareResponse{Sequence: seq}, err
}

// CompleteAssignment implements spav1.AssignmentServiceServer.
func (s *Assignments) CompleteAssignment(ctx context.Context, req *spav1.CompleteAssignmentRequest) (*spav1.CompleteAssignmentResponse, error) {
	seq, err := s.transition(ctx, req, req.GetAssignmentId(), spa.TaskCompleted, "")
	return &spav1.CompleteAssignmentResponse{Sequence: seq}, err
}

// UpdateAssignmentStatus implements spav1.AssignmentServiceServer.
func (s *Assignments) UpdateAssignmentStatus(ctx context.Context, req *spav1.UpdateAssignmentStatusRequest) (*spav1.UpdateAssignmentStatusResponse, error) {
	seq, err := s.transition(ctx, req, req.GetAssignmentId(), spa.TaskStatus(req.GetStatus()), req.GetReason())
	return &spav1.UpdateAssignmentStatusResponse{Sequence: seq}, err
}

// ListAssignments implements spav1.AssignmentServiceServer.
func (s *Assignments) ListAssignments(ctx context.Context, req *spav1.ListAssignmentsRequest) (*spav1.ListAssignmentsResponse, error) {
	return query(ctx, s.app.ListAssignments, req)
}
