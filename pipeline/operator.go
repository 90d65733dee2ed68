package pipeline

import (
	"time"
)

// Operator processes the inputs of one pipeline partition. The runtime makes
// one instance per partition and calls it from that partition's worker
// goroutine only, so an operator needs no locks. Keyed state lives in the
// state store (see Context.State), never in fields that outlive a call,
// because a partition can move to another process.
type Operator interface {
	// Open is called once before any input. It declares the operator's state
	// tables and gets ready.
	Open(ctx *OpenContext) error
	// OnEvent processes one event under ctx.Key().
	OnEvent(ctx *Context, e *Event) error
}

// RecordHandler is implemented by operators that consume records emitted
// upstream (not only events). Records are processed under their Key.
type RecordHandler interface {
	OnRecord(ctx *Context, r *Record) error
}

// TimerHandler is implemented by operators that set timers.
type TimerHandler interface {
	// OnTimer is called when a timer fires, under the timer's key, with
	// ctx.Time() the timer's time.
	OnTimer(ctx *Context, t Timer) error
}

// Rekeyer is implemented by operators that group events by something other
// than the event key (a window counter by product.id). The planner inserts an
// exchange before such an operator: each event is routed to the partition
// that owns GroupKey(e) and processed under that key. An event for which ok
// is false is skipped by the operator.
type Rekeyer interface {
	GroupKey(e *Event) (key string, ok bool)
}

// Closer is implemented by operators that hold resources.
type Closer interface {
	Close() error
}

// TimeDomain says which clock a timer follows.
type TimeDomain uint8

const (
	// EventTime timers fire when the watermark reaches them, and just before
	// their key processes an event at or after them.
	EventTime TimeDomain = iota
	// ProcessingTime timers fire when the runtime's clock reaches them.
	ProcessingTime
)

// Timer is a keyed, named, durable timer. A key has at most one timer of a
// name per operator: setting it again moves it.
type Timer struct {
	Key    string
	Name   string
	Time   time.Time
	Domain TimeDomain
}
