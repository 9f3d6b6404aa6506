// Package spa is the domain core of the discharge Single Point of Access:
// referrals, their commands, events and rules. It does no I/O and imports
// only the standard library.
//
// Commands are decided against the current state (Decide* functions return
// the event to append, or a *Error); state is rebuilt by applying events in
// order (Referral.Apply). The same Apply serves the command side and every
// read model, so a replay always agrees with what was decided.
//
// Enum values equal the field numbers of the persisted protobuf enums in
// api/proto/spa/v1, which are append-only forever.
package spa
