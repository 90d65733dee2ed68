package operators

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/pipeline/pipelinetest"
)

func TestWindowCounter(t *testing.T) { pipelinetest.RunScripts(t, "testdata/window_counter*.txt") }

// newWindowCounterHarness makes a Harness running one window counter
// (id "wc") with the given `with` block (YAML flow mapping) over partitions
// partitions.
func newWindowCounterHarness(tb testing.TB, partitions int, with string) *pipeline.Harness {
	tb.Helper()
	spec := fmt.Sprintf(`version: 1
name: wc
source: {type: none}
partitions: %d
state: {dir: %q}
operators:
  - id: wc
    type: window_counter
    with: %s
`, partitions, tb.TempDir(), with)
	return harnessOfSpec(tb, spec, "test.yaml")
}

// wcRun is what a run of a window counter produced: every record as
// `id type key @time data`, and every dead letter as `event_id: reason`.
type wcRun struct {
	records []string
	dead    []string
}

func (r *wcRun) collect(h *pipeline.Harness) {
	for _, rec := range h.Records() {
		r.records = append(r.records, rec.ID+" "+pipelinetest.FormatRecord(rec, false))
	}
	for _, l := range h.DeadLetters() {
		var e pipeline.Event
		var dec pipeline.EventDecoder
		if err := dec.Decode(l.Payload, &e); err != nil {
			r.dead = append(r.dead, "undecodable: "+l.Reason)
			continue
		}
		r.dead = append(r.dead, e.EventID+": "+l.Reason)
	}
}

// wcChunk is a batch of events processed together, and the watermark set
// after it.
type wcChunk struct {
	events []pipeline.Event
	wm     time.Time
}

// runWindowCounter runs chunks through a fresh window counter.
func runWindowCounter(tb testing.TB, partitions int, with string, chunks []wcChunk) wcRun {
	h := newWindowCounterHarness(tb, partitions, with)
	var run wcRun
	for _, c := range chunks {
		h.Process(c.events...)
		run.collect(h)
		h.AdvanceWatermark(c.wm)
		run.collect(h)
	}
	h.EndOfInput()
	run.collect(h)
	return run
}

// disorderlyEvents makes n product views over 7 categories and 40 users,
// time-ordered up to jitter within bound, except that about one in 25 is up
// to 40 minutes late; chunks of 50 are each followed by the watermark
// max event time - bound.
func disorderlyEvents(n int, bound time.Duration) []wcChunk {
	rng := rand.New(rand.NewPCG(7, 11))
	base := pipelinetest.BaseDay.Add(10 * time.Hour)
	cats := []string{"shoes", "hats", "bags", "coats", "socks", "belts", "scarves"}
	var chunks []wcChunk
	var cur wcChunk
	var maxT time.Time
	clock := base
	for i := range n {
		clock = clock.Add(time.Duration(rng.IntN(20)) * time.Second)
		at := clock.Add(-time.Duration(rng.Int64N(int64(bound))))
		if rng.IntN(25) == 0 {
			at = clock.Add(-time.Duration(rng.Int64N(int64(40 * time.Minute))))
		}
		// Category popularity drifts, so that spikes happen.
		c := cats[min(rng.IntN(len(cats)), rng.IntN(len(cats)+i/300))%len(cats)]
		e := pipeline.Event{
			EventID:   "e" + strconv.Itoa(i),
			Type:      "product_viewed",
			UserID:    "u" + strconv.Itoa(rng.IntN(40)),
			Timestamp: at,
			Product:   pipeline.Product{ID: "p" + strconv.Itoa(rng.IntN(30)), Category: c, Price: float64(rng.IntN(1000)) / 10},
		}
		if rng.IntN(10) == 0 {
			e.Type = "page_viewed"
		}
		cur.events = append(cur.events, e)
		if at.After(maxT) {
			maxT = at
		}
		if len(cur.events) == 50 {
			cur.wm = maxT.Add(-bound)
			chunks = append(chunks, cur)
			cur = wcChunk{}
		}
	}
	if len(cur.events) > 0 {
		cur.wm = maxT.Add(-bound)
		chunks = append(chunks, cur)
	}
	return chunks
}

