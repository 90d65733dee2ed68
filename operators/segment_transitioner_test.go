package operators

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/pipeline/pipelinetest"
)

func TestSegmentTransitioner(t *testing.T) {
	pipelinetest.RunScripts(t, "testdata/segment_transitioner*.txt")
}

// segPlan plans a pipeline of one segment transitioner with id segs.
func segPlan(tb testing.TB, with string) (*pipeline.Plan, error) {
	tb.Helper()
	spec := fmt.Sprintf("version: 1\nname: segs\nsource: {type: none}\npartitions: 1\nstate: {dir: %q, sync: never}\noperators:\n  - id: segs\n    type: segment_transitioner\n    with:\n%s\n",
		tb.TempDir(), with)
	parsed, err := pipeline.ParseSpec([]byte(spec), "test.yaml")
	if err != nil {
		return nil, err
	}
	return pipeline.NewPlan(parsed)
}

// segWith writes a with block of one segment with the given rules.
func segWith(enter, exit string) string {
	w := "      segments:\n        - name: s\n          enter: " + strconv.Quote(enter) + "\n"
	if exit != "" {
		w += "          exit: " + strconv.Quote(exit) + "\n"
	}
	return w
}

func TestSegmentTransitionerBadConfig(t *testing.T) {
	for _, tc := range []struct{ with, err string }{
		{segWith(`count("order_completed") >= 3`, ""), "count takes 2 arguments, got 1"},
		{segWith(`count(type, "30d") >= 3`, ""), "count: argument 1 must be a string literal"},
		{segWith(`count("order_completed", "30q") >= 3`, ""), `count: invalid duration "30q"`},
		{segWith(`count("order_completed", "0s") >= 3`, ""), `range "0s" must be positive`},
		{segWith(`count("", "1d") >= 3`, ""), "the event type is empty"},
		{segWith(`sessions("6000w") >= 3`, ""), "longer than 100 years"},
		{segWith(`sum("product.id", "order_completed", "1d") > 1`, ""), `unknown numeric field "product.id"`},
		{segWith(`sessions_between("30d", "60d") > 0`, ""), "from (30d) must be longer than to (60d)"},
		{segWith(`days_since("order_completed") >`, ""), "unexpected token EOF"},
		{segWith(`count("order_completed", "1d")`, ""), "expected bool"},
		{segWith(`days_since("x") > 1 and foo`, ""), "unknown name foo"},
		{segWith(`now() != nil`, ""), "now"},
		{segWith(`count("a", "1d") > 0`, `sessions("1d") > "x"`), "exit rule"},
		{"      segments: []\n", "at least one segment"},
		{"      segments:\n        - name: s\n", "enter is required"},
		{"      segments:\n        - {name: s, enter: 'true'}\n        - {name: s, enter: 'true'}\n", `duplicate name "s"`},
		{"      segments:\n        - {enter: 'true'}\n", "name is required"},
		{"      session_gap: -1m\n      segments:\n        - {name: s, enter: 'true'}\n", "session_gap"},
		{"      segments:\n        - {name: s, enter: 'true', when: x}\n", `unknown field "when"`},
	} {
		_, err := segPlan(t, tc.with)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want one containing %q", tc.with, err, tc.err)
			continue
		}
		// Errors of the rules name the operator, its segment and which rule.
		if strings.Contains(tc.with, "enter: \"") && !strings.Contains(err.Error(), `segment_transitioner "segs": segment "s"`) {
			t.Errorf("%s: error %v does not name the operator and segment", tc.with, err)
		}
	}
	if _, err := segPlan(t, segWith(`count("a", "1d") > 0 or sessions("2w") >= 1 and not (days_since("b") < 1.5)`, `sum("order.revenue", "a", "1d") > 10`)); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// segTestRules compiles rules that use every kind of feature.
