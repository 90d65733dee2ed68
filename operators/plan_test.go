package operators

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// planOf plans a pipeline of one operator, id of type typ configured by
// with (a flow mapping, or a block that starts with a newline), its state
// in a fresh directory.
func planOf(tb testing.TB, id, typ, with string) (*pipeline.Plan, error) {
	tb.Helper()
	spec := fmt.Sprintf("version: 1\nname: test\nsource: {type: none}\npartitions: 1\nstate: {dir: %q, sync: never}\noperators:\n  - id: %s\n    type: %s\n    with: %s\n",
		tb.TempDir(), id, typ, with)
	parsed, err := pipeline.ParseSpec([]byte(spec), "test.yaml")
	if err != nil {
		return nil, err
	}
	return pipeline.NewPlan(parsed)
}

// harnessOf runs planOf's pipeline in a Harness, closed when the test ends.
func harnessOf(tb testing.TB, id, typ, with string) *pipeline.Harness {
	tb.Helper()
	plan, err := planOf(tb, id, typ, with)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := pipeline.NewHarness(plan)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// benchBatch runs the n-th batch of an operator benchmark through h: the
// watermark 5 s behind its last event, its outputs taken, a checkpoint
// after every 64th batch. It returns the number of records it produced.
func benchBatch(b *testing.B, h *pipeline.Harness, evs []pipeline.Event, n int) int {
	h.Process(evs...)
	h.AdvanceWatermark(evs[len(evs)-1].Timestamp.Add(-5 * time.Second))
	records := len(h.Records())
	_ = h.DeadLetters()
	if n%64 == 63 {
		if err := h.Checkpoint(); err != nil {
			b.Fatal(err)
		}
	}
	return records
}
