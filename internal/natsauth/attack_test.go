package natsauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"spa/internal/await"
	"spa/internal/codec"
	"spa/internal/jetstream"
	"spa/internal/natsauth"
	"spa/internal/query"
	"spa/internal/spa"
)

// patientName is in the one referral on the bus, and nowhere else.
const patientName = "Quillfeather"

// bus is a locked NATS with SPA's assets, one referral of patientName
// appended by the server identity and one read of it in the access log.
type bus struct {
	url string
	// tls are the options every client needs, whoever it is: TLS on the
	// cluster.
	tls []nats.Option
	// as returns the options that connect as id: its seed, and tls.
	as       func(id natsauth.Identity) []nats.Option
	referral string
	// last is the referral's last event, which a forgery links to.
	last *natsjs.RawStreamMsg
}

// TestEmbeddedIsLocked runs the attacks on the all-in-one mode's embedded
// server, started as spa-server starts it, with --nats-listen.
func TestEmbeddedIsLocked(t *testing.T) {
	t.Parallel()
	attack(t, embeddedBus(t))
}

func TestEmbeddedRefusesAnonymousListener(t *testing.T) {
	t.Parallel()
	_, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "anonymous") {
		t.Fatalf("listening without users: %v, want a refusal", err)
	}
}

// setUp provisions SPA's assets as admin (retrying while a new cluster
// elects its leaders) and appends, as the server, a referral of
// patientName and a read of it.
func setUp(t *testing.T, url string, replicas int, tls []nats.Option, as func(natsauth.Identity) []nats.Option) *bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := mustConnect(t, url, as(natsauth.Admin))
	var perr error
	await.True(t, time.Minute, "provisioned", func() bool {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, perr = jetstream.Provision(actx, admin.nc, jetstream.Setup{Replicas: replicas})
		return perr == nil
	})
	srv := mustConnect(t, url, as(natsauth.Server))
	store, err := jetstream.Open(ctx, srv.nc, jetstream.Requirements{MinReplicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	id := spa.ReferralIDFor("request-locked-bus")
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	details := spa.Details{Patient: spa.Patient{NHSNumber: "9434765919", GivenName: "Zebedee", FamilyName: patientName}}
	rec := spa.Record{EventID: "evt-" + id + "-submitted", AggregateID: id, OccurredAt: at, RecordedAt: at,
		Actor: spa.Actor{ODS: "RH802", Role: "discharge-coordinator", User: "u1"}, CausationID: "c1", CorrelationID: "k1",
		Event: spa.ReferralSubmitted{RequestID: "request-locked-bus", Details: details, DischargeReadyDate: "2026-11-21"}}
	if _, err := store.Append(ctx, rec, 0); err != nil {
		t.Fatal(err)
	}
	access, err := store.OpenAccessLog(ctx, jetstream.Requirements{MinReplicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	if err := access.Record(ctx, spa.Access{Actor: rec.Actor, Purpose: "direct-care", Method: "GetReferral", At: at}, []spa.Accessed{{ReferralID: id, NHSNumber: details.Patient.NHSNumber}}); err != nil {
		t.Fatal(err)
	}
	last, err := store.Stream().GetLastMsgForSubject(ctx, jetstream.SubjectOf(spa.AggregateReferral, id))
	if err != nil {
		t.Fatal(err)
	}
	return &bus{url: url, tls: tls, as: as, referral: id, last: last}
}

// attack tries, as an outsider and as each identity that must not, to
// forge an event, to delete or shrink the streams, and to read patient
// data off the bus; every attempt must be refused by the server, and the
// streams must be as they were.
func attack(t *testing.T, b *bus) {
	referralSubject := jetstream.SubjectOf(spa.AggregateReferral, b.referral)
	accessSubject := "spa.access." + b.referral
	policySubject := jetstream.SubjectOf(spa.AggregatePolicy, "infection-overlay")

	t.Run("anonymous", func(t *testing.T) {
		_, err := connect(b.url, b.tls...)
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("anonymous connection: %v, want %v", err, nats.ErrAuthorization)
		}
	})
	t.Run("unknown nkey", func(t *testing.T) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		opts := append(b.tls, nats.Nkey(pub, kp.Sign))
		if _, err := connect(b.url, opts...); !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("a key the server does not know: %v, want %v", err, nats.ErrAuthorization)
		}
	})

	// Every identity but admin: no stream or shared consumer may be
	// deleted, purged or changed.
	destroy := func(t *testing.T, c *conn) {
		shrunk := `{"name":"SPA_EVENTS","subjects":["spa.referral.*"],"max_msgs":1,"storage":"file","num_replicas":1}`
		for subject, body := range map[string]string{
			"$JS.API.STREAM.DELETE." + jetstream.StreamName:                                    "",
			"$JS.API.STREAM.DELETE." + jetstream.AccessStreamName:                              "",
			"$JS.API.STREAM.DELETE.KV_" + jetstream.LeaseBucket:                                "",
			"$JS.API.STREAM.DELETE.KV_" + jetstream.StateBucket:                                "",
			"$JS.API.STREAM.UPDATE." + jetstream.StreamName:                                    shrunk,
			"$JS.API.STREAM.PURGE." + jetstream.StreamName:                                     "",
			"$JS.API.STREAM.MSG.DELETE." + jetstream.StreamName:                                `{"seq":1}`,
			"$JS.API.CONSUMER.DELETE." + jetstream.StreamName + "." + jetstream.RouterConsumer: "",
		} {
			c.request(t, subject, body)
		}
	}
	forgeWithdrawal := func(t *testing.T, c *conn) {
		c.publish(t, forgedWithdrawal(t, b))
	}
	// Only the server reads and writes the snapshots' bucket (ADR 32): a
	// forged snapshot could only cost time, but a forged or deleted entry
	// of the request index could have a request applied twice.
	snapshots := func(t *testing.T, c *conn) {
		c.publish(t, &nats.Msg{Subject: "$KV." + jetstream.StateBucket + ".provider.VLAXL.request.forged-request", Data: []byte("1")})
		c.request(t, "$JS.API.DIRECT.GET.KV_"+jetstream.StateBucket, `{"multi_last":["$KV.`+jetstream.StateBucket+`.>"]}`)
	}

	t.Run("provider", func(t *testing.T) {
		c := mustConnect(t, b.url, b.as(natsauth.Provider))
		forgeWithdrawal(t, c)
		destroy(t, c)
		snapshots(t, c)
		for _, s := range []string{">", "spa.>", referralSubject, accessSubject, "$JS.API.>", "_INBOX.>", natsauth.Server.InboxPrefix() + ".>"} {
			c.subscribe(t, s)
		}
		for _, s := range []string{
			"$JS.API.STREAM.INFO." + jetstream.StreamName,
			"$JS.API.DIRECT.GET." + jetstream.StreamName + "." + referralSubject,
			"$JS.API.CONSUMER.CREATE." + jetstream.StreamName + ".spy",
			query.SubjectGet,
		} {
			c.request(t, s, "")
		}
	})

	t.Run("worker", func(t *testing.T) {
		c := mustConnect(t, b.url, b.as(natsauth.Worker))
		// A worker appends routing events to referral and provider
		// subjects (docs/adr/0027), never policy events or access records.
		c.publish(t, forgedEvent(t, policySubject, "PolicySwitched", []byte("forged")))
		c.publish(t, forgedEvent(t, accessSubject, "", []byte("forged")))
		c.publish(t, forgedEvent(t, jetstream.AccessCallSubject, "", []byte("forged")))
		destroy(t, c)
		snapshots(t, c)
		for _, s := range []string{">", "spa.>", accessSubject, "spa.access.>", "$JS.API.>", "_INBOX.>", natsauth.Server.InboxPrefix() + ".>", natsauth.Admin.InboxPrefix() + ".>"} {
			c.subscribe(t, s)
		}
		for _, s := range []string{
			"$JS.API.CONSUMER.CREATE." + jetstream.StreamName + "." + jetstream.RouterConsumer,
			query.SubjectWorkerRebuild("another"),
		} {
			c.request(t, s, "")
		}
		// Reading the event log and the access log through consumers of
		// its own is its job: it projects the one and indexes the other
		// (docs/adr/0033).
		if !readsPatient(t, c.nc) {
			t.Errorf("the worker cannot read the event log: it must, to project it")
		}
		if !readsAccess(t, c.nc, b.referral) {
			t.Errorf("the worker cannot read the access log: it must, to index it")
		}
	})

	t.Run("auditor", func(t *testing.T) {
		c := mustConnect(t, b.url, b.as(natsauth.Auditor))
		forgeWithdrawal(t, c)
		c.publish(t, forgedEvent(t, accessSubject, "", []byte("forged")))
		destroy(t, c)
		snapshots(t, c)
		c.subscribe(t, ">")
		c.subscribe(t, natsauth.Server.InboxPrefix()+".>")
	})

	t.Run("server", func(t *testing.T) {
		c := mustConnect(t, b.url, b.as(natsauth.Server))
		// A server appends one access record per call, on the call
		// subject: not on the older per-referral subjects.
		c.publish(t, forgedEvent(t, accessSubject, "", []byte("forged")))
		c.publish(t, forgedEvent(t, accessSubject+".9434765919", "", []byte("forged")))
		destroy(t, c)
		c.subscribe(t, ">")
		c.subscribe(t, "spa.readmodel.>")
		// Keeping snapshots is its job.
		if !keepsSnapshots(t, c.nc, b) {
			t.Errorf("the server cannot keep snapshots: it must, for commands on providers")
		}
	})

	// Nothing changed: the log ends with the server's events, the streams
	// are whole and as strict as provisioned.
	admin := mustConnect(t, b.url, b.as(natsauth.Admin))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := natsjs.New(admin.nc)
	if err != nil {
		t.Fatal(err)
	}
	for name, msgs := range map[string]uint64{jetstream.StreamName: 1, jetstream.AccessStreamName: 1} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s after the attacks: %v", name, err)
		}
		info := s.CachedInfo()
		if info.State.Msgs != msgs || info.Config.MaxMsgs != -1 || !info.Config.DenyDelete || !info.Config.DenyPurge {
			t.Errorf("%s after the attacks: %d messages (want %d), max %d, deny delete %t, deny purge %t",
				name, info.State.Msgs, msgs, info.Config.MaxMsgs, info.Config.DenyDelete, info.Config.DenyPurge)
		}
	}
	if _, err := js.Consumer(ctx, jetstream.StreamName, jetstream.RouterConsumer); err != nil {
		t.Errorf("router consumer after the attacks: %v", err)
	}
}

