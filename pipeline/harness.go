package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/state"
)

// ManualClock is a Clock that only moves when told to. It is safe for
// concurrent use.
type ManualClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewManualClock returns a clock standing at t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{now: t} }

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Harness runs a plan in-process and synchronously, with the watermark and
// the processing-time clock under the caller's control: the counterpart of
// Flink's operator test harness and Kafka Streams' TopologyTestDriver. Its
// partitions, exchanges, timers and Pebble state are the runtime's own; only
// the source and sinks are replaced by the caller's calls and Records.
//
// A Harness is not safe for concurrent use.
type Harness struct {
	plan    *Plan
	clock   *ManualClock
	logger  *slog.Logger
	rt      *engine
	records []Record
	dead    []DeadLetter
	batches [][]Event
}

// HarnessOption configures a Harness.
type HarnessOption func(*Harness)

// WithHarnessClock sets the processing-time clock (default: a ManualClock at
// 2026-01-01T00:00:00Z).
func WithHarnessClock(c *ManualClock) HarnessOption { return func(h *Harness) { h.clock = c } }

// WithHarnessLogger sets the logger (default: discard).
func WithHarnessLogger(l *slog.Logger) HarnessOption { return func(h *Harness) { h.logger = l } }

// NewHarness opens the plan's state (plan.Spec.State.Dir) and makes its
// partitions. The plan's source and sinks are not opened.
func NewHarness(plan *Plan, opts ...HarnessOption) (*Harness, error) {
	h := &Harness{
		plan:   plan,
		clock:  NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		logger: slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(h)
	}
	if err := h.open(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Harness) open() error {
	rt, err := newRuntime(h.plan, runOptions{
		clock:  h.clock,
		logger: h.logger,
		onRecord: func(_ int, r *Record) {
			h.records = append(h.records, *r)
		},
	})
	if err != nil {
		return err
	}
	rt.dead = harnessDead{h}
	for range h.plan.Sinks {
		rt.sinks = append(rt.sinks, discardSink{})
	}
	if err := rt.openWorkers(); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	h.rt = rt
	return nil
}

// Clock returns the harness's processing-time clock.
func (h *Harness) Clock() *ManualClock { return h.clock }

// Process runs events through the pipeline: each goes to the partition that
// owns its key, and everything it causes, across exchanges too, happens
// before Process returns. The watermark does not move.
func (h *Harness) Process(events ...Event) {
	n := h.rt.nparts
	if len(h.batches) != n {
		h.batches = make([][]Event, n)
	}
	batches := h.batches
	for p := range batches {
		clear(batches[p])
		batches[p] = batches[p][:0]
	}
	for _, e := range events {
		p := PartitionOf(e.Key(), n)
		batches[p] = append(batches[p], e)
	}
	for p, evs := range batches {
		if len(evs) == 0 {
			continue
		}
		w := h.rt.workers[p]
		w.lastInput = h.clock.Now().UnixNano()
		w.processSource(&inBatch{events: evs, split: 0, wm: w.srcWM})
		w.endRound()
	}
	h.settle()
}

// AdvanceWatermark moves the source watermark of every partition to t (it
// never moves back), firing the event-time timers it passes.
func (h *Harness) AdvanceWatermark(t time.Time) {
	wm := t.UnixNano()
	for _, w := range h.rt.workers {
		if wm > w.srcWM {
			w.srcWM = wm
		}
		w.endRound()
	}
	h.settle()
}

// EndOfInput moves the watermark to +infinity, as at the end of a bounded
// source: every window closes and every event-time timer fires.
func (h *Harness) EndOfInput() {
	for _, w := range h.rt.workers {
		w.final, w.srcWM = true, maxTime
		w.endRound()
	}
	h.settle()
}

// AdvanceClock moves processing time to t and fires the processing-time
// timers due by then.
func (h *Harness) AdvanceClock(t time.Time) {
	h.clock.Set(t)
	for _, w := range h.rt.workers {
		w.fireProcessingTimers(t.UnixNano())
		w.endRound()
	}
	h.settle()
}

// settle runs the exchanges until no batch is in flight.
func (h *Harness) settle() {
	for h.rt.inflight.Load() != 0 {
		for _, w := range h.rt.workers {
			w.drainInbox()
		}
	}
}

// Records returns the records emitted since the last call, in emission
// order.
func (h *Harness) Records() []Record {
	r := h.records
	h.records = nil
	return r
}

// DeadLetters returns the dead letters (late events, operator errors)
// since the last call.
func (h *Harness) DeadLetters() []DeadLetter {
	d := h.dead
	h.dead = nil
	return d
}

// Watermark returns operator id's current watermark in partition p.
func (h *Harness) Watermark(id string, p int) time.Time {
	for _, o := range h.rt.workers[p].ops {
		if o.id == id {
			return TimeFromNanos(o.wm)
		}
	}
	return time.Time{}
}

// Checkpoint commits every partition's state and timers in one batch, as
// the runtime does at a checkpoint.
func (h *Harness) Checkpoint() error {
	b := h.rt.db.NewBatch()
	defer b.Close()
	for _, w := range h.rt.workers {
		if err := w.flushState(b); err != nil {
			return err
		}
	}
	return b.Commit()
}

// Restart simulates a crash and a restart: everything since the last
// Checkpoint is lost, and the pipeline reopens from the committed state.
func (h *Harness) Restart() error {
	if err := h.rt.db.Close(); err != nil {
		return err
	}
	h.rt.db = nil
	return h.open()
}

// State returns the harness's state store, to inspect it.
func (h *Harness) State() *state.DB { return h.rt.db }

// Close closes the state store without a checkpoint.
func (h *Harness) Close() error {
	if h.rt == nil || h.rt.db == nil {
		return nil
	}
	err := h.rt.db.Close()
	h.rt.db = nil
	return err
}

// harnessDead keeps dead letters in the Harness.
type harnessDead struct{ h *Harness }

func (d harnessDead) WriteDeadLetters(letters []DeadLetter) error {
	for _, l := range letters {
		l.Payload = append([]byte(nil), l.Payload...)
		d.h.dead = append(d.h.dead, l)
	}
	return nil
}
func (harnessDead) Flush() error { return nil }
func (harnessDead) Close() error { return nil }

// discardSink stands in for a plan's sinks in a Harness: Records has the
// outputs.
type discardSink struct{}

func (discardSink) Write([]SinkRecord) error { return nil }
func (discardSink) Flush() error             { return nil }
func (discardSink) Close() error             { return nil }

// NoneConfig configures the "none" source.
type NoneConfig struct{}

// noneSource delivers nothing and ends at once.
type noneSource struct{}

func (noneSource) Read(context.Context, Offsets, Deliverer) error { return nil }

func init() {
	// "none" is a source with no input: for pipelines run by a Harness,
	// whose events come from the test.
	RegisterSource("none", func(NoneConfig) (Source, error) { return noneSource{}, nil })
}
