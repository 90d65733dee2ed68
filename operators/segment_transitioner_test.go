package operators

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/expr-lang/expr"

	"github.com/sluicehq/sluice/connectors/generator"
	"github.com/sluicehq/sluice/examples"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/pipeline/pipelinetest"
)

func TestSegmentTransitioner(t *testing.T) {
	pipelinetest.RunScripts(t, "testdata/segment_transitioner*.txt")
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
		_, err := planOf(t, "segs", "segment_transitioner", "\n"+tc.with)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want one containing %q", tc.with, err, tc.err)
			continue
		}
		// Errors of the rules name the operator, its segment and which rule.
		if strings.Contains(tc.with, "enter: \"") && !strings.Contains(err.Error(), `segment_transitioner "segs": segment "s"`) {
			t.Errorf("%s: error %v does not name the operator and segment", tc.with, err)
		}
	}
	if _, err := planOf(t, "segs", "segment_transitioner", "\n"+segWith(`count("a", "1d") > 0 or sessions("2w") >= 1 and not (days_since("b") < 1.5)`, `sum("order.revenue", "a", "1d") > 10`)); err != nil {
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

// TestSegmentRulesCompiled checks that rules compiled to Go give what
// expr's VM gives, for random feature values.
func TestSegmentRulesCompiled(t *testing.T) {
	rules := []string{
		`count("a", "1d") >= 3`,
		`count("a", "1d") >= 3 and not (count("b", "2d") == 0) or days_since("a") > 2.5`,
		`2 * count("a", "1d") - count("b", "2d") + 1 < -count("a", "1d")`,
		`count("a", "1d") / count("b", "2d") > 1.5`,
		`sum("order.revenue", "a", "1d") / count("a", "1d") <= 50`,
		`sum("order.revenue", "a", "1d") - 0.5 * sum("order.revenue", "b", "2d") != 12.5`,
		`sessions("1d") < 0.5 * sessions_between("2d", "1d")`,
		`3 <= days_since("b") || +days_since("a") * -2 >= -7 && true`,
		`!(sessions("1d") == 2) and count("a", "1d") != 1 and 1e5 == days_since("b")`,
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, src := range rules {
		r, err := compileSegmentRules(SegmentTransitionerConfig{Segments: []SegmentConfig{{Name: "s", Enter: src}}})
		if err != nil {
			t.Fatal(err)
		}
		ru := &r.segments[0].enter
		if ru.eval == nil || ru.bound == nil {
			t.Errorf("%s: not compiled to Go", src)
			continue
		}
		vals := make([]float64, len(r.features))
		for range 2000 {
			env := map[string]any{}
			for i, f := range r.features {
				switch f.kind {
				case segCount, segSessions:
					vals[i] = float64(rng.IntN(6))
					env[f.name] = int(vals[i])
				case segSum:
					vals[i] = float64(rng.IntN(601)-300) / 4
					env[f.name] = vals[i]
				default:
					vals[i] = float64(rng.IntN(41)) / 4
					if rng.IntN(4) == 0 {
						vals[i] = segNeverDays
					}
					env[f.name] = vals[i]
				}
			}
			out, err := expr.Run(ru.prog, env)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			if got := ru.eval(vals); got != out {
				t.Fatalf("%s with %v: %v, expr gives %v", src, env, got, out)
			}
		}
	}
}

// TestSegmentEvaluationAllocs checks that computing the features, running
// the rules and searching for the next instant a rule could move the key
// do not allocate.
func TestSegmentEvaluationAllocs(t *testing.T) {
	r, err := compileSegmentRules(SegmentTransitionerConfig{Segments: []SegmentConfig{
		{Name: "high_value", Enter: `count("order_completed", "30d") >= 3`},
		{Name: "winback", Enter: `sessions("30d") < sessions_between("60d", "30d") / 2`},
		{Name: "big_spender", Enter: `sum("order.revenue", "order_completed", "30d") >= 500`},
		{Name: "lapsed", Enter: `count("order_completed", "365d") > 0 and days_since("order_completed") >= 14`},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.segments {
		if s.enter.eval == nil || s.enter.bound == nil {
			t.Fatalf("rule %q is not compiled to Go", s.enter.src)
		}
	}
	o := newSegmentTransitioner(r)
	st := r.newState()
	day := int64(24 * time.Hour)
	for i := range int64(40) {
		at := i * day / 2
		st.series[0] = segInsert(st.series[0], at, 100, 1024)
		st.sessions, _ = segAddSession(st.sessions, at, int64(30*time.Minute), 1024)
		st.last[0] = at
	}
	tm := 20 * day
	allocs := testing.AllocsPerRun(100, func() {
		tm++
		st.clock = tm
		o.now.reset(tm)
		for _, s := range r.segments {
			if _, err := o.run(st, &s.enter, false, &o.now); err != nil {
				t.Fatal(err)
			}
			o.firstTrue(st, &s.enter, false, segNever)
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

// BenchmarkSegmentTransitionerRetail runs the segments of
// examples/retail.yaml over the generator's shoppers (10,000, the retail
// bench's), alone in one partition of a Harness, with the watermark 5s
// behind the events and a checkpoint every 64 batches of 1,024. It reports
// the process CPU ns and allocations per event of the harness and the
// operator (not of generating the events) and the state per shopper.
func BenchmarkSegmentTransitionerRetail(b *testing.B) {
	spec := examples.Operators(examples.Retail)
	_, block, ok := strings.Cut(spec, "  - id: segments\n    type: segment_transitioner\n")
	if !ok {
		b.Fatal("examples/retail.yaml has no segments operator")
	}
	_, block, _ = strings.Cut(block, "    with:\n")
	block, _, _ = strings.Cut(block, "\n\n")
	h := harnessOf(b, "segs", "segment_transitioner", "\n"+block)
	g, err := generator.New(generator.Config{Users: 10000, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	const batch = 1024
	evs := make([]pipeline.Event, batch)
	var cpu, mallocs int64
	var ms runtime.MemStats
	records := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i, batches := 0, 0; i < b.N; i, batches = i+batch, batches+1 {
		b.StopTimer()
		n := min(batch, b.N-i)
		for j := range n {
			evs[j] = pipeline.Event{}
			g.Next(&evs[j])
		}
		runtime.ReadMemStats(&ms)
		m0, c0 := ms.Mallocs, segProcessCPU()
		b.StartTimer()
		records += benchBatch(b, h, evs[:n], batches)
		b.StopTimer()
		cpu += segProcessCPU() - c0
		runtime.ReadMemStats(&ms)
		mallocs += int64(ms.Mallocs - m0)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/event")
	b.ReportMetric(float64(mallocs)/float64(b.N), "mallocs/event")
	b.ReportMetric(float64(records)/float64(b.N), "records/event")
	if err := h.Checkpoint(); err != nil {
		b.Fatal(err)
	}
	size := 0
	if err := h.State().ScanRaw(func(k, v []byte) bool { size += len(k) + len(v); return true }); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size)/10000, "state-B/user")
}

func benchSegments(b *testing.B, with string) {
	const users = 10000
	h := harnessOf(b, "segs", "segment_transitioner", "\n"+with)
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
		records += benchBatch(b, h, evs, batches)
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

// segReference is the segment transitioner as first written, the
// specification the optimized one is checked against: it runs every rule,
// in expr's VM, at every event and at every instant a feature changes (a
// timer at each).
type segReference struct{ o *segmentTransitioner }

func init() {
	pipeline.RegisterOperator("segment_transitioner_reference", func(id string, cfg SegmentTransitionerConfig) (pipeline.Factory, error) {
		r, err := compileSegmentRules(cfg)
		if err != nil {
			return nil, err
		}
		return func() pipeline.Operator { return &segReference{newSegmentTransitioner(r)} }, nil
	})
}

func (s *segReference) Open(oc *pipeline.OpenContext) error { return s.o.Open(oc) }

func (s *segReference) OnEvent(ctx *pipeline.Context, e *pipeline.Event) error {
	st, found, err := s.o.load(ctx.Key())
	if err != nil {
		return err
	}
	at := ctx.TimeNanos()
	t := max(at, st.clock)
	changed, _ := s.o.add(st, e, at, t, math.MinInt64)
	if !changed && found && t == st.clock {
		if at < ctx.WatermarkNanos() {
			ctx.Late(e, "behind the watermark and changes no feature")
		}
		return nil
	}
	return s.evaluate(ctx, st, t)
}

func (s *segReference) OnTimer(ctx *pipeline.Context, tm pipeline.Timer) error {
	st, found, err := s.o.load(ctx.Key())
	if err != nil || !found {
		return err
	}
	st.timer = 0
	return s.evaluate(ctx, st, max(ctx.TimeNanos(), st.clock))
}

func (s *segReference) evaluate(ctx *pipeline.Context, st *segKeyState, t int64) error {
	r := s.o.r
	st.clock = t
	st.prune(r, t)
	env := map[string]any{}
	next := int64(math.MaxInt64)
	for _, f := range r.features {
		var v float64
		switch f.kind {
		case segCount, segSum:
			for _, e := range st.series[f.idx] {
				switch {
				case e.at <= t-f.from:
					continue
				case e.at > t-f.to:
					next = min(next, e.at+f.to)
				case f.kind == segCount:
					v += float64(e.n)
				default:
					v += e.v
				}
				next = min(next, e.at+f.from)
			}
		case segSessions:
			for _, ss := range st.sessions {
				switch {
				case ss.start <= t-f.from:
					continue
				case ss.start > t-f.to:
					next = min(next, ss.start+f.to)
				default:
					v++
				}
				next = min(next, ss.start+f.from)
			}
		case segDaysSince:
			v = segNeverDays
			if last := st.last[f.idx]; last != 0 {
				v = float64(t-last) / float64(segDay)
				if t-last < r.horizon {
					next = min(next, last+((t-last)/segDay+1)*segDay)
				}
			}
		}
		if f.isInt() {
			env[f.name] = int(v)
		} else {
			env[f.name] = v
		}
	}
	var firstErr error
	for i := range r.segments {
		sg := &r.segments[i]
		bit := uint64(1) << i
		in := st.member&bit != 0
		ru, neg, rule := sg.rule(in)
		out, err := expr.Run(ru.prog, env)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("segment %q: rule %q: %w", sg.name, rule, err)
			}
			continue
		}
		if v, _ := out.(bool); v == neg {
			continue
		}
		typ := recordSegmentEntered
		if in {
			typ = recordSegmentExited
		}
		st.member ^= bit
		ctx.EmitRecord(pipeline.Record{Type: typ, Time: pipeline.TimeFromNanos(t), Data: &segmentMove{segment: sg.name, rule: rule, at: t}})
	}
	switch {
	case next == math.MaxInt64:
		if st.timer != 0 {
			ctx.DeleteTimer(segEvalTimer)
			st.timer = 0
		}
	case next != st.timer:
		ctx.SetTimer(segEvalTimer, pipeline.TimeFromNanos(next))
		st.timer = next
	}
	s.o.states.Put(ctx.Key(), st)
	return firstErr
}

// segRandomRules are rules the differential test draws from: every kind of
// feature, rules compiled to Go and rules run by expr's VM, rules that fail
// and segments whose enter and exit rules can be true together.
var segRandomRules = [][2]string{
	{`count("a", "2d") >= 2`, ``},
	{`count("b", "1d") >= 1 and count("a", "3d") == 0`, ``},
	{`sum("order.revenue", "a", "2d") > 150`, ``},
	{`sum("order.revenue", "b", "3d") < -20`, `sum("order.revenue", "b", "3d") >= 0`},
	{`sessions("2d") >= 2`, `sessions("2d") < 1`},
	{`sessions("1d") < 0.5 * sessions_between("2d", "1d")`, ``},
	{`sessions_between("3d", "1d") - sessions("1d") >= 2`, ``},
	{`days_since("a") >= 1.5 and count("a", "5d") > 0`, ``},
	{`days_since("b") < 0.5`, ``},
	{`days_since("a") > 2`, ``},
	{`3 <= days_since("b") or count("c", "1d") > 2`, ``},
	{`days_since("a") * 2 > count("b", "2d") + 1`, ``},
	{`not (days_since("a") == 1) and days_since("a") != 1e5`, ``},
	{`count("a", "1d") % 2 == 1`, ``},
	{`count("a", "1d") % count("b", "1d") == 0`, ``},
	{`count("a", "1d") >= 1`, `count("b", "1d") >= 0`},
	{`abs(count("a", "1d") - 2) < 1`, ``},
	{`2 * count("a", "1d") - count("b", "2d") >= 3`, ``},
	{`count("a", "1d") / 2 > 1 or -count("c", "2d") < -2`, ``},
	{`sum("order.revenue", "a", "1d") / count("a", "1d") > 50`, ``},
	{`true`, `count("c", "1d") >= 2`},
	{`count("a", "1d") != count("b", "1d") and +count("c", "2d") <= 1`, ``},
	{`days_since("b") <= 0.75 and count("a", "2d") >= 1`, ``},
	{`-days_since("a") > -1 or days_since("c") > 1.25`, ``},
	{`sum("order.revenue", "a", "2d") - sum("order.revenue", "b", "3d") + 0.5 > 100`, ``},
	{`abs(sum("order.revenue", "a", "2d")) > 120 or days_since("d") ** 2 > 4`, ``},
}

// TestSegmentSolveDays checks the instant at which days_since reaches a
// value against a search of every instant near it.
func TestSegmentSolveDays(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	day := float64(24 * time.Hour)
	for range 2000 {
		last := rng.Int64N(1 << 62)
		from := last + 1 + rng.Int64N(int64(10*day))
		x := rng.Float64() * 12
		switch rng.IntN(4) {
		case 0:
			x = math.Round(x*4) / 4 // whole quarters: exact instants
		case 1:
			x = float64(from-last) / day // exactly at from
		case 2:
			// Far from the last event days_since is coarse: whole
			// microseconds share one value.
			last = rng.Int64N(1 << 40)
			from = last + 1
			x = 1e5 + rng.Float64()
		}
		strict := rng.IntN(2) == 0
		ok := func(s int64) bool {
			d := float64(s-last) / day
			return d > x || !strict && d == x
		}
		got := segSolveDays(last, from, x, strict)
		if got < from || !ok(got) || got > from && ok(got-1) {
			t.Errorf("segSolveDays(%d, %d, %v, %v) = %d: not the first instant from %d", last, from, x, strict, got, from)
		}
	}
	if got := segSolveDays(0, 1, 1e300, false); got != segNever {
		t.Errorf("days_since >= 1e300: %d, want never", got)
	}
	if got := segSolveDays(-int64(day), 1, 106752, false); got != segNever {
		t.Errorf("days_since >= 106752 from before 1970: %d, want never", got)
	}
}

// TestSegmentTransitionerMatchesReference runs random rules over random
// input (out of order, late, with watermark jumps, checkpoints and
// restarts) through the segment transitioner and segReference, and checks
// that both emit the same records, with the same ids, in the same order,
// and the same dead letters.
func TestSegmentTransitionerMatchesReference(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	for seed := range uint64(seeds) {
		if !t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { segCompareRandom(t, seed) }) {
			return
		}
	}
}

func segCompareRandom(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	with := ""
	switch rng.IntN(4) {
	case 0:
		with += "      days_since_horizon: 3d\n"
	case 1:
		with += "      days_since_horizon: 60h\n"
	}
	if rng.IntN(3) == 0 {
		with += "      max_entries: 3\n"
	}
	if rng.IntN(2) == 0 {
		with += "      session_gap: 6h\n"
	}
	with += "      segments:\n"
	for i := range 1 + rng.IntN(4) {
		rule := segRandomRules[rng.IntN(len(segRandomRules))]
		with += fmt.Sprintf("        - name: s%d\n          enter: %s\n", i, strconv.Quote(rule[0]))
		if rule[1] != "" {
			with += "          exit: " + strconv.Quote(rule[1]) + "\n"
		}
	}
	hs := [2]*pipeline.Harness{
		harnessOf(t, "segs", "segment_transitioner", "\n"+with),
		harnessOf(t, "segs", "segment_transitioner_reference", "\n"+with),
	}
	var log []string
	check := func() {
		t.Helper()
		var out [2][]string
		for i, h := range hs {
			for _, r := range h.Records() {
				out[i] = append(out[i], fmt.Sprintf("%s %s %s %s", r.ID, r.Type, r.Time.UTC().Format(time.RFC3339Nano), r.Data.(*segmentMove).AppendJSON(nil)))
			}
			for _, d := range h.DeadLetters() {
				out[i] = append(out[i], "dead: "+d.Reason+" "+string(d.Payload))
			}
		}
		if !slices.Equal(out[0], out[1]) {
			t.Fatalf("seed %d, rules:\n%s\nafter:\n  %s\ngot:\n  %s\nwant:\n  %s", seed, with,
				strings.Join(log, "\n  "), strings.Join(out[0], "\n  "), strings.Join(out[1], "\n  "))
		}
	}
	base := pipelinetest.BaseDay
	now := base // the latest event time
	wm := base
	types := []string{"a", "b", "c", "d"}
	id := 0
	for range 60 {
		switch x := rng.IntN(20); {
		case x < 12:
			var evs []pipeline.Event
			for range 1 + rng.IntN(4) {
				at := now
				switch y := rng.IntN(10); {
				case y < 6:
					at = now.Add(time.Duration(rng.Int64N(int64(20 * time.Hour))))
					now = at
				case y < 8: // out of order, maybe late
					at = now.Add(-time.Duration(rng.Int64N(int64(50 * time.Hour))))
				default:
					at = now.Add(time.Duration(rng.IntN(3)) * 30 * time.Minute)
					now = at
				}
				id++
				e := pipeline.Event{
					EventID:   "e" + strconv.Itoa(id),
					Type:      types[rng.IntN(len(types))],
					UserID:    "u" + strconv.Itoa(rng.IntN(3)),
					Timestamp: at,
				}
				if rng.IntN(3) > 0 {
					e.Order.ID, e.Order.Revenue = e.EventID, float64(rng.IntN(300)-100)
				}
				evs = append(evs, e)
				log = append(log, fmt.Sprintf("%s %s %s %s rev=%v", e.EventID, e.UserID, e.Timestamp.Sub(base), e.Type, e.Order.Revenue))
			}
			log = append(log, "(round)")
			for _, h := range hs {
				h.Process(evs...)
			}
		case x < 17:
			step := time.Duration(rng.Int64N(int64(30 * time.Hour)))
			if rng.IntN(4) == 0 {
				step *= 10
			}
			next := now.Add(-time.Duration(rng.Int64N(int64(10 * time.Hour))))
			if next.Before(wm.Add(step / 4)) {
				next = wm.Add(step / 4)
			}
			if next.After(wm) {
				wm = next
			}
			log = append(log, fmt.Sprintf("watermark %s", wm.Sub(base)))
			for _, h := range hs {
				h.AdvanceWatermark(wm)
			}
		case x < 19:
			log = append(log, "checkpoint")
			for _, h := range hs {
				if err := h.Checkpoint(); err != nil {
					t.Fatal(err)
				}
			}
		default:
			log = append(log, "restart")
			for _, h := range hs {
				if err := h.Restart(); err != nil {
					t.Fatal(err)
				}
			}
		}
		check()
	}
	log = append(log, "end")
	for _, h := range hs {
		h.EndOfInput()
	}
	check()
	// Once time has run out, every key is evaluated at the last instant a
	// feature changed: the states are the same (pruned), and no timer is
	// left.
	var stores [2][]string
	for i, h := range hs {
		if err := h.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		if err := h.State().ScanRaw(func(k, v []byte) bool {
			if bytes.Contains(k, []byte("state")) || bytes.Contains(k, []byte("eval")) {
				stores[i] = append(stores[i], fmt.Sprintf("%q=%x", k, v))
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(stores[0], stores[1]) {
		t.Fatalf("seed %d, rules:\n%s\nafter:\n  %s\nstore:\n  %s\nwant:\n  %s", seed, with,
			strings.Join(log, "\n  "), strings.Join(stores[0], "\n  "), strings.Join(stores[1], "\n  "))
	}
}
