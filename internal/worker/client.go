package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/proto"

	spav1 "spa/internal/gen/spa/v1"
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
		return st, fmt.Errorf("worker: decode %s reply: %w", subject, err)
	}
	return st, nil
}

func (c *Client) call(ctx context.Context, subject string, in, out proto.Message) error {
	data, err := proto.Marshal(in)
	if err != nil {
		return fmt.Errorf("worker: encode %s: %w", subject, err)
	}
	reply, err := c.request(ctx, subject, data)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(reply, out); err != nil {
		return fmt.Errorf("worker: decode %s reply: %w", subject, err)
	}
	return nil
}

// request sends one query. The read model is told to give up waiting a
// little before the caller's deadline, so that its answer still arrives.
func (c *Client) request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	msg := nats.NewMsg(subject)
	msg.Data = data
	margin := time.Until(deadline) / 10
	msg.Header.Set(headerWaitUntil, strconv.FormatInt(deadline.Add(-margin).UnixNano(), 10))
	reply, err := c.nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, spa.Errorf(spa.KindUnavailable, "no read model is available")
	case errors.Is(err, context.DeadlineExceeded):
		return nil, spa.Errorf(spa.KindDeadlineExceeded, "the read model did not answer in time")
	case err != nil:
		return nil, fmt.Errorf("worker: request %s: %w", subject, err)
	}
	switch code := reply.Header.Get(micro.ErrorCodeHeader); code {
	case "":
		return reply.Data, nil
	case codeInvalid:
		return nil, spa.Errorf(spa.KindInvalid, "%s", reply.Header.Get(micro.ErrorHeader))
	case codeNotFound:
		return nil, spa.Errorf(spa.KindNotFound, "%s", reply.Header.Get(micro.ErrorHeader))
	case codeDeadline:
		return nil, spa.Errorf(spa.KindDeadlineExceeded, "%s", reply.Header.Get(micro.ErrorHeader))
	default:
		return nil, fmt.Errorf("worker: %s answered %s: %s", subject, code, reply.Header.Get(micro.ErrorHeader))
	}
}

// Rebuild asks every worker to rebuild its read model while serving, and
// returns the answers that arrive before ctx ends or want have arrived.
func (c *Client) Rebuild(ctx context.Context, want int) ([]Rebuilt, error) {
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("worker: rebuild: %w", err)
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(SubjectRebuild, inbox, nil); err != nil {
		return nil, fmt.Errorf("worker: rebuild: %w", err)
	}
	var out []Rebuilt
	for len(out) < want {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if len(out) == 0 {
				return nil, spa.Errorf(spa.KindUnavailable, "no worker answered the rebuild request")
			}
			return out, nil
		}
		var r Rebuilt
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			return out, fmt.Errorf("worker: rebuild reply: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}