// TestWindowCounterPartitions runs the same disorderly input with 1 and 4
// partitions: the exchange must not change any record, id or dead letter.
// It also checks the final counts against a model computed here: a window's
// last revision counts the events in it that were not too late when they
// came (window end + allowed_lateness > the watermark of their chunk).
func TestWindowCounterPartitions(t *testing.T) {
	const bound = 5 * time.Minute
	chunks := disorderlyEvents(3000, bound)
	configs := map[string]string{
		"count_hopping_spike": `{match: 'type == "product_viewed"', group_by: product.category, size: 10m, slide: 5m, allowed_lateness: 15m, spike: {ratio: 1.5, baseline_windows: 4, min_count: 5}}`,
		"sum_tumbling":        `{match: 'type == "product_viewed"', group_by: product.category, size: 10m, allowed_lateness: 5m, aggregate: sum, field: product.price}`,
		"distinct_hopping":    `{match: 'type == "product_viewed"', group_by: product.category, size: 15m, slide: 5m, allowed_lateness: 10m, aggregate: distinct, field: user_id}`,
	}
	for name, with := range configs {
		t.Run(name, func(t *testing.T) {
			one := runWindowCounter(t, 1, with, chunks)
			four := runWindowCounter(t, 4, with, chunks)
			// Records of different groups come in another order with 4
			// partitions; each group's records keep their order.
			for _, r := range [][]string{one.records, four.records, one.dead, four.dead} {
				slices.Sort(r)
			}
			if !slices.Equal(one.records, four.records) {
				t.Errorf("records differ: 1 partition %d, 4 partitions %d\n%s", len(one.records), len(four.records), firstDiff(one.records, four.records))
			}
			if !slices.Equal(one.dead, four.dead) {
				t.Errorf("dead letters differ: 1 partition %d, 4 partitions %d\n%s", len(one.dead), len(four.dead), firstDiff(one.dead, four.dead))
			}
			checkWindowModel(t, with, chunks, four)
		})
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference:\n  %s\n  %s", a[i], b[i])
		}
	}
	return "one is a prefix of the other"
}