// forgedWithdrawal is a ReferralWithdrawn of b's referral as the store
// would append it: linked to the referral's last event by its hash,
// guarded by its sequence, with the event's headers.
func forgedWithdrawal(t *testing.T, b *bus) *nats.Msg {
	t.Helper()
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	prev := sha256.Sum256(b.last.Data)
	data, err := codec.MarshalRecord(spa.Record{EventID: "evt-forged", AggregateID: b.referral, OccurredAt: at, RecordedAt: at,
		Actor: spa.Actor{ODS: "RH802", Role: "discharge-coordinator", User: "u1"}, CausationID: "c2", CorrelationID: "k2",
		Event: spa.ReferralWithdrawn{Reason: spa.WithdrawalReasonDied}, PrevHash: prev[:]})
	if err != nil {
		t.Fatal(err)
	}
	msg := forgedEvent(t, b.last.Subject, "ReferralWithdrawn", data)
	msg.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(b.last.Sequence, 10))
	return msg
}

func forgedEvent(t *testing.T, subject, eventType string, data []byte) *nats.Msg {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = data
	h := sha256.Sum256(data)
	msg.Header.Set(jetstream.HeaderHash, hex.EncodeToString(h[:]))
	if eventType != "" {
		msg.Header.Set(jetstream.HeaderEventType, eventType)
	}
	msg.Header.Set(natsjs.MsgIDHeader, "forged-"+subject)
	return msg
}

