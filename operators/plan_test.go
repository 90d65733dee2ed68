package operators

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples"
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
	return openHarness(tb, plan)
}

// harnessOfSpec runs the pipeline of spec, YAML named file in errors, in
// a Harness, closed when the test ends.
func harnessOfSpec(tb testing.TB, spec, file string) *pipeline.Harness {
	tb.Helper()
	plan, err := pipeline.ParsePlan([]byte(spec), file)
	if err != nil {
		tb.Fatal(err)
	}
	return openHarness(tb, plan)
}

// openHarness runs plan in a Harness, closed when the test ends.
func openHarness(tb testing.TB, plan *pipeline.Plan) *pipeline.Harness {
	tb.Helper()
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

// TestEventFields checks which optional event fields the built-in
// operators read, and that the retail example decodes only the page URL
// (the sessionizer's).
func TestEventFields(t *testing.T) {
	cases := []struct {
		typ, with string
		want      pipeline.EventFields
		forwards  bool
	}{
		{"consent_filter", "{purposes: [analytics]}", 0, true},
		{"filter", `{match: 'type == "page_viewed"'}`, 0, true},
		{"filter", `{match: 'context.locale == "en-US"'}`, pipeline.EventFieldsOf("context"), true},
		{"filter", `{match: 'product.brand == "acme" && product.price > 10'}`, pipeline.EventFieldsOf("product"), true},
		{"sessionizer", "{gap: 30m}", pipeline.FieldPageURL, false},
		{"window_counter", "{group_by: product.category, size: 1h}", 0, false},
		{"window_counter", "{group_by: context.locale, size: 1h}", pipeline.FieldLocale, false},
		{"window_counter", "{group_by: type, size: 1h, aggregate: distinct, field: context.channel}", pipeline.FieldChannel, false},
		{"window_counter", `{match: 'context.channel == "app"', group_by: product.brand, size: 1h}`, pipeline.EventFieldsOf("context") | pipeline.FieldProductBrand, false},
		{"segment_transitioner", `{segments: [{name: buyer, enter: 'count("order_completed", "30d") >= 1'}]}`, 0, false},
		{"abandonment_detector", "{}", 0, false},
		{"key_counter", "{}", 0, false},
	}
	for _, c := range cases {
		plan, err := planOf(t, "op", c.typ, c.with)
		if err != nil {
			t.Fatalf("%s %s: %v", c.typ, c.with, err)
		}
		po := plan.Operators[0]
		if po.Reads != c.want || po.Forwards != c.forwards {
			t.Errorf("%s %s: reads %b, forwards %v; want %b, %v", c.typ, c.with, po.Reads, po.Forwards, c.want, c.forwards)
		}
	}
	plan, err := pipeline.ParsePlan([]byte(examples.Retail), "examples/retail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plan.EventFields(), pipeline.FieldPageURL; got != want {
		t.Errorf("retail example decodes optional fields %b, want %b (the page URL)", got, want)
	}
}
