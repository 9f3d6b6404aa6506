package jetstream

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/backoff"
	spav1 "spa/internal/gen/spa/v1"
	"spa/internal/spa"
)

// The access log: its own stream. Each call that reads patient data is one
// AccessCall on AccessCallSubject naming every referral it read (ADR 33);
// the workers index the log by referral and by patient (package
// projection, bolt.AccessIndex). Records written before that are one
// AccessRecord per referral read, on spa.access.<referral id>.<NHS number>
// ("unknown" when it could not be known; spa.access.<referral id> before
// the patient was in the subject); they stay in the stream and are indexed
// alike.
const (
	AccessStreamName = "SPA_ACCESS"
	accessSubject    = "spa.access."
	// AccessCallSubject holds every call's access record. "call" is no
	// referral id, so it is told apart from the older subjects, and the
	// stream's subjects already capture it.
	AccessCallSubject = accessSubject + "call"
)

// AccessSubjects are the subjects the access log stream captures: the
// older per-referral subjects, and AccessCallSubject among them.
var AccessSubjects = []string{accessSubject + "*", accessSubject + "*.*"}

// AccessLog records every read of patient data, and is read back, in
// order, by the workers' access index. Safe for concurrent use.
type AccessLog struct {
	store  *Store
	stream jetstream.Stream
	// appends and reads log an outage once each.
	appends, reads *backoff.Gate
}

// OpenAccessLog returns the access log once its stream exists and is as
// strong as req states (with no MinReplicas, as the store's), waiting for
// it like Open.
func (s *Store) OpenAccessLog(ctx context.Context, req Requirements) (*AccessLog, error) {
	if req.MinReplicas == 0 {
		req.MinReplicas = s.minReplicas
	}
	stream, err := lookupStream(ctx, s.js, accessConfig(Setup{}), req)
	if err != nil {
		return nil, err
	}
	return &AccessLog{store: s, stream: stream, appends: backoff.NewGate("access log appends", s.log), reads: backoff.NewGate("access log reads", s.log)}, nil
}

// Record appends one access record naming every referral of read and
// returns once JetStream has acknowledged (and, by default, fsynced) it.
// The record is sent again while JetStream does not answer, with the same
// message id, so that a resend within the stream's duplicate window is
// stored once (after it, possibly twice; never lost); a failure that
// lasts is KindUnavailable.
func (l *AccessLog) Record(ctx context.Context, acc spa.Access, read []spa.Accessed) error {
	call := &spav1.AccessCall{
		Actor:   &spav1.Actor{Ods: acc.Actor.ODS, Role: acc.Actor.Role, User: acc.Actor.User},
		Purpose: acc.Purpose, Method: acc.Method, At: timestamppb.New(acc.At), Refused: acc.Refused,
		CorrelationId: acc.CorrelationID, RequestId: acc.RequestID,
		Referrals: make([]*spav1.AccessedReferral, len(read)),
	}
	for i, r := range read {
		call.Referrals[i] = &spav1.AccessedReferral{ReferralId: r.ReferralID, NhsNumber: r.NHSNumber}
	}
	data, err := proto.Marshal(call)
	if err != nil {
		return err
	}
	id := "access-" + nuid.Next()
	return l.store.do(ctx, l.appends, func(ctx context.Context) error {
		msg := nats.NewMsg(AccessCallSubject)
		msg.Data = data
		msg.Header.Set(jetstream.MsgIDHeader, id)
		if _, err := l.store.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(AccessStreamName)); err != nil {
			return fmt.Errorf("jetstream: access log: %w", err)
		}
		return nil
	})
}

// Last returns the access log's last sequence: every record acknowledged
// before the call is at or before it. Retried like Load.
func (l *AccessLog) Last(ctx context.Context) (uint64, error) {
	_, last, err := l.Identity(ctx)
	return last, err
}

// Identity names the access log (its stream, and when it was created: a
// stream recreated or restored is another log) and returns its last
// sequence; retried like Load.
func (l *AccessLog) Identity(ctx context.Context) (string, uint64, error) {
	var id string
	var last uint64
	err := l.store.do(ctx, l.reads, func(ctx context.Context) error {
		info, err := l.stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("jetstream: access log info: %w", err)
		}
		id = info.Config.Name + " created " + info.Created.UTC().Format(time.RFC3339Nano)
		last = info.State.LastSeq
		return nil
	})
	return id, last, err
}

// Follow calls fn with the access log's records from sequence from on,
// in log order, as Store.Follow does with the event log (never skipping
// one), until fn returns an error or ctx ends.
func (l *AccessLog) Follow(ctx context.Context, from uint64, batch int, fn func(Batch) error) error {
	return l.store.followStream(ctx, AccessStreamName, FollowOptions{From: from, Batch: batch, What: "access log read"}, fn)
}

// DecodeAccess returns what an access log message records: the call, and
// the referrals it read with their patients. A message of a call
// (AccessCallSubject) names all of its referrals; an older one names one,
// its subject's, with the NHS number it stored.
func DecodeAccess(e spa.StoredEvent) (spa.Access, []spa.Accessed, error) {
	if e.Subject == AccessCallSubject {
		call := new(spav1.AccessCall)
		if err := proto.Unmarshal(e.Data, call); err != nil {
			return spa.Access{}, nil, fmt.Errorf("jetstream: access record %d: %w", e.Sequence, err)
		}
		read := make([]spa.Accessed, len(call.GetReferrals()))
		for i, r := range call.GetReferrals() {
			read[i] = spa.Accessed{ReferralID: r.GetReferralId(), NHSNumber: r.GetNhsNumber()}
		}
		return accessOf(call.GetActor(), call.GetPurpose(), call.GetMethod(), call.GetAt(), call.GetRefused(), call.GetCorrelationId(), call.GetRequestId()), read, nil
	}
	tokens := strings.Split(strings.TrimPrefix(e.Subject, accessSubject), ".")
	if !strings.HasPrefix(e.Subject, accessSubject) || len(tokens) > 2 || tokens[0] == "" {
		return spa.Access{}, nil, fmt.Errorf("jetstream: access record %d: subject %s is no access log subject", e.Sequence, e.Subject)
	}
	r := new(spav1.AccessRecord)
	if err := proto.Unmarshal(e.Data, r); err != nil {
		return spa.Access{}, nil, fmt.Errorf("jetstream: access record %d: %w", e.Sequence, err)
	}
	acc := accessOf(r.GetActor(), r.GetPurpose(), r.GetMethod(), r.GetAt(), r.GetRefused(), r.GetCorrelationId(), r.GetRequestId())
	return acc, []spa.Accessed{{ReferralID: tokens[0], NHSNumber: r.GetNhsNumber()}}, nil
}

func accessOf(actor *spav1.Actor, purpose, method string, at *timestamppb.Timestamp, refused bool, correlationID, requestID string) spa.Access {
	a := spa.Access{
		Actor:   spa.Actor{ODS: actor.GetOds(), Role: actor.GetRole(), User: actor.GetUser()},
		Purpose: purpose, Method: method, Refused: refused, CorrelationID: correlationID, RequestID: requestID,
	}
	if at != nil {
		a.At = at.AsTime()
	}
	return a
}
