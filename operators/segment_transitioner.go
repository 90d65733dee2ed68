package operators

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/state"
)

// SegmentTransitionerConfig configures a segment transitioner.
type SegmentTransitionerConfig struct {
	// Segments are the named segments, evaluated in this order. At most 64.
	Segments []SegmentConfig `yaml:"segments"`
	// SessionGap splits a key's events into sessions for sessions() and
	// sessions_between(), as the sessionizer does: an event at least this
	// long after the previous one starts a new session. Default 30m.
	SessionGap pipeline.Duration `yaml:"session_gap"`
	// MaxEntries bounds each per-key list the rules need (the distinct event
	// times of a type, the sessions). Beyond it the two oldest event times
	// merge into the later one (their events then count as if they happened
	// then), and the oldest session is dropped. Default 1024, at least 2.
	MaxEntries int `yaml:"max_entries"`
	// DaysSinceHorizon stops the daily re-evaluation that days_since()
	// needs once every days_since value of the key is at least this long
	// (the value is still exact at the key's next event). Default 365d.
	DaysSinceHorizon pipeline.Duration `yaml:"days_since_horizon"`
}

// SegmentConfig is one segment of a segment transitioner.
type SegmentConfig struct {
	// Name names the segment in the records.
	Name string `yaml:"name"`
	// Enter is the rule that moves a key into the segment.
	Enter string `yaml:"enter"`
	// Exit is the rule that moves a key out of the segment; by default a
	// key leaves when Enter becomes false.
	Exit string `yaml:"exit"`
}

// Validate checks the config.
func (c SegmentTransitionerConfig) Validate() error {
	if len(c.Segments) == 0 {
		return errors.New("segments: at least one segment is required")
	}
	if len(c.Segments) > 64 {
		return fmt.Errorf("segments: %d segments, at most 64", len(c.Segments))
	}
	seen := make(map[string]bool, len(c.Segments))
	for i, s := range c.Segments {
		if s.Name == "" {
			return fmt.Errorf("segments[%d]: name is required", i)
		}
		if seen[s.Name] {
			return fmt.Errorf("segments[%d]: duplicate name %q", i, s.Name)
		}
		seen[s.Name] = true
		if s.Enter == "" {
			return fmt.Errorf("segment %q: enter is required", s.Name)
		}
	}
	if c.SessionGap < 0 {
		return errors.New("session_gap: must not be negative")
	}
	if c.MaxEntries < 0 {
		return errors.New("max_entries: must not be negative")
	}
	if c.DaysSinceHorizon < 0 {
		return errors.New("days_since_horizon: must not be negative")
	}
	return nil
}

func init() {
	pipeline.RegisterOperator("segment_transitioner", func(id string, cfg SegmentTransitionerConfig) (pipeline.Factory, error) {
		r, err := compileSegmentRules(cfg)
		if err != nil {
			return nil, fmt.Errorf("segment_transitioner %q: %w", id, err)
		}
		return func() pipeline.Operator { return newSegmentTransitioner(r) }, nil
	})
}

// Segment record types.
const (
	recordSegmentEntered = "segment_entered"
	recordSegmentExited  = "segment_exited"
)

const (
	segDay = int64(24 * time.Hour)
	// segNeverDays is what days_since returns for a type the key never had.
	segNeverDays = 100000.0
	// segMaxRange bounds ranges, so that event time + range cannot
	// overflow.
	segMaxRange = 36500 * segDay
	// segEvalTimer is the name of the key's re-evaluation timer.
	segEvalTimer = "eval"
)

