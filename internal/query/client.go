package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/proto"

	"spa/internal/backoff"
	spav1 "spa/internal/gen/spa/v1"
	ijs "spa/internal/jetstream"
	"spa/internal/spa"
)

// Client sends queries to whichever worker of the queue group answers.
type Client struct {
	nc *nats.Conn
}

// NewClient returns a query client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// defaultTimeout applies when the caller's context has no deadline.
const defaultTimeout = 10 * time.Second

// GetReferral asks a read model for a referral and its history.
func (c *Client) GetReferral(ctx context.Context, req *spav1.GetReferralRequest) (*spav1.GetReferralResponse, error) {
	out := new(spav1.GetReferralResponse)
	return out, c.call(ctx, SubjectGet, req, out)
}

// ListReferrals asks a read model for a page of the board.
func (c *Client) ListReferrals(ctx context.Context, req *spav1.ListReferralsRequest) (*spav1.ListReferralsResponse, error) {
	out := new(spav1.ListReferralsResponse)
	return out, c.call(ctx, SubjectList, req, out)
}

// ListProviders asks a read model for providers and their capacity.
func (c *Client) ListProviders(ctx context.Context, req *spav1.ListProvidersRequest) (*spav1.ListProvidersResponse, error) {
	out := new(spav1.ListProvidersResponse)
	return out, c.call(ctx, SubjectProviders, req, out)
}

// ListAssignments asks a read model for a provider's assignments.
func (c *Client) ListAssignments(ctx context.Context, req *spav1.ListAssignmentsRequest) (*spav1.ListAssignmentsResponse, error) {
	out := new(spav1.ListAssignmentsResponse)
	return out, c.call(ctx, SubjectAssignments, req, out)
}

// ListAccess asks an access index for a page of who read a referral's or
// a patient's data, once it has applied the access log up to sequence
// last.
func (c *Client) ListAccess(ctx context.Context, req *spav1.ListAccessRequest, last uint64) (*spav1.ListAccessResponse, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("query: encode %s: %w", SubjectAccess, err)
	}
	reply, err := c.requestWith(ctx, SubjectAccess, data, nats.Header{HeaderMinAccess: {strconv.FormatUint(last, 10)}})
	if err != nil {
		return nil, err
	}
	out := new(spav1.ListAccessResponse)
	if err := proto.Unmarshal(reply, out); err != nil {
		return nil, fmt.Errorf("query: decode %s reply: %w", SubjectAccess, err)
	}
	return out, nil
}

// ProviderFeed asks a read model for the sequences of up to limit
// referral events addressed to provider after sequence after, once it has
// applied minSequence; it returns them, oldest first, and the sequence the
// model had applied: every such event up to it is listed unless the page
// is full. Errors as for the other queries (KindOutOfRange for a
// minSequence beyond the log's end).
func (c *Client) ProviderFeed(ctx context.Context, provider string, after uint64, limit int, minSequence uint64) ([]uint64, uint64, error) {
	req, err := json.Marshal(FeedRequest{Provider: provider, After: after, Limit: limit, MinSequence: minSequence})
	if err != nil {
		return nil, 0, fmt.Errorf("query: encode %s: %w", SubjectFeed, err)
	}
	data, err := c.request(ctx, SubjectFeed, req)
	if err != nil {
		return nil, 0, err
	}
	var page FeedPage
	if err := json.Unmarshal(data, &page); err != nil {
		return nil, 0, fmt.Errorf("query: decode %s reply: %w", SubjectFeed, err)
	}
	return page.Sequences, page.Applied, nil
}

// Status asks one read model for its applied sequence.
func (c *Client) Status(ctx context.Context) (Status, error) { return c.callJSON(ctx, SubjectStatus) }

// Digest asks one read model for its digest and applied sequence.
func (c *Client) Digest(ctx context.Context) (Status, error) { return c.callJSON(ctx, SubjectDigest) }

func (c *Client) callJSON(ctx context.Context, subject string) (Status, error) {
	var st Status
	data, err := c.request(ctx, subject, nil)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("query: decode %s reply: %w", subject, err)
	}
	return st, nil
}

func (c *Client) call(ctx context.Context, subject string, in, out proto.Message) error {
	data, err := proto.Marshal(in)
	if err != nil {
		return fmt.Errorf("query: encode %s: %w", subject, err)
	}
	reply, err := c.request(ctx, subject, data)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(reply, out); err != nil {
		return fmt.Errorf("query: decode %s reply: %w", subject, err)
	}
	return nil
}

// request sends one query. The read model is told to give up waiting a
// little before the caller's deadline, so that its answer still arrives.
func (c *Client) request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	return c.requestWith(ctx, subject, data, nil)
}