func segTestRules(t testing.TB) *segmentRules {
	t.Helper()
	r, err := compileSegmentRules(SegmentTransitionerConfig{Segments: []SegmentConfig{
		{Name: "a", Enter: `count("order_completed", "30d") >= 3 and sessions("30d") >= sessions_between("60d", "30d")`},
		{Name: "b", Enter: `sum("order.revenue", "order_completed", "30d") > 100 or days_since("product_viewed") > 2`,
			Exit: `count("product_viewed", "7d") == 0`},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSegmentStateCodec(t *testing.T) {
	r := segTestRules(t)
	c := segStateCodec{r}
	st := r.newState()
	st.clock = pipelinetest.BaseDay.UnixNano()
	st.timer = st.clock + int64(time.Hour)
	st.member = 2
	for i, s := range r.series {
		for j := range 3 {
			v := 0.0
			if s.field != "" {
				v = 12.5 * float64(j+1)
			}
			st.series[i] = append(st.series[i], segEntry{at: st.clock - int64(10-j)*int64(time.Hour) - int64(i), n: int64(j + 1), v: v})
		}
	}
	st.sessions = []segSession{{st.clock - 50*int64(time.Hour), st.clock - 49*int64(time.Hour)}, {st.clock - 1, st.clock}}
	st.last[0] = st.clock - 7
	got, err := c.Decode(c.Append(nil, st))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, st)
	}

	// An empty state round-trips too.
	empty := r.newState()
	if got, err := c.Decode(c.Append(nil, empty)); err != nil || !reflect.DeepEqual(got, empty) {
		t.Errorf("empty round trip: %+v, %v", got, err)
	}

	// State written under other rules starts afresh but keeps its clock.
	other, err := compileSegmentRules(SegmentTransitionerConfig{Segments: []SegmentConfig{{Name: "a", Enter: `count("x", "1d") > 0`}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err = segStateCodec{other}.Decode(c.Append(nil, st))
	if err != nil || !got.stale || got.clock != st.clock || got.member != 0 {
		t.Errorf("other rules: %+v, %v; want a stale fresh state at the clock", got, err)
	}

	// Truncated and padded encodings are errors.
	enc := c.Append(nil, st)
	for _, bad := range [][]byte{enc[:len(enc)-1], append(enc[:len(enc):len(enc)], 0), {9}, nil} {
		if _, err := c.Decode(bad); err == nil {
			t.Errorf("decode of %d bad bytes: no error", len(bad))
		}
	}
}

func TestSegmentSessions(t *testing.T) {
	const gap = 30
	type sess = segSession
	for _, tc := range []struct {
		name    string
		in      []int64
		want    []sess
		changed bool // for the last event
	}{
		{"in order", []int64{0, 10, 40, 69, 100}, []sess{{0, 10}, {40, 69}, {100, 100}}, true},
		{"exactly the gap", []int64{0, 30}, []sess{{0, 0}, {30, 30}}, true},
		{"inside", []int64{0, 20, 10}, []sess{{0, 20}}, false},
		{"extends backwards", []int64{100, 80}, []sess{{80, 100}}, true},
		{"extends a past session", []int64{0, 100, 20}, []sess{{0, 20}, {100, 100}}, true},
		{"merges two", []int64{0, 50, 25}, []sess{{0, 50}}, true},
		{"before all", []int64{100, 200, 10}, []sess{{10, 10}, {100, 100}, {200, 200}}, true},
		{"between", []int64{0, 200, 100}, []sess{{0, 0}, {100, 100}, {200, 200}}, true},
	} {
		var ss []segSession
		var changed bool
		for _, at := range tc.in {
			ss, changed = segAddSession(ss, at, gap, 100)
		}
		if !reflect.DeepEqual(ss, tc.want) || changed != tc.changed {
			t.Errorf("%s: %v changed=%v, want %v changed=%v", tc.name, ss, changed, tc.want, tc.changed)
		}
	}
	// The cap drops the oldest session.
	var ss []segSession
	for i := range int64(5) {
		ss, _ = segAddSession(ss, i*100, gap, 3)
	}
	if want := []segSession{{200, 200}, {300, 300}, {400, 400}}; !reflect.DeepEqual(ss, want) {
		t.Errorf("capped: %v, want %v", ss, want)
	}
}

func TestSegmentInsert(t *testing.T) {
	var es []segEntry
	for _, at := range []int64{10, 30, 20, 30, 5, 20} {
		es = segInsert(es, at, 1, 100)
	}
	want := []segEntry{{5, 1, 1}, {10, 1, 1}, {20, 2, 2}, {30, 2, 2}}
	if !reflect.DeepEqual(es, want) {
		t.Errorf("insert: %v, want %v", es, want)
	}
	// Past the cap, the two oldest times merge into the later one: no event
	// is lost.
	es = segInsert(es, 40, 1, 4)
	want = []segEntry{{10, 2, 2}, {20, 2, 2}, {30, 2, 2}, {40, 1, 1}}
	if !reflect.DeepEqual(es, want) {
		t.Errorf("capped: %v, want %v", es, want)
	}
}

// TestSegmentEvaluationAllocs checks that computing the features and running
// the rules does not allocate when the values are ints (counts, sessions)
// or unchanged floats.
func TestSegmentEvaluationAllocs(t *testing.T) {
	r, err := compileSegmentRules(SegmentTransitionerConfig{Segments: []SegmentConfig{
		{Name: "high_value", Enter: `count("order_completed", "30d") >= 3`},
		{Name: "winback", Enter: `sessions("30d") < sessions_between("60d", "30d") / 2`},
		{Name: "big_spender", Enter: `sum("order.revenue", "order_completed", "30d") >= 500`},
	}})
	if err != nil {
		t.Fatal(err)
	}
	o := newSegmentTransitioner(r)
	st := r.newState()
	day := int64(24 * time.Hour)
	for i := range int64(40) {
		at := i * day / 2
		st.series[0] = segInsert(st.series[0], at, 100, 1024)
		st.sessions, _ = segAddSession(st.sessions, at, int64(30*time.Minute), 1024)
	}
	tm := 20 * day
	allocs := testing.AllocsPerRun(100, func() {
		tm++
		o.computeFeatures(st, tm)
		for _, s := range r.segments {
			if _, err := o.vm.Run(s.enter, o.env); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per evaluation, want 0", allocs)
	}
}

// segProcessCPU returns the CPU time the process has used, in nanoseconds:
// on a shared machine it says more than the wall time.
func segProcessCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkSegmentTransitioner runs 10,000 users' shopping events through a
// segment transitioner, with five segments using every kind of feature or
// with high_value alone, in
// one partition of a Harness: each user has an event every 10,000 s of
// event time (so most events start a session, and 1M events span 11.6
// days), the watermark follows the events and the state is checkpointed
// every 64 batches of 1,024. It reports wall and process CPU ns and
// allocations per event, everything included (harness, state, timers,
// records, GC, Pebble's background work).
func BenchmarkSegmentTransitioner(b *testing.B) {
	b.Run("five_segments", func(b *testing.B) {
		benchSegments(b, `      segments:
        - {name: high_value, enter: 'count("order_completed", "30d") >= 3'}
        - {name: big_spender, enter: 'sum("order.revenue", "order_completed", "30d") >= 500'}
        - {name: winback, enter: 'sessions("30d") < 0.5 * sessions_between("60d", "30d")'}
        - {name: lapsed, enter: 'count("order_completed", "365d") > 0 and days_since("order_completed") >= 14'}
        - {name: engaged, enter: 'count("product_viewed", "7d") >= 20', exit: 'count("product_viewed", "7d") < 5'}
`)
	})
	b.Run("high_value", func(b *testing.B) {
		benchSegments(b, `      segments:
        - {name: high_value, enter: 'count("order_completed", "30d") >= 3'}
`)
	})
}

func benchSegments(b *testing.B, with string) {
	const users = 10000
	plan, err := segPlan(b, with)
	if err != nil {
		b.Fatal(err)
	}
	h, err := pipeline.NewHarness(plan)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = h.Close() }()
	mix := []string{
		"product_viewed", "product_viewed", "product_viewed", "product_viewed", "product_viewed",
		"product_viewed", "product_viewed", "product_viewed", "product_viewed", "product_viewed",
		"page_viewed", "page_viewed", "page_viewed", "page_viewed",
		"product_added", "product_added", "cart_viewed", "checkout_started", "order_completed", "products_searched",
	}
	events := make([]pipeline.Event, 1<<16)
	for i := range events {
		u := (i * 7919) % users
		events[i] = pipeline.Event{
			EventID: "e" + strconv.Itoa(i),
			Type:    mix[(i/users*7+u*3)%len(mix)],
			UserID:  "u" + strconv.Itoa(u),
			Product: pipeline.Product{ID: "p" + strconv.Itoa(i%500), Price: 20},
			Order:   pipeline.Order{ID: "o" + strconv.Itoa(i), Revenue: 180},
		}
	}
	const batch = 1024
	step := time.Second
	base := pipelinetest.BaseDay
	evs := make([]pipeline.Event, 0, batch)
	records := 0
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := segProcessCPU()
	for i, batches := 0, 0; i < b.N; i, batches = i+batch, batches+1 {
		n := min(batch, b.N-i)
		evs = evs[:0]
		for j := range n {
			e := events[(i+j)%len(events)]
			e.Timestamp = base.Add(time.Duration(i+j) * step)
			evs = append(evs, e)
		}
		h.Process(evs...)
		h.AdvanceWatermark(evs[n-1].Timestamp.Add(-5 * time.Second))
		records += len(h.Records())
		if batches%64 == 63 {
			if err := h.Checkpoint(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
	b.ReportMetric(float64(segProcessCPU()-cpu0)/float64(b.N), "cpu-ns/event")
	b.ReportMetric(float64(records)/float64(b.N), "records/event")
	// The store's size per user: state and timers, keys included.
	if err := h.Checkpoint(); err != nil {
		b.Fatal(err)
	}
	size := 0
	if err := h.State().ScanRaw(func(k, v []byte) bool { size += len(k) + len(v); return true }); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size)/users, "state-B/user")
}