// segmentTransitioner moves each key in and out of named segments by rules
// over rolling features of the key's own events, and emits
// `segment_entered` / `segment_exited` {segment, rule, at} at each move.
//
// # Rules
//
// A rule is an expr-lang boolean expression; comparisons, arithmetic,
// and/or/not and expr's builtins are allowed (not now(): results must
// depend on event time only). Its features are function calls whose
// arguments are string literals:
//
//   - count("<type>", "<range>"): the number of the key's events of the
//     type in the trailing range (t - range, t], an int.
//   - sum("<field>", "<type>", "<range>"): the sum of a numeric field
//     (product.price, product.quantity, order.revenue, search.results,
//     properties.<name>) over those events, a float; events without the
//     field add nothing (product fields read `product`, not `products`).
//   - days_since("<type>"): fractional days since the key's last event of
//     the type, a float; 100000 if the key never had one.
//   - sessions("<range>"): the number of the key's sessions that started in
//     (t - range, t], an int. Sessions follow the sessionizer's rule with
//     session_gap (default 30m) and include the current one.
//   - sessions_between("<from>", "<to>"): sessions that started in
//     (t - from, t - to]; from must be longer than to.
//
// t is the evaluation time. Ranges are durations with d and w units.
//
// # Evaluation
//
// Rules are evaluated on every event of the key, after the event is
// counted, and on the key's timer. A key starts outside every segment.
// For a segment the key is outside of, a true enter rule moves it in; for
// one it is in, a true exit rule (or a false enter rule when exit is not
// set) moves it out; at most one move per segment and evaluation, in the
// order of the segments. The record's rule is the source of the rule that
// fired; a default exit shows as `not (<enter>)`. The record's time and
// its `at` are the evaluation time. An event that changes no feature and
// does not move the key's clock (below) is not evaluated: nothing could
// change. Nor is one that changes no feature and moves the clock short of
// the key's timer, when no days_since type has occurred and the key's
// last evaluation moved nothing and failed nothing: the features keep
// their values, so the rules their results. (A segment whose enter and
// exit rules are true together moves at every evaluation.) A rule that fails at run time (a modulo by zero)
// moves nothing; the error is returned, so the event goes to the
// dead-letter output with it, counted all the same.
//
// So that time alone can move a key, every evaluation sets an event-time
// timer at the next instant a feature could change: when the oldest event
// or session start in a range leaves it (an event at e leaves a trailing
// range r at exactly e + r), when one enters a sessions_between range, and
// for days_since at the next whole day since the last event of the type
// (so `days_since(x) >= 7` moves at exactly 7 days, `> 7` up to a day
// later), until days_since_horizon. The timer fires when the watermark
// passes it, or just before the key's next event at or after it.
//
// # Time order and lateness
//
// Each key has an evaluation clock: the latest of its event times and
// timer times so far. An event is evaluated at max(its time, the clock),
// so a key's records never go back in time. An out-of-order or late event
// is still counted by every range that includes its time at that clock
// (and updates days_since when it is the latest of its type); only an
// event behind the watermark that changes nothing (older than every range
// that uses it, or of a type no rule uses, and not moving the clock) goes
// to the late side output. The first events of a key have no clock to
// follow: when they are late, they are evaluated at their own times,
// behind the watermark, and a timer they set there fires at the next
// move of the watermark.
//
// # State
//
// Per key, only what the rules need: the clock, the memberships, per
// referenced (type, field) the sorted distinct event times in the longest
// range that uses them (with counts and sums), the sessions whose start
// can still count, and the last time of each days_since type; entries that
// no range can reach any more are pruned at each evaluation, and each list
// is capped by max_entries. After everything has aged out a key keeps a
// few bytes (clock, memberships, last times) so that its records stay in
// time order. The state is encoded in a compact binary form stamped with
// a fingerprint of the rules' features and segment names; a key stored
// under other rules starts afresh (outside every segment).
type segmentTransitioner struct {
	r      *segmentRules
	states *state.Value[*segKeyState]
	vm     vm.VM
	// env holds the feature values the programs read, by feature name.
	env map[string]any
	// vals mirrors env to skip writes of unchanged values (a float written
	// to env is boxed, which allocates).
	vals   []float64
	logger *slog.Logger
	warned bool
}

// segmentRules is the compiled, shared form of a config.
type segmentRules struct {
	segments []compiledSegment
	features []segFeature
	series   []segSeries
	// byType maps an event type to what it feeds.
	byType map[string]segTypeUse
	// daysTypes are the types days_since uses, by index.
	daysTypes []string
	// sessRange is the longest session range (0: no session feature).
	sessRange   int64
	gap         int64
	maxEntries  int
	horizon     int64
	fingerprint uint32
}

type compiledSegment struct {
	name     string
	enter    *vm.Program
	exit     *vm.Program // nil: the key leaves when enter is false
	enterSrc string
	exitSrc  string // the exit rule, or "not (<enter>)"
}

// segTypeUse is what events of one type feed.
type segTypeUse struct {
	series []int
	days   int // index in daysTypes, or -1
}

// segSeries is a time-ordered list of a key's events of one type, with the
// sum of one field when field is set.
type segSeries struct {
	typ      string
	field    string
	num      func(e *pipeline.Event) (float64, bool)
	maxRange int64
}

type segFeatureKind uint8

const (
	segCount segFeatureKind = iota
	segSum
	segSessions
	segDaysSince
)

// segFeature is one distinct function call of the rules.
type segFeature struct {
	name string // the env key: the call as written canonically
	kind segFeatureKind
	// idx is the series (count, sum) or days type (days_since) index.
	idx      int
	from, to int64 // the range (t - from, t - to], nanoseconds
}

