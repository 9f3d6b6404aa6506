package jetstream

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"spa/internal/spa"
)

// Retryable reports whether err is a failure that passes by itself: no
// responders or no answer (a stream or consumer leader being elected, a
// node restarting), a lost connection that is being re-established, or
// JetStream reporting itself temporarily unavailable (any 5xx API error,
// "insufficient resources" among them).
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var apiErr *jetstream.APIError
	var marked *retryableError
	if errors.As(err, &apiErr) && apiErr.Code >= 500 || errors.As(err, &marked) {
		return true
	}
	for _, target := range []error{
		nats.ErrNoResponders, jetstream.ErrNoStreamResponse, nats.ErrTimeout, context.DeadlineExceeded,
		nats.ErrDisconnected, nats.ErrConnectionReconnecting, nats.ErrNoServers, jetstream.ErrJetStreamNotEnabled,
		jetstream.ErrNoHeartbeat, jetstream.ErrConsumerDeleted, nats.ErrSlowConsumer,
		jetstream.ErrAsyncPublishTimeout, jetstream.ErrTooManyStalledMsgs,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var de *spa.Error
	return errors.As(err, &de) && de.Kind == spa.KindUnavailable
}

// unavailable turns a retryable failure into the domain's KindUnavailable
// (gRPC UNAVAILABLE: the client may retry the same request), and returns
// any other error, or any error once ctx has ended, as it is.
func unavailable(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || !Retryable(err) {
		return err
	}
	var de *spa.Error
	if errors.As(err, &de) {
		return err
	}
	return &spa.Error{Kind: spa.KindUnavailable, Message: "the event log is unavailable for the moment (a leader election or a lost connection); retry the same request", Cause: err}
}