// requestWith is request with headers of the query's own.
func (c *Client) requestWith(ctx context.Context, subject string, data []byte, header nats.Header) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	msg := nats.NewMsg(subject)
	msg.Data = data
	for k, v := range header {
		msg.Header[k] = v
	}
	margin := time.Until(deadline) / 10
	msg.Header.Set(HeaderWaitUntil, strconv.FormatInt(deadline.Add(-margin).UnixNano(), 10))
	reply, err := c.nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, spa.Errorf(spa.KindUnavailable, "no read model is available (spa-ctl workers shows each worker's state)")
	case errors.Is(err, context.DeadlineExceeded):
		return nil, spa.Errorf(spa.KindDeadlineExceeded, "the read model did not answer in time")
	case ijs.Retryable(err):
		return nil, &spa.Error{Kind: spa.KindUnavailable, Message: "the read models cannot be reached for the moment; retry", Cause: err}
	case err != nil:
		return nil, fmt.Errorf("query: request %s: %w", subject, err)
	}
	return replyData(reply)
}

// replyData returns a reply's data, or the error its micro error headers
// carry, as a *spa.Error of the matching kind.
func replyData(reply *nats.Msg) ([]byte, error) {
	code := reply.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return reply.Data, nil
	}
	kind, ok := map[string]spa.Kind{
		CodeInvalid: spa.KindInvalid, CodeNotFound: spa.KindNotFound, CodeConflict: spa.KindFailedPrecondition,
		CodeTooLarge: spa.KindTooLarge, CodeOutOfRange: spa.KindOutOfRange, CodeUnavailable: spa.KindUnavailable,
		CodeDeadline: spa.KindDeadlineExceeded,
	}[code]
	if !ok {
		return nil, fmt.Errorf("query: %s answered %s: %s", reply.Subject, code, reply.Header.Get(micro.ErrorHeader))
	}
	return nil, spa.Errorf(kind, "%s", reply.Header.Get(micro.ErrorHeader))
}

// Workers asks every worker for its status: it collects the answers that
// arrive within window of the first (or of the last, while more arrive),
// asking again with backoff, until ctx ends, while none answers at all
// (right after a failover, workers may still be reconnecting).
func (c *Client) Workers(ctx context.Context, window time.Duration) ([]WorkerStatus, error) {
	r := &backoff.Retrier{Gate: backoff.NewGate("asking workers", slog.New(slog.DiscardHandler)), Max: time.Second}
	for {
		out, err := c.collect(ctx, window)
		if err != nil || len(out) > 0 {
			return out, err
		}
		if r.Failed(ctx, nil) != nil {
			return nil, spa.Errorf(spa.KindUnavailable, "no worker answered")
		}
	}
}

func (c *Client) collect(ctx context.Context, window time.Duration) ([]WorkerStatus, error) {
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("query: status: %w", err)
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(SubjectStatuses, inbox, nil); err != nil {
		return nil, fmt.Errorf("query: status: %w", err)
	}
	var out []WorkerStatus
	wait := 2 * window
	for {
		msg, err := sub.NextMsg(wait)
		if err != nil {
			return out, nil
		}
		if len(msg.Data) == 0 {
			continue // a no-responders notice
		}
		var st WorkerStatus
		if err := json.Unmarshal(msg.Data, &st); err != nil {
			return out, fmt.Errorf("query: status reply: %w", err)
		}
		out = append(out, st)
		wait = window
		if ctx.Err() != nil {
			return out, nil
		}
	}
}

// WorkerDigest asks one worker for its read model's digest.
func (c *Client) WorkerDigest(ctx context.Context, id string) (Status, error) {
	return c.callJSON(ctx, SubjectWorkerDigest(id))
}

// WorkerStatus asks one worker for its status.
func (c *Client) WorkerStatus(ctx context.Context, id string) (WorkerStatus, error) {
	return c.control(ctx, SubjectWorkerStatus(id), nil)
}

// Rebuild asks one worker to start (or, with cancel, to cancel) a rebuild
// of its read model, and returns its status. A start while one runs is a
// KindFailedPrecondition error ("busy").
func (c *Client) Rebuild(ctx context.Context, id string, cancel bool) (WorkerStatus, error) {
	req := RebuildRequest{Action: "start"}
	if cancel {
		req.Action = "cancel"
	}
	data, _ := json.Marshal(req)
	return c.control(ctx, SubjectWorkerRebuild(id), data)
}

func (c *Client) control(ctx context.Context, subject string, data []byte) (WorkerStatus, error) {
	var st WorkerStatus
	reply, err := c.request(ctx, subject, data)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(reply, &st); err != nil {
		return st, fmt.Errorf("query: decode %s reply: %w", subject, err)
	}
	return st, nil
}