func (f *segFeature) isInt() bool { return f.kind == segCount || f.kind == segSessions }

// segFuncs are the feature functions, declared so that expr parses them as
// calls (count and sum are also expr builtins) and checks their arity.
var segFuncs = []expr.Option{
	expr.Function("count", segUnbound, new(func(string, string) int)),
	expr.Function("sum", segUnbound, new(func(string, string, string) float64)),
	expr.Function("days_since", segUnbound, new(func(string) float64)),
	expr.Function("sessions", segUnbound, new(func(string) int)),
	expr.Function("sessions_between", segUnbound, new(func(string, string) int)),
}

// segUnbound stands for the feature functions: the compiler replaces every
// call by a read of its feature's value from the environment, so it never
// runs.
func segUnbound(...any) (any, error) { return nil, errors.New("feature function not bound") }

// compileSegmentRules parses every rule, collects the features they call,
// and compiles each rule against an environment holding those features.
func compileSegmentRules(cfg SegmentTransitionerConfig) (*segmentRules, error) {
	r := &segmentRules{
		byType:     map[string]segTypeUse{},
		gap:        int64(30 * time.Minute),
		maxEntries: 1024,
		horizon:    365 * segDay,
	}
	if cfg.SessionGap > 0 {
		r.gap = int64(cfg.SessionGap)
	}
	if cfg.MaxEntries > 0 {
		r.maxEntries = max(cfg.MaxEntries, 2)
	}
	if cfg.DaysSinceHorizon > 0 {
		r.horizon = int64(cfg.DaysSinceHorizon)
	}
	c := &segCollector{r: r, byName: map[string]int{}, seriesIdx: map[[2]string]int{}, daysIdx: map[string]int{}}
	type ruleSrc struct{ seg, which, src string }
	var rules []ruleSrc
	for _, s := range cfg.Segments {
		rules = append(rules, ruleSrc{s.Name, "enter", s.Enter})
		if s.Exit != "" {
			rules = append(rules, ruleSrc{s.Name, "exit", s.Exit})
		}
	}
	// Pass 1: parse each rule and collect its features.
	pcfg := conf.CreateNew()
	for _, o := range segFuncs {
		o(pcfg)
	}
	for _, rs := range rules {
		tree, err := parser.ParseWithConfig(rs.src, pcfg)
		if err != nil {
			return nil, fmt.Errorf("segment %q: %s rule: %w", rs.seg, rs.which, err)
		}
		c.src, c.err = rs.src, nil
		ast.Walk(&tree.Node, c)
		if c.err != nil {
			return nil, fmt.Errorf("segment %q: %s rule: %w", rs.seg, rs.which, c.err)
		}
	}
	// Pass 2: compile each rule with its calls replaced by feature names.
	opts := append([]expr.Option{
		expr.Env(r.newEnv()), expr.AsBool(), expr.DisableBuiltin("now"), expr.Patch(segPatcher{c}),
	}, segFuncs...)
	compile := func(seg, which, src string) (*vm.Program, error) {
		p, err := expr.Compile(src, opts...)
		if err != nil {
			return nil, fmt.Errorf("segment %q: %s rule: %w", seg, which, err)
		}
		return p, nil
	}
	for _, s := range cfg.Segments {
		cs := compiledSegment{name: s.Name, enterSrc: s.Enter, exitSrc: "not (" + s.Enter + ")"}
		var err error
		if cs.enter, err = compile(s.Name, "enter", s.Enter); err != nil {
			return nil, err
		}
		if s.Exit != "" {
			cs.exitSrc = s.Exit
			if cs.exit, err = compile(s.Name, "exit", s.Exit); err != nil {
				return nil, err
			}
		}
		r.segments = append(r.segments, cs)
	}
	// What each event type feeds.
	for i, s := range r.series {
		u, ok := r.byType[s.typ]
		if !ok {
			u.days = -1
		}
		u.series = append(u.series, i)
		r.byType[s.typ] = u
	}
	for i, t := range r.daysTypes {
		u := r.byType[t]
		u.days = i
		r.byType[t] = u
	}
	// The fingerprint of the state layout.
	h := fnv.New32a()
	for _, s := range r.series {
		fmt.Fprintf(h, "s%q%q;", s.typ, s.field)
	}
	for _, t := range r.daysTypes {
		fmt.Fprintf(h, "d%q;", t)
	}
	fmt.Fprintf(h, "S%v;", r.sessRange > 0)
	for _, s := range r.segments {
		fmt.Fprintf(h, "g%q;", s.name)
	}
	r.fingerprint = h.Sum32()
	return r, nil
}

