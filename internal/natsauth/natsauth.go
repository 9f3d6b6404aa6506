// Package natsauth says who may do what on SPA's NATS bus
// (docs/adr/0027): the identities SPA's processes connect as, the subjects
// each may publish and subscribe to, the nkey seeds the embedded server
// generates for them, and the client options (nkey or credentials, TLS)
// every process connects with.
package natsauth

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"spa/internal/checkpoint"
	"spa/internal/jetstream"
	"spa/internal/query"
)

// Identity is who a NATS connection is: one per kind of process, never
// per process (two workers are both Worker).
type Identity string

// SPA's identities on NATS.
const (
	// Server is spa-server: it appends events and access records (one
	// per call, on jetstream.AccessCallSubject only), reads both streams
	// and asks workers for read-model and access-index answers.
	Server Identity = "server"
	// Worker is spa-worker (and the worker inside the all-in-one
	// spa-server): it reads the event stream and the access log (to index
	// it, ADR 33), appends routing and clock events (never policy events,
	// never access records), answers queries and holds the scheduler's
	// lease.
	Worker Identity = "worker"
	// Admin is spa-ctl's NATS commands and the all-in-one server's
	// provisioning: the only identity that may create, change, purge or
	// delete streams, buckets and shared consumers.
	Admin Identity = "admin"
	// Auditor reads both streams and nothing else: replays and checks by
	// ops.
	Auditor Identity = "auditor"
	// Provider may do nothing on the bus: providers use the gRPC API. It
	// exists so that credentials handed to the wrong party are refused
	// everything, and a test shows it.
	Provider Identity = "provider"
)

// Identities lists every identity, in a fixed order.
var Identities = []Identity{Server, Worker, Admin, Auditor, Provider}

// Parse returns the identity called name.
func Parse(name string) (Identity, error) {
	for _, id := range Identities {
		if string(id) == name {
			return id, nil
		}
	}
	return "", fmt.Errorf("unknown NATS identity %q (one of server, worker, admin, auditor, provider)", name)
}

// InboxPrefix is the prefix of the identity's reply subjects. Each
// identity may subscribe to its own inboxes only, so that no other can
// listen to the answers it gets (events, access records, read-model
// replies).
func (id Identity) InboxPrefix() string { return "_INBOX_" + string(id) }

// responses lets an identity that answers requests reply once to each
// request it received, on whatever inbox the request named, and nowhere
// else.
var responses = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}

// Permissions returns what id may publish and subscribe to. The lists are
// allow lists: anything not on them is refused. The same permissions are
// written in deploy/nats/accounts.conf for a cluster; a test keeps the two
// equal.
func Permissions(id Identity) *server.Permissions {
	events, access, checkpoints, lease := jetstream.StreamName, jetstream.AccessStreamName, jetstream.CheckpointStreamName, "KV_"+jetstream.LeaseBucket
	inbox := []string{id.InboxPrefix() + ".>"}
	switch id {
	case Server:
		pub := join(jetstream.Subjects, []string{jetstream.AccessCallSubject, jetstream.CheckpointSubject, "spa.readmodel.>"},
			readStream(events), readStream(access), readStream(checkpoints), stateBucket())
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: pub, Deny: join(sharedConsumer(), routerPull())},
			// The signers answer requests for a checkpoint now.
			Subscribe: &server.SubjectPermission{Allow: join(inbox, []string{checkpoint.RequestSubject})},
			Response:  responses,
		}
	case Worker:
		pub := join(routingSubjects(), []string{query.SubjectWorkerStatus("*")},
			readStream(events), readStream(access),
			[]string{"$JS.ACK." + events + "." + jetstream.RouterConsumer + ".>"},
			[]string{
				"$JS.API.STREAM.INFO." + lease,
				"$JS.API.DIRECT.GET." + lease + ".>",
				"$JS.API.STREAM.MSG.GET." + lease,
				"$KV." + jetstream.LeaseBucket + ".>",
			})
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: pub, Deny: sharedConsumer()},
			Subscribe: &server.SubjectPermission{Allow: join(inbox, []string{"spa.readmodel.>", "spa.worker.>", "$SRV.>"})},
			Response:  responses,
		}
	case Admin:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"$JS.API.>", "spa.readmodel.>", "spa.worker.>", "$SRV.>", checkpoint.RequestSubject}},
			Subscribe: &server.SubjectPermission{Allow: inbox},
		}
	case Auditor:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: join(readStream(events), readStream(access), readStream(checkpoints)), Deny: join(sharedConsumer(), routerPull())},
			Subscribe: &server.SubjectPermission{Allow: inbox},
		}
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: []string{">"}},
		Subscribe: &server.SubjectPermission{Deny: []string{">"}},
	}
}

// routingSubjects are the event subjects a worker appends to: referrals
// and providers, not policies.
func routingSubjects() []string {
	var subjects []string
	for _, s := range jetstream.Subjects {
		if s != jetstream.SubjectOf("policy", "*") {
			subjects = append(subjects, s)
		}
	}
	return subjects
}

// readStream is the JetStream API a reader of stream uses: its info,
// direct and leader gets, and ephemeral (ordered) consumers it creates,
// pulls from and removes.
func readStream(stream string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.DIRECT.GET." + stream,
		"$JS.API.DIRECT.GET." + stream + ".>",
		"$JS.API.STREAM.MSG.GET." + stream,
		"$JS.API.CONSUMER.CREATE." + stream + ".*",
		"$JS.API.CONSUMER.CREATE." + stream + ".*.>",
		"$JS.API.CONSUMER.INFO." + stream + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + stream + ".*",
		"$JS.API.CONSUMER.DELETE." + stream + ".*",
	}
}

// stateBucket is what the server does with the snapshots' bucket
// (ADR 32): batched direct gets of snapshots and request index entries,
// and puts of both.
func stateBucket() []string {
	return []string{"$JS.API.DIRECT.GET.KV_" + jetstream.StateBucket, "$KV." + jetstream.StateBucket + ".>"}
}

// sharedConsumer is what readers may not do to the routers' shared
// consumer: create, change or remove it (admin provisions it).
func sharedConsumer() []string {
	prefix := "$JS.API.CONSUMER."
	suffix := "." + jetstream.StreamName + "." + jetstream.RouterConsumer
	return []string{prefix + "CREATE" + suffix, prefix + "CREATE" + suffix + ".>", prefix + "DELETE" + suffix}
}

// routerPull is pulling from the routers' shared consumer: the workers'
// alone, or another reader could hold the routers' events unacknowledged
// and starve routing.
func routerPull() []string {
	return []string{"$JS.API.CONSUMER.MSG.NEXT." + jetstream.StreamName + "." + jetstream.RouterConsumer}
}

func join(lists ...[]string) []string {
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}
