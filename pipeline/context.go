package pipeline

import (
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/state"
)

// Clock gives processing time. Tests inject one to control time.
type Clock interface {
	Now() time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// WallClock is the real clock.
var WallClock Clock = wallClock{}

// Watermark values at the ends of time.
const (
	minTime int64 = math.MinInt64
	maxTime int64 = math.MaxInt64
)

// TimeFromNanos turns a runtime time (Unix nanoseconds, with the extremes
// standing for -infinity and +infinity) into a time.Time.
func TimeFromNanos(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// OpenContext is what an operator gets in Open: its identity, its partition
// and its partition's state store.
type OpenContext struct {
	// OperatorID is the operator's id in the pipeline.
	OperatorID string
	// Partition is the pipeline partition this instance serves.
	Partition int
	// State is the partition's state. Name tables with StateName.
	State *state.Partition
	// Clock is the processing-time clock.
	Clock Clock
	// Logger logs with the operator's id attached.
	Logger *slog.Logger
}

// StateName returns the name of an operator's table: names are per
// operator, so two operators may both have a table "session".
func (oc *OpenContext) StateName(name string) string { return oc.OperatorID + "/" + name }

// NewValue declares a keyed value table of the operator.
func NewValue[T any](oc *OpenContext, name string, codec state.Codec[T], opts ...state.TableOption) *state.Value[T] {
	return state.NewValue(oc.State, oc.StateName(name), codec, opts...)
}

// NewMap declares a keyed map table of the operator.
func NewMap[V any](oc *OpenContext, name string, codec state.Codec[V], opts ...state.TableOption) *state.Map[V] {
	return state.NewMap(oc.State, oc.StateName(name), codec, opts...)
}

// NewCounter declares a keyed counter table of the operator.
func NewCounter(oc *OpenContext, name string, opts ...state.TableOption) *state.Counter {
	return state.NewCounter(oc.State, oc.StateName(name), opts...)
}

// Context is what an operator sees while it handles one input: the key and
// time of the input, the watermark, and the ways to emit records, forward
// events and set timers. It is valid only during the call.
type Context struct {
	w   *worker
	op  *opInstance
	key string
	// at is the event time of the input (or the timer's time), Unix nanos.
	at int64
	// cause names what caused the outputs, for their ids. For a timer it
	// is empty and timer names the timer: the cause
	// "timer:<key>/<name>@<at>" is only built into the ids of records the
	// timer emits.
	cause   string
	timer   string
	isTimer bool
	seq     int
}

// Key is the key the input is processed under.
func (c *Context) Key() string { return c.key }

// Time is the event time of the input, or the timer's time.
func (c *Context) Time() time.Time { return TimeFromNanos(c.at) }

// TimeNanos is Time as Unix nanoseconds.
func (c *Context) TimeNanos() int64 { return c.at }

// Watermark is the operator's current event-time watermark: no input older
// than it is expected any more. It is math.MinInt64 nanoseconds before the
// first input.
func (c *Context) Watermark() time.Time { return TimeFromNanos(c.op.wm) }

// WatermarkNanos is Watermark as Unix nanoseconds.
func (c *Context) WatermarkNanos() int64 { return c.op.wm }

// Now is processing time.
func (c *Context) Now() time.Time { return c.w.clock.Now() }

// Partition is the pipeline partition of this instance.
func (c *Context) Partition() int { return c.w.id }

// Emit emits a record of the given type about the current key at the
// current time, with a deterministic id derived from the cause of the call.
func (c *Context) Emit(typ string, data any) {
	c.EmitRecord(Record{Type: typ, Data: data})
}

// EmitRecord emits a record; empty ID, Key, Time and Operator are filled in
// as Emit does. An operator sets ID itself when the cause alone does not
// make it unique and stable (a window result: operator, group, window start
// and revision).
func (c *Context) EmitRecord(r Record) {
	if r.ID == "" {
		c.seq++
		if c.isTimer {
			var digits [20]byte
			r.ID = "timer:" + c.key + "/" + c.timer + "@" + string(strconv.AppendInt(digits[:0], c.at, 10)) + "/" + c.op.id + "/" + strconv.Itoa(c.seq)
		} else {
			r.ID = c.cause + "/" + c.op.id + "/" + strconv.Itoa(c.seq)
		}
	}
	if r.Key == "" {
		r.Key = c.key
	}
	if r.Time.IsZero() {
		r.Time = TimeFromNanos(c.at)
	}
	if r.Operator == "" {
		r.Operator = c.op.id
	}
	c.w.emitRecord(c.op, &r)
}

// Forward passes an event on, unchanged or changed, to the operators and
// sinks downstream.
func (c *Context) Forward(e *Event) { c.w.forwardEvent(c.op, c.key, e) }

// Erase emits an erasure control record for the current key: every
// operator's state and timers of the key in this partition are deleted, and
// the record flows downstream and to the sinks as a tombstone.
func (c *Context) Erase(reason string) {
	c.EmitRecord(Record{Type: RecordErasure, Data: Erasure{Key: c.key, Reason: reason}})
}

// Late reports an input the operator drops because it is too late. It is
// counted and written to the dead-letter output with the reason.
func (c *Context) Late(e *Event, reason string) { c.w.late(c.op, e, reason) }

// SetTimer sets (or moves) the event-time timer name of the current key.
func (c *Context) SetTimer(name string, at time.Time) {
	c.op.timers.Set(c.key, name, at.UnixNano(), uint8(EventTime))
}

// SetProcessingTimer sets (or moves) the processing-time timer name of the
// current key.
func (c *Context) SetProcessingTimer(name string, at time.Time) {
	c.op.timers.Set(c.key, name, at.UnixNano(), uint8(ProcessingTime))
}

// DeleteTimer deletes the timer name of the current key, if set.
func (c *Context) DeleteTimer(name string) { c.op.timers.Delete(c.key, name) }

// TimerAt returns when the timer name of the current key fires, if set.
func (c *Context) TimerAt(name string) (time.Time, bool) {
	at, _, ok := c.op.timers.Get(c.key, name)
	return TimeFromNanos(at), ok
}

// Logger logs with the operator's id attached. Never log event payloads.
func (c *Context) Logger() *slog.Logger { return c.op.logger }