// segCollector walks a parsed rule, checks its feature calls and records
// their features.
type segCollector struct {
	r         *segmentRules
	src       string
	err       error
	byName    map[string]int
	seriesIdx map[[2]string]int
	daysIdx   map[string]int
}

// Visit implements ast.Visitor.
func (c *segCollector) Visit(node *ast.Node) {
	call, ok := (*node).(*ast.CallNode)
	if !ok || c.err != nil {
		return
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok {
		return
	}
	if _, err := c.feature(id.Value, call); err != nil {
		c.err = (&file.Error{Location: call.Location(), Message: err.Error()}).Bind(file.NewSource(c.src))
	}
}

// feature returns the index of the feature a call stands for, adding it if
// new; ok is false when the call is not a feature function.
func (c *segCollector) feature(fn string, call *ast.CallNode) (int, error) {
	var arity int
	switch fn {
	case "count", "sessions_between":
		arity = 2
	case "sum":
		arity = 3
	case "days_since", "sessions":
		arity = 1
	default:
		return -1, nil
	}
	if len(call.Arguments) != arity {
		return -1, fmt.Errorf("%s takes %d arguments, got %d", fn, arity, len(call.Arguments))
	}
	args := make([]string, arity)
	for i, a := range call.Arguments {
		s, ok := a.(*ast.StringNode)
		if !ok {
			return -1, fmt.Errorf("%s: argument %d must be a string literal", fn, i+1)
		}
		args[i] = s.Value
	}
	name := fn + "("
	for i, a := range args {
		if i > 0 {
			name += ", "
		}
		name += strconv.Quote(a)
	}
	name += ")"
	if i, ok := c.byName[name]; ok {
		return i, nil
	}
	rng := func(s string) (int64, error) {
		d, err := pipeline.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", fn, err)
		}
		if d <= 0 {
			return 0, fmt.Errorf("%s: range %q must be positive", fn, s)
		}
		if int64(d) > segMaxRange {
			return 0, fmt.Errorf("%s: range %q is longer than 100 years", fn, s)
		}
		return int64(d), nil
	}
	f := segFeature{name: name}
	var err error
	switch fn {
	case "count":
		f.kind = segCount
		if f.from, err = rng(args[1]); err != nil {
			return -1, err
		}
		f.idx, err = c.series(args[0], "", f.from)
	case "sum":
		f.kind = segSum
		if f.from, err = rng(args[2]); err != nil {
			return -1, err
		}
		f.idx, err = c.series(args[1], args[0], f.from)
	case "days_since":
		f.kind = segDaysSince
		if args[0] == "" {
			return -1, errors.New("days_since: the event type is empty")
		}
		i, ok := c.daysIdx[args[0]]
		if !ok {
			i = len(c.r.daysTypes)
			c.daysIdx[args[0]] = i
			c.r.daysTypes = append(c.r.daysTypes, args[0])
		}
		f.idx = i
	case "sessions":
		f.kind = segSessions
		f.from, err = rng(args[0])
	case "sessions_between":
		f.kind = segSessions
		if f.from, err = rng(args[0]); err != nil {
			return -1, err
		}
		if f.to, err = rng(args[1]); err != nil {
			return -1, err
		}
		if f.from <= f.to {
			err = fmt.Errorf("sessions_between: from (%s) must be longer than to (%s)", args[0], args[1])
		}
	}
	if err != nil {
		return -1, err
	}
	if f.kind == segSessions {
		c.r.sessRange = max(c.r.sessRange, f.from)
	}
	i := len(c.r.features)
	c.r.features = append(c.r.features, f)
	c.byName[name] = i
	return i, nil
}

// series returns the index of the series of (typ, field), widening its
// range to rng.
func (c *segCollector) series(typ, field string, rng int64) (int, error) {
	if typ == "" {
		return -1, errors.New("the event type is empty")
	}
	k := [2]string{typ, field}
	if i, ok := c.seriesIdx[k]; ok {
		c.r.series[i].maxRange = max(c.r.series[i].maxRange, rng)
		return i, nil
	}
	s := segSeries{typ: typ, field: field, maxRange: rng}
	if field != "" {
		num, err := pipeline.CompileNumber(field)
		if err != nil {
			return -1, fmt.Errorf("sum: %w", err)
		}
		s.num = num
	}
	i := len(c.r.series)
	c.seriesIdx[k] = i
	c.r.series = append(c.r.series, s)
	return i, nil
}

// segPatcher replaces each feature call by the identifier of its value in
// the environment. Every call was checked by the collector.
type segPatcher struct{ c *segCollector }