// readsPatient reports whether nc can replay the event log and finds
// patientName in it.
func readsPatient(t *testing.T, nc *nats.Conn) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := jetstream.Open(ctx, nc, jetstream.Requirements{})
	if err != nil {
		t.Logf("open the event log: %v", err)
		return false
	}
	found := false
	err = store.Replay(ctx, spa.EventFilter{}, func(e spa.StoredEvent) error {
		found = found || strings.Contains(string(e.Data), patientName)
		return nil
	})
	if err != nil {
		t.Logf("replay: %v", err)
	}
	return found
}

// readsAccess reports whether nc can read the access log and finds a read
// of referral in it.
func readsAccess(t *testing.T, nc *nats.Conn, referral string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := jetstream.Open(ctx, nc, jetstream.Requirements{})
	if err != nil {
		t.Logf("open the event log: %v", err)
		return false
	}
	access, err := store.OpenAccessLog(ctx, jetstream.Requirements{})
	if err != nil {
		t.Logf("open the access log: %v", err)
		return false
	}
	found := false
	err = access.Follow(ctx, 1, 100, func(b jetstream.Batch) error {
		for _, e := range b.Events {
			_, read, err := jetstream.DecodeAccess(e)
			if err != nil {
				return err
			}
			for _, r := range read {
				found = found || r.ReferralID == referral
			}
		}
		if b.CaughtUp {
			return jetstream.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Logf("read the access log: %v", err)
	}
	return found
}

// keepsSnapshots reports whether nc can save a snapshot of b's referral
// (with a request id in the index) and read it back.
func keepsSnapshots(t *testing.T, nc *nats.Conn, b *bus) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := jetstream.Open(ctx, nc, jetstream.Requirements{})
	if err != nil {
		t.Logf("open the event log: %v", err)
		return false
	}
	hash := sha256.Sum256(b.last.Data)
	snap := spa.Snapshot{Sequence: b.last.Sequence, Hash: hash[:], State: []byte("{}")}
	store.SaveSnapshot(ctx, spa.AggregateReferral, b.referral, "attack-test", 0, snap, []spa.RequestAt{{ID: "request.locked.bus", Sequence: b.last.Sequence}})
	h, err := store.History(ctx, spa.AggregateReferral, b.referral, "attack-test", "request.locked.bus", func([]byte) error { return nil })
	if err != nil {
		t.Logf("history: %v", err)
		return false
	}
	return h.Snapshot != nil && h.Snapshot.Sequence == b.last.Sequence && h.Requested == b.last.Sequence
}

// conn is a client connection that keeps the errors the server sends it.
type conn struct {
	nc   *nats.Conn
	mu   sync.Mutex
	errs []error
}

func connect(url string, opts ...nats.Option) (*conn, error) {
	c := &conn{}
	opts = append(opts, nats.MaxReconnects(0), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.errs = append(c.errs, err)
	}))
	nc, err := nats.Connect(url, opts...)
	c.nc = nc
	return c, err
}