// checkWindowModel checks a run's final counts and dead letters against the
// windows computed directly from the chunks.
func checkWindowModel(t *testing.T, with string, chunks []wcChunk, run wcRun) {
	t.Helper()
	size, slide, lateness := durOf(t, with, "size"), durOf(t, with, "slide"), durOf(t, with, "allowed_lateness")
	if slide == 0 {
		slide = size
	}
	type win struct {
		group string
		start int64
	}
	want := map[win]int{}
	late := 0
	wm := int64(-1 << 63)
	for _, c := range chunks {
		for _, e := range c.events {
			if e.Type != "product_viewed" {
				continue
			}
			ts := e.Timestamp.UnixNano()
			in := 0
			for s := ts - ts%int64(slide); s > ts-int64(size); s -= int64(slide) {
				if s+int64(size)+int64(lateness) > wm {
					want[win{e.Product.Category, s}]++
					in++
				}
			}
			if in == 0 {
				late++
			}
		}
		wm = c.wm.UnixNano()
	}
	got := map[win]int{}
	revs, spikes := 0, 0
	for _, r := range run.records {
		f := strings.Fields(r)
		if f[1] == "demand_spike" {
			spikes++
			continue
		}
		parts := strings.Split(f[0], "/")
		ms, _ := strconv.ParseInt(parts[2], 10, 64)
		if parts[3] != "0" {
			revs++
		}
		for _, kv := range f[4:] {
			if n, ok := strings.CutPrefix(kv, "count="); ok {
				// Revisions come in order, so the last one wins.
				got[win{parts[1], ms * int64(time.Millisecond)}], _ = strconv.Atoi(n)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d windows with results, want %d", len(got), len(want))
	}
	for w, n := range want {
		if got[w] != n {
			t.Errorf("window %s %s: count %d, want %d", w.group, pipeline.TimeFromNanos(w.start).Format(time.TimeOnly), got[w], n)
		}
	}
	if len(run.dead) != late {
		t.Errorf("%d dead letters, want %d", len(run.dead), late)
	}
	// The input must exercise what it is meant to.
	if revs == 0 || late == 0 {
		t.Errorf("the input has %d late revisions and %d dead letters: want some of each", revs, late)
	}
	if strings.Contains(with, "spike") && spikes == 0 {
		t.Errorf("no demand_spike in %d records", len(run.records))
	}
	t.Logf("%d records (%d late revisions, %d spikes), %d dead letters", len(run.records), revs, spikes, len(run.dead))
}

// durOf reads a duration field of a flow-mapping config.
func durOf(t *testing.T, with, field string) time.Duration {
	_, rest, ok := strings.Cut(with, " "+field+": ")
	if !ok {
		return 0
	}
	v, _, _ := strings.Cut(rest, ",")
	d, err := pipeline.ParseDuration(strings.TrimRight(v, "}"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestWindowCounterConfig checks that bad configs are refused with a
// reason.
func TestWindowCounterConfig(t *testing.T) {
	for _, tc := range []struct{ with, err string }{
		{`{size: 1h}`, "group_by is required"},
		{`{group_by: product.id}`, "size is required"},
		{`{group_by: product.nope, size: 1h}`, `unknown field "product.nope"`},
		{`{group_by: product.id, size: 1h, slide: 2h}`, "longer than size"},
		{`{group_by: product.id, size: 1h, slide: 1ms}`, "more than 1000 windows"},
		{`{group_by: product.id, size: 1500us}`, "whole number of milliseconds"},
		{`{group_by: product.id, size: 1h, aggregate: avg}`, `aggregate "avg"`},
		{`{group_by: product.id, size: 1h, aggregate: sum}`, "needs field"},
		{`{group_by: product.id, size: 1h, aggregate: sum, field: product.id}`, `unknown numeric field "product.id"`},
		{`{group_by: product.id, size: 1h, field: user_id}`, "only for aggregate sum or distinct"},
		{`{group_by: product.id, size: 1h, allowed_lateness: -1m}`, "negative"},
		{`{group_by: product.id, size: 1h, spike: {ratio: -1}}`, "spike.ratio"},
		{`{group_by: product.id, size: 1h, match: 'type =='}`, "match"},
		{`{group_by: product.id, size: 1h, window: 2}`, `unknown field "window"`},
	} {
		spec := fmt.Sprintf("version: 1\nname: wc\nsource: {type: none}\noperators:\n  - id: wc\n    type: window_counter\n    with: %s\n", tc.with)
		_, err := pipeline.ParsePlan([]byte(spec), "test.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want one containing %q", tc.with, err, tc.err)
		}
	}
}

// BenchmarkWindowCounter measures a tumbling 1h count with spike detection
// by product category through the Harness with 4 partitions (so events
// cross the exchange): ns and allocations per event, everything included
// (harness routing, exchange, match, state, timers, results). The
// "harness" case runs the same input through a window counter whose match
// is always false: the cost of the Harness, routing and the match alone.
func BenchmarkWindowCounter(b *testing.B) {
	for _, bc := range []struct{ name, with string }{
		{"harness", `{match: 'type == "none"', group_by: product.category, size: 1h}`},
		{"count", `{match: 'type == "product_viewed"', group_by: product.category, size: 1h, spike: {ratio: 3, baseline_windows: 12, min_count: 20}}`},
		{"distinct", `{match: 'type == "product_viewed"', group_by: product.category, size: 1h, aggregate: distinct, field: user_id}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newWindowCounterHarness(b, 4, bc.with)
			const batch = 1024
			cats := make([]string, 200)
			for i := range cats {
				cats[i] = "c" + strconv.Itoa(i)
			}
			users := make([]string, 5000)
			for i := range users {
				users[i] = "u" + strconv.Itoa(i)
			}
			events := make([]pipeline.Event, batch)
			for i := range events {
				events[i] = pipeline.Event{EventID: "e" + strconv.Itoa(i), Type: "product_viewed", Product: pipeline.Product{ID: "p"}}
			}
			base := pipelinetest.BaseDay
			var at time.Duration
			b.ReportAllocs()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mallocs := ms.Mallocs
			b.ResetTimer()
			n := 0
			for n < b.N {
				k := min(batch, b.N-n)
				for i := range events[:k] {
					e := &events[i]
					e.UserID = users[(n+i)*7919%len(users)]
					e.Product.Category = cats[(n+i)*31%len(cats)]
					// 10 events per second: a window closes every 36,000.
					at += 100 * time.Millisecond
					e.Timestamp = base.Add(at)
				}
				h.Process(events[:k]...)
				h.AdvanceWatermark(base.Add(at - 5*time.Second))
				h.Records()
				n += k
			}
			b.StopTimer()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
			b.ReportMetric(float64(ms.Mallocs-mallocs)/float64(b.N), "allocs/event")
		})
	}
}