// Visit implements ast.Visitor.
func (p segPatcher) Visit(node *ast.Node) {
	call, ok := (*node).(*ast.CallNode)
	if !ok {
		return
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok {
		return
	}
	if i, err := p.c.feature(id.Value, call); err == nil && i >= 0 {
		ast.Patch(node, &ast.IdentifierNode{Value: p.c.r.features[i].name})
	}
}

func newSegmentTransitioner(r *segmentRules) *segmentTransitioner {
	o := &segmentTransitioner{
		r:    r,
		env:  r.newEnv(),
		vals: make([]float64, len(r.features)),
	}
	return o
}

func (o *segmentTransitioner) Open(oc *pipeline.OpenContext) error {
	o.states = pipeline.NewValue(oc, "state", state.Codec[*segKeyState](segStateCodec{o.r}))
	o.logger = oc.Logger
	return nil
}

// load returns the key's state, a fresh one if it has none.
func (o *segmentTransitioner) load(key string) (*segKeyState, bool, error) {
	st, ok, err := o.states.Get(key)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return o.r.newState(), false, nil
	}
	if st.stale {
		st.stale = false
		if !o.warned {
			o.warned = true
			o.logger.Warn("state stored under other rules: the key starts afresh (further keys not logged)")
		}
	}
	return st, true, nil
}

func (o *segmentTransitioner) OnEvent(ctx *pipeline.Context, e *pipeline.Event) error {
	st, found, err := o.load(ctx.Key())
	if err != nil {
		return err
	}
	at := ctx.TimeNanos()
	t := max(at, st.clock)
	changed, featChanged := o.add(st, e, at, t)
	if !changed && found && t == st.clock {
		if at < ctx.WatermarkNanos() {
			ctx.Late(e, "behind the watermark and changes no feature")
		}
		return nil
	}
	if !featChanged && found && o.steady(st, t) {
		// An evaluation at t would see the feature values and memberships
		// of the last one, which moved nothing and failed nothing: it would
		// move nothing and keep the timer. Do the rest of it.
		st.clock = t
		st.prune(o.r, t)
		o.states.Put(ctx.Key(), st)
		return nil
	}
	return o.evaluate(ctx, st, t)
}

// steady reports whether every feature of the key has at t the value it
// had at its last evaluation, and that evaluation moved nothing and failed
// nothing, given that no event changed a feature since.
func (o *segmentTransitioner) steady(st *segKeyState, t int64) bool {
	if !st.settled || (st.timer != 0 && t >= st.timer) {
		return false
	}
	// days_since changes with the clock once the type has occurred.
	for _, last := range st.last {
		if last != 0 {
			return false
		}
	}
	return true
}

func (o *segmentTransitioner) OnTimer(ctx *pipeline.Context, tm pipeline.Timer) error {
	st, found, err := o.load(ctx.Key())
	if err != nil || !found {
		return err
	}
	st.timer = 0 // it fired
	st.settled = false
	return o.evaluate(ctx, st, max(ctx.TimeNanos(), st.clock))
}

// add records event e (time at) in the key's state at clock t; it reports
// whether the state changed, and whether any feature's data changed (the
// end of a session alone is no feature's data).
func (o *segmentTransitioner) add(st *segKeyState, e *pipeline.Event, at, t int64) (changed, featChanged bool) {
	r := o.r
	if u, ok := r.byType[e.Type]; ok {
		for _, si := range u.series {
			s := &r.series[si]
			if at <= t-s.maxRange {
				continue
			}
			var v float64
			if s.num != nil {
				x, ok := s.num(e)
				if !ok {
					continue
				}
				v = x
			}
			st.series[si] = segInsert(st.series[si], at, v, r.maxEntries)
			changed = true
		}
		if u.days >= 0 && (st.last[u.days] == 0 || at > st.last[u.days]) {
			st.last[u.days] = at
			changed = true
		}
	}
	featChanged = changed
	// An event this old cannot change the start of a session in range.
	if r.sessRange > 0 && at > t-r.sessRange-r.gap {
		var ch segSessionChange
		st.sessions, ch = segAddSessionChange(st.sessions, at, r.gap, r.maxEntries)
		changed = changed || ch != segSessionsSame
		featChanged = featChanged || ch == segSessionsStarts
	}
	return changed, featChanged
}