func mustConnect(t *testing.T, url string, opts []nats.Option) *conn {
	t.Helper()
	c, err := connect(url, opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(c.nc.Close)
	return c
}

// refused waits until the server has refused what, a "publish" or a
// "subscription", on subject.
func (c *conn) refused(t *testing.T, what, subject string) {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Fatalf("%s %s: flush: %v", what, subject, err)
	}
	want := strings.ToLower(fmt.Sprintf("permissions violation for %s to %q", what, subject))
	await.True(t, 30*time.Second, what+" to "+subject+" refused", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, err := range c.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), want) {
				return true
			}
		}
		return false
	})
}

// publish sends msg as a JetStream publish does (with a reply inbox for
// the ack) and checks the server refused it.
func (c *conn) publish(t *testing.T, msg *nats.Msg) {
	t.Helper()
	msg.Reply = c.nc.NewRespInbox()
	if err := c.nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	c.refused(t, "publish", msg.Subject)
}

// request sends a request, as a JetStream API call does, and checks the
// server refused it.
func (c *conn) request(t *testing.T, subject, body string) {
	t.Helper()
	c.publish(t, &nats.Msg{Subject: subject, Data: []byte(body)})
}

// subscribe subscribes to subject and checks the server refused it.
func (c *conn) subscribe(t *testing.T, subject string) {
	t.Helper()
	sub, err := c.nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	c.refused(t, "subscription", subject)
	if msg, err := sub.NextMsg(10 * time.Millisecond); err == nil {
		t.Errorf("subscription to %s delivered %s", subject, msg.Subject)
	}
}
