package spa

// ProviderStateVersion names the rules by which Provider.Apply folds a
// provider's events into its state, and the shape of Provider as a
// snapshot stores it (ADR 32). Change it whenever either changes: a
// snapshot made under another version is never used, so the state is
// folded again from the log by the new rules.
const ProviderStateVersion = "provider-1"

// Snapshot is an aggregate's state as of one of its events, kept so that
// a command reads only the events after it (ADR 32). It is used only as
// far as the log confirms it: the event it names must be on the
// aggregate's subject at Sequence, with stored bytes of SHA-256 Hash.
type Snapshot struct {
	// Sequence is the log sequence of the last event the state reflects;
	// Hash the SHA-256 of that event's stored bytes.
	Sequence uint64
	Hash     []byte
	// State is the state as JSON, folded by the rules its version names.
	State []byte
}

// History is what a command on an aggregate decides on: the latest
// snapshot the log confirms, if any, and the events after it.
type History struct {
	// Snapshot is nil when there is none to use: Records are then all of
	// the aggregate's events.
	Snapshot *Snapshot
	// Records are the events after the snapshot, oldest first; Hashes
	// are the SHA-256 of each one's stored bytes, in the same order.
	Records []Record
	Hashes  [][]byte
	// Last is the sequence of the aggregate's last event (0: none), the
	// one its next append is guarded by.
	Last uint64
	// Requested is where the request index puts the event of the request
	// id asked about (0: it has no entry for it). The index holds every
	// request id of the events up to the snapshot, so an id it does not
	// hold and the records do not carry was never used on the aggregate.
	Requested uint64
	// Revision is that of the stored snapshot entry read, whether used or
	// not (0: none): a new snapshot replaces it only while it is current.
	Revision uint64
}

// RequestAt is a request id and the sequence of the event that carries
// it, as the request index keeps it.
type RequestAt struct {
	ID       string
	Sequence uint64
}