// evaluate runs the rules at time t, emits the moves, schedules the next
// evaluation and stores the state.
func (o *segmentTransitioner) evaluate(ctx *pipeline.Context, st *segKeyState, t int64) error {
	r := o.r
	st.clock = t
	st.prune(r, t)
	next := o.computeFeatures(st, t)
	var firstErr error
	moved := false
	for i := range r.segments {
		s := &r.segments[i]
		bit := uint64(1) << i
		in := st.member&bit != 0
		prog, rule := s.enter, s.enterSrc
		if in {
			rule = s.exitSrc
			if s.exit != nil {
				prog = s.exit
			}
		}
		out, err := o.vm.Run(prog, o.env)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("segment %q: rule %q: %w", s.name, rule, err)
			}
			continue
		}
		v, _ := out.(bool)
		if in && s.exit == nil {
			v = !v
		}
		if !v {
			continue
		}
		typ := recordSegmentEntered
		if in {
			typ = recordSegmentExited
		}
		st.member ^= bit
		moved = true
		ctx.EmitRecord(pipeline.Record{
			Type: typ,
			Time: pipeline.TimeFromNanos(t),
			Data: &segmentMove{segment: s.name, rule: rule, at: t},
		})
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
	st.settled = !moved && firstErr == nil
	o.states.Put(ctx.Key(), st)
	return firstErr
}

// computeFeatures writes the value of every feature at time t into env,
// and returns the next instant after t at which a value could change
// without a new event (math.MaxInt64 if none).
func (o *segmentTransitioner) computeFeatures(st *segKeyState, t int64) (next int64) {
	next = math.MaxInt64
	for i := range o.r.features {
		f := &o.r.features[i]
		var v float64
		switch f.kind {
		case segCount, segSum:
			es := st.series[f.idx]
			// es[j:k] are in (t - from, t - to]: es[j] leaves first, at
			// es[j].at + from; es[k] enters first, at es[k].at + to.
			j, _ := slices.BinarySearchFunc(es, t-f.from+1, cmpEntryAt)
			if j < len(es) {
				next = min(next, es[j].at+f.from)
			}
			k := j
			for ; k < len(es) && es[k].at <= t-f.to; k++ {
				if f.kind == segCount {
					v += float64(es[k].n)
				} else {
					v += es[k].v
				}
			}
			if k < len(es) {
				next = min(next, es[k].at+f.to)
			}
		case segSessions:
			ss := st.sessions
			j, _ := slices.BinarySearchFunc(ss, t-f.from+1, cmpSessionStart)
			if j < len(ss) {
				next = min(next, ss[j].start+f.from)
			}
			k := j
			for k < len(ss) && ss[k].start <= t-f.to {
				k++
			}
			if k < len(ss) {
				next = min(next, ss[k].start+f.to)
			}
			v = float64(k - j)
		case segDaysSince:
			if last := st.last[f.idx]; last != 0 {
				v = float64(t-last) / float64(segDay)
				if t-last < o.r.horizon {
					next = min(next, last+((t-last)/segDay+1)*segDay)
				}
			} else {
				v = segNeverDays
			}
		}
		if o.vals[i] == v {
			continue
		}
		o.vals[i] = v
		if f.isInt() {
			o.env[f.name] = int(v)
		} else {
			o.env[f.name] = v
		}
	}
	return next
}

func cmpEntryAt(e segEntry, at int64) int { return cmp.Compare(e.at, at) }

func cmpSessionStart(s segSession, at int64) int { return cmp.Compare(s.start, at) }

// segmentMove is the payload of segment_entered and segment_exited.
type segmentMove struct {
	segment string
	rule    string
	at      int64
}

// AppendJSON encodes {"segment":..,"rule":..,"at":"<RFC 3339>"}.
func (m *segmentMove) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"segment":`...)
	dst = pipeline.AppendJSONString(dst, m.segment)
	dst = append(dst, `,"rule":`...)
	dst = pipeline.AppendJSONString(dst, m.rule)
	dst = append(dst, `,"at":"`...)
	dst = pipeline.TimeFromNanos(m.at).AppendFormat(dst, time.RFC3339Nano)
	return append(dst, `"}`...)
}

// MarshalJSON encodes the payload as AppendJSON does.
func (m *segmentMove) MarshalJSON() ([]byte, error) { return m.AppendJSON(nil), nil }

// segEntry is one distinct event time of a series: the number of events at
// that time, and the sum of the series' field over them.
type segEntry struct {
	at int64
	n  int64
	v  float64
}

// segSession is one session of a key: the times of its first and last
// events.
type segSession struct{ start, end int64 }

// segKeyState is the state of one key.
type segKeyState struct {
	// clock is the key's evaluation clock (Unix ns).
	clock int64
	// timer is when the key's eval timer is set, 0 if not.
	timer int64
	// member has bit i set when the key is in segment i.
	member   uint64
	series   [][]segEntry
	sessions []segSession
	// last is the time of the last event per days_since type, 0 if none.
	last []int64
	// stale is set by the codec when it met state of other rules.
	stale bool
	// settled is set when the key's last evaluation in this process moved
	// nothing and failed nothing, and no feature changed since: evaluated
	// again with the same feature values, it would do the same. It is not
	// stored: a decoded state is evaluated again.
	settled bool
}

