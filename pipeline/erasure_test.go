package pipeline

import (
	"fmt"
	"testing"
	"time"
)

// eraser erases the key of an erasure_requested event and forwards the
// others.
type eraser struct{}

func (eraser) Open(*OpenContext) error { return nil }

func (eraser) OnEvent(c *Context, e *Event) error {
	if e.Type == "erasure_requested" {
		c.Erase("requested")
		return nil
	}
	c.Forward(e)
	return nil
}

// ender emits "ended" 10 seconds after a key's last event.
type ender struct{}

func (ender) Open(*OpenContext) error { return nil }

func (ender) OnEvent(c *Context, e *Event) error {
	c.SetTimer("end", e.Timestamp.Add(10*time.Second))
	return nil
}

func (ender) OnTimer(c *Context, t Timer) error {
	c.Emit("ended", nil)
	return nil
}

// TestTimersDueBeforeAnErasureFire: an erasure deletes its key's timers,
// but those due at or before the erasure's time fire first, whatever the
// watermark, as they would before any other input of the key at that time.
func TestTimersDueBeforeAnErasureFire(t *testing.T) {
	b := NewBuilder("erasure-timers", WithPartitions(1), WithStateDir(t.TempDir()))
	b.Source("test_spec_source", testSpecConnConfig{Path: "unused"})
	b.Custom("eraser", func() Operator { return eraser{} })
	b.Custom("ender", func() Operator { return ender{} }, "eraser")
	b.Sink("out", "test_spec_sink", nil, "ender")
	plan, err := b.Plan()
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHarness(plan)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	ev := func(id, user, typ string, after time.Duration) Event {
		return Event{EventID: id, Type: typ, UserID: user, Timestamp: at.Add(after)}
	}
	h.Process(
		ev("e1", "u1", "page_viewed", 0),                    // u1's timer at +10s
		ev("e2", "u2", "page_viewed", 0),                    // u2's timer at +10s
		ev("x1", "u1", "erasure_requested", 20*time.Second), // after u1's timer
		ev("x2", "u2", "erasure_requested", 5*time.Second),  // before u2's timer
	)
	h.EndOfInput()
	var got []string
	for _, r := range h.Records() {
		got = append(got, fmt.Sprintf("%s %s", r.Key, r.Type))
	}
	want := "[u1 ended u1 erasure u2 erasure]"
	if fmt.Sprint(got) != want {
		t.Errorf("records %v, want %s", got, want)
	}
}
