package pipeline

import "time"

// Record is one output of an operator (DESIGN §4). Its ID is deterministic:
// derived from what caused it, never from how the run was partitioned or
// batched, so downstream can deduplicate replays.
type Record struct {
	// ID is the deterministic id of the record.
	ID string
	// Type says what the record is: session_ended, window_result, erasure...
	Type string
	// Key is the key the record is about (a user, or a group after an
	// exchange). Stateful operators downstream process it under this key.
	Key string
	// Time is the event time at which the record became true.
	Time time.Time
	// Operator is the id of the operator that emitted the record.
	Operator string
	// Data is the record's payload. It is encoded as JSON: a value that
	// implements JSONAppender is encoded by it, anything else by
	// encoding/json.
	Data any
}

// JSONAppender is implemented by record payloads that encode themselves
// without reflection.
type JSONAppender interface {
	// AppendJSON appends the JSON encoding of the value to dst.
	AppendJSON(dst []byte) []byte
}

// Control record types. A control record flows to every operator downstream
// of its emitter, whatever the operators consume, and to the sinks.
const (
	// RecordErasure orders every stateful operator downstream to delete all
	// state and timers of the record's key. The runtime obeys it for every
	// operator before the operator's OnRecord (if any) sees it.
	RecordErasure = "erasure"
)

// Erasure is the payload of an erasure control record.
type Erasure struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// IsControl reports whether the record is a control record.
func (r *Record) IsControl() bool { return r.Type == RecordErasure }