// newEnv returns an environment of the rules with every feature at 0: an
// int for counts and sessions, a float for sums and days.
func (r *segmentRules) newEnv() map[string]any {
	env := make(map[string]any, len(r.features))
	for _, f := range r.features {
		if f.isInt() {
			env[f.name] = 0
		} else {
			env[f.name] = 0.0
		}
	}
	return env
}

func (r *segmentRules) newState() *segKeyState {
	return &segKeyState{
		series: make([][]segEntry, len(r.series)),
		last:   make([]int64, len(r.daysTypes)),
	}
}

// prune drops what no range can reach at t or later.
func (st *segKeyState) prune(r *segmentRules, t int64) {
	for i, es := range st.series {
		lo := t - r.series[i].maxRange
		k := 0
		for k < len(es) && es[k].at <= lo {
			k++
		}
		if k > 0 {
			st.series[i] = es[:copy(es, es[k:])]
		}
	}
	if r.sessRange > 0 {
		lo := t - r.sessRange
		ss := st.sessions
		k := 0
		for k < len(ss) && ss[k].end+r.gap <= lo {
			k++
		}
		if k > 0 {
			st.sessions = ss[:copy(ss, ss[k:])]
		}
	}
}

// segInsert adds an event at time at with value v to a sorted series.
func segInsert(es []segEntry, at int64, v float64, maxEntries int) []segEntry {
	n := len(es)
	switch {
	case n == 0 || at > es[n-1].at:
		es = append(es, segEntry{at: at, n: 1, v: v})
	case at == es[n-1].at:
		es[n-1].n++
		es[n-1].v += v
	default:
		j, found := slices.BinarySearchFunc(es, at, cmpEntryAt)
		if found {
			es[j].n++
			es[j].v += v
		} else {
			es = slices.Insert(es, j, segEntry{at: at, n: 1, v: v})
		}
	}
	if len(es) > maxEntries {
		// Merge the two oldest times into the later one.
		es[1].n += es[0].n
		es[1].v += es[0].v
		es = es[:copy(es, es[1:])]
	}
	return es
}

// segSessionChange is how adding an event changed a key's sessions.
type segSessionChange uint8

const (
	segSessionsSame   segSessionChange = iota // no change
	segSessionsEnd                            // the end of one session only
	segSessionsStarts                         // the starts of the sessions
)

// segAddSession adds an event at time at to sorted, disjoint sessions; it
// reports whether they changed.
func segAddSession(ss []segSession, at, gap int64, maxEntries int) ([]segSession, bool) {
	ss, ch := segAddSessionChange(ss, at, gap, maxEntries)
	return ss, ch != segSessionsSame
}

// segAddSessionChange is segAddSession reporting how the sessions changed.
func segAddSessionChange(ss []segSession, at, gap int64, maxEntries int) ([]segSession, segSessionChange) {
	n := len(ss)
	if n > 0 && at >= ss[n-1].start {
		last := &ss[n-1]
		switch {
		case at <= last.end:
			return ss, segSessionsSame
		case at-last.end < gap:
			last.end = at
			return ss, segSessionsEnd
		}
		ss = append(ss, segSession{at, at})
	} else {
		// i is the first session that starts after at.
		i, _ := slices.BinarySearchFunc(ss, at+1, cmpSessionStart)
		if i > 0 && at <= ss[i-1].end {
			return ss, segSessionsSame
		}
		joinPrev := i > 0 && at-ss[i-1].end < gap
		joinNext := i < n && ss[i].start-at < gap
		switch {
		case joinPrev && joinNext:
			ss[i-1].end = ss[i].end
			ss = slices.Delete(ss, i, i+1)
		case joinPrev:
			ss[i-1].end = at
			return ss, segSessionsEnd
		case joinNext:
			ss[i].start = at
		default:
			ss = slices.Insert(ss, i, segSession{at, at})
		}
	}
	if len(ss) > maxEntries {
		ss = ss[:copy(ss, ss[1:])]
	}
	return ss, segSessionsStarts
}

// segStateCodec encodes a key's state in binary:
//
//	version(uvarint 1) fingerprint(uvarint) clock(varint) timer(varint) member(uvarint)
//	per series: n(uvarint), then per entry: time gap(uvarint; the first from
//	  the clock back, the next from the previous) n(uvarint) [sum(8 bytes) if the series has a field]
//	if sessions are used: n(uvarint), then per session: start gap (as for
//	  entries, from the previous session's end) length(uvarint)
//	per days_since type: 0 (never) or clock - last + 1 (uvarint)
type segStateCodec struct{ r *segmentRules }

const segStateVersion = 1

func (c segStateCodec) Append(dst []byte, st *segKeyState) []byte {
	r := c.r
	dst = binary.AppendUvarint(dst, segStateVersion)
	dst = binary.AppendUvarint(dst, uint64(r.fingerprint))
	dst = binary.AppendVarint(dst, st.clock)
	dst = binary.AppendVarint(dst, st.timer)
	dst = binary.AppendUvarint(dst, st.member)
	for i, es := range st.series {
		dst = binary.AppendUvarint(dst, uint64(len(es)))
		prev := st.clock
		for j, e := range es {
			if j == 0 {
				dst = binary.AppendUvarint(dst, uint64(st.clock-e.at))
			} else {
				dst = binary.AppendUvarint(dst, uint64(e.at-prev))
			}
			prev = e.at
			dst = binary.AppendUvarint(dst, uint64(e.n))
			if r.series[i].field != "" {
				dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(e.v))
			}
		}
	}
	if r.sessRange > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(st.sessions)))
		prev := st.clock
		for j, s := range st.sessions {
			if j == 0 {
				dst = binary.AppendUvarint(dst, uint64(st.clock-s.start))
			} else {
				dst = binary.AppendUvarint(dst, uint64(s.start-prev))
			}
			prev = s.end
			dst = binary.AppendUvarint(dst, uint64(s.end-s.start))
		}
	}
	for _, last := range st.last {
		if last == 0 {
			dst = binary.AppendUvarint(dst, 0)
		} else {
			dst = binary.AppendUvarint(dst, uint64(st.clock-last)+1)
		}
	}
	return dst
}

func (c segStateCodec) Decode(src []byte) (*segKeyState, error) {
	r := c.r
	d := segDecoder{src: src}
	if v := d.uvarint(); v != segStateVersion {
		return nil, fmt.Errorf("segment state: version %d, want %d", v, segStateVersion)
	}
	fp := d.uvarint()
	st := r.newState()
	st.clock = d.varint()
	if d.err == nil && fp != uint64(r.fingerprint) {
		// Other rules: keep the clock so that records stay in time order.
		st.stale = true
		return st, nil
	}
	st.timer = d.varint()
	st.member = d.uvarint()
	for i := range st.series {
		n := d.count()
		if n == 0 {
			continue
		}
		es := make([]segEntry, n)
		at := st.clock
		for j := range es {
			if j == 0 {
				at -= int64(d.uvarint())
			} else {
				at += int64(d.uvarint())
			}
			es[j] = segEntry{at: at, n: int64(d.uvarint())}
			if r.series[i].field != "" {
				es[j].v = d.float()
			}
		}
		st.series[i] = es
	}
	if r.sessRange > 0 {
		if n := d.count(); n > 0 {
			ss := make([]segSession, n)
			at := st.clock
			for j := range ss {
				if j == 0 {
					at -= int64(d.uvarint())
				} else {
					at += int64(d.uvarint())
				}
				ss[j].start = at
				at += int64(d.uvarint())
				ss[j].end = at
			}
			st.sessions = ss
		}
	}
	for i := range st.last {
		if v := d.uvarint(); v != 0 {
			st.last[i] = st.clock - int64(v-1)
		}
	}
	if d.err == nil && len(d.src) != 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.src))
	}
	if d.err != nil {
		return nil, fmt.Errorf("segment state: %w", d.err)
	}
	return st, nil
}

// segDecoder reads the state encoding; the first error sticks.
type segDecoder struct {
	src []byte
	err error
}

func (d *segDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.src)
	if n <= 0 {
		d.err = errors.New("malformed uvarint")
		return 0
	}
	d.src = d.src[n:]
	return v
}

func (d *segDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.src)
	if n <= 0 {
		d.err = errors.New("malformed varint")
		return 0
	}
	d.src = d.src[n:]
	return v
}

// count reads a list length, checked against what is left.
func (d *segDecoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.src)) {
		if d.err == nil {
			d.err = fmt.Errorf("list of %d entries in %d bytes", n, len(d.src))
		}
		return 0
	}
	return int(n)
}

func (d *segDecoder) float() float64 {
	if d.err != nil {
		return 0
	}
	if len(d.src) < 8 {
		d.err = errors.New("short float")
		return 0
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(d.src))
	d.src = d.src[8:]
	return v
}
