package operators

// The rules of segment_transitioner (segment_transitioner.go): their
// compiler, from expr-lang source to Go closures over a fixed slice of
// feature values with an interval form that bounds a rule over all later
// instants, and the features' values and change instants over a key's
// state.

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
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
)

// segmentRules is the compiled, shared form of a config.
type segmentRules struct {
	segments []compiledSegment
	features []segFeature
	series   []segSeries
	// byType maps an event type to what it feeds; types lists the same
	// for a scan, quicker than the map when there are few.
	byType map[string]segTypeUse
	types  []segTypeUse
	// daysTypes are the types days_since uses, by index.
	daysTypes []string
	// sessRange is the longest session range (0: no session feature).
	sessRange  int64
	gap        int64
	maxEntries int
	horizon    int64
	// dayTicks is the number of whole days since a days_since type's last
	// event at which the key is always re-evaluated (day k with k days <=
	// horizon); when the horizon is not a whole number of days, one more
	// day follows unless something else is evaluated in between, and the
	// instants are found by walking them one by one.
	dayTicks   int64
	exactTicks bool
	// Sources are what events change: series i is source i, the sessions
	// source sessSrc, days type j source daysSrc+j. allSrcs has all bits.
	sessSrc, daysSrc int
	allSrcs          uint64
	fingerprint      uint32
}

// bit returns the mask of source i; past 64 sources every mask is full.
func (r *segmentRules) bit(i int) uint64 {
	if i >= 64 {
		return ^uint64(0)
	}
	return 1 << i
}

type compiledSegment struct {
	name    string
	enter   segRule
	exit    segRule // when hasExit
	hasExit bool
	exitSrc string // the exit rule, or "not (<enter>)"
}

// rule returns the rule that moves a key out of (in) or into (!in) the
// segment, whether its result is negated, and its source.
func (s *compiledSegment) rule(in bool) (*segRule, bool, string) {
	switch {
	case !in:
		return &s.enter, false, s.enter.src
	case s.hasExit:
		return &s.exit, false, s.exitSrc
	}
	return &s.enter, true, s.exitSrc
}

// segRule is one compiled rule.
type segRule struct {
	src  string
	prog *vm.Program
	// eval computes the rule from the feature values; nil: run prog.
	eval func(v []float64) bool
	// bound returns the earliest instant after the segAbs's instant at
	// which the rule could be want (segNever: at none); nil: any.
	bound func(a *segAbs, want bool) int64
	// feats are the features the rule reads, srcs their sources.
	feats []int
	srcs  uint64
	// days is set when the rule reads days_since.
	days bool
}

// segTypeUse is what events of one type feed.
type segTypeUse struct {
	typ    string
	series []int
	days   int // index in daysTypes, or -1
}

// typeUse returns what events of type typ feed.
func (r *segmentRules) typeUse(typ string) (segTypeUse, bool) {
	if len(r.types) > 8 {
		u, ok := r.byType[typ]
		return u, ok
	}
	for _, u := range r.types {
		if u.typ == typ {
			return u, true
		}
	}
	return segTypeUse{}, false
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
	from, to int64  // the range (t - from, t - to], nanoseconds
	bit      uint64 // the feature's source
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
// and compiles each rule against an environment holding those features,
// and to Go code where it can.
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
	r.dayTicks = r.horizon / segDay
	r.exactTicks = r.horizon%segDay == 0
	c := &segCollector{r: r, byName: map[string]int{}, seriesIdx: map[[2]string]int{}, daysIdx: map[string]int{}}
	type ruleSrc struct {
		seg, which, src string
		tree            *parser.Tree
	}
	var rules []ruleSrc
	for _, s := range cfg.Segments {
		rules = append(rules, ruleSrc{seg: s.Name, which: "enter", src: s.Enter})
		if s.Exit != "" {
			rules = append(rules, ruleSrc{seg: s.Name, which: "exit", src: s.Exit})
		}
	}
	// Pass 1: parse each rule and collect its features.
	pcfg := conf.CreateNew()
	for _, o := range segFuncs {
		o(pcfg)
	}
	for i, rs := range rules {
		tree, err := parser.ParseWithConfig(rs.src, pcfg)
		if err != nil {
			return nil, fmt.Errorf("segment %q: %s rule: %w", rs.seg, rs.which, err)
		}
		c.src, c.err = rs.src, nil
		ast.Walk(&tree.Node, c)
		if c.err != nil {
			return nil, fmt.Errorf("segment %q: %s rule: %w", rs.seg, rs.which, c.err)
		}
		rules[i].tree = tree
	}
	// The sources of the features.
	r.sessSrc = len(r.series)
	r.daysSrc = r.sessSrc + 1
	for i := range r.daysSrc + len(r.daysTypes) {
		r.allSrcs |= r.bit(i)
	}
	for i := range r.features {
		f := &r.features[i]
		switch f.kind {
		case segCount, segSum:
			f.bit = r.bit(f.idx)
		case segSessions:
			f.bit = r.bit(r.sessSrc)
		case segDaysSince:
			f.bit = r.bit(r.daysSrc + f.idx)
		}
	}
	// Pass 2: compile each rule with its calls replaced by feature names,
	// and to Go code.
	opts := append([]expr.Option{
		expr.Env(r.newEnv()), expr.AsBool(), expr.DisableBuiltin("now"), expr.Patch(segPatcher{c}),
	}, segFuncs...)
	compile := func(rs ruleSrc) (segRule, error) {
		p, err := expr.Compile(rs.src, opts...)
		if err != nil {
			return segRule{}, fmt.Errorf("segment %q: %s rule: %w", rs.seg, rs.which, err)
		}
		ru := segRule{src: rs.src, prog: p}
		seen := map[int]bool{}
		ast.Walk(&rs.tree.Node, segFeatureLister(func(call *ast.CallNode) {
			id, ok := call.Callee.(*ast.IdentifierNode)
			if !ok {
				return
			}
			if i, err := c.feature(id.Value, call); err == nil && i >= 0 && !seen[i] {
				seen[i] = true
				ru.feats = append(ru.feats, i)
				ru.srcs |= r.features[i].bit
				ru.days = ru.days || r.features[i].kind == segDaysSince
			}
		}))
		if code, ok := c.code(rs.tree.Node); ok && code.typ == 'b' {
			ru.eval, ru.bound = code.b, code.t
		}
		return ru, nil
	}
	k := 0
	for _, s := range cfg.Segments {
		cs := compiledSegment{name: s.Name, exitSrc: "not (" + s.Enter + ")"}
		var err error
		if cs.enter, err = compile(rules[k]); err != nil {
			return nil, err
		}
		k++
		if s.Exit != "" {
			cs.exitSrc, cs.hasExit = s.Exit, true
			if cs.exit, err = compile(rules[k]); err != nil {
				return nil, err
			}
			k++
		}
		r.segments = append(r.segments, cs)
	}
	// What each event type feeds.
	for i, s := range r.series {
		u, ok := r.byType[s.typ]
		if !ok {
			u.typ, u.days = s.typ, -1
		}
		u.series = append(u.series, i)
		r.byType[s.typ] = u
	}
	for i, t := range r.daysTypes {
		u, ok := r.byType[t]
		if !ok {
			u.typ = t
		}
		u.days = i
		r.byType[t] = u
	}
	for _, t := range slices.Sorted(maps.Keys(r.byType)) {
		r.types = append(r.types, r.byType[t])
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

// segFeatureLister calls itself for every call node of a tree.
type segFeatureLister func(call *ast.CallNode)

// Visit implements ast.Visitor.
func (l segFeatureLister) Visit(node *ast.Node) {
	if call, ok := (*node).(*ast.CallNode); ok {
		l(call)
	}
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

// segIv bounds a number: lo <= x <= hi, or anything (NaN included) when
// any is set.
type segIv struct {
	lo, hi float64
	any    bool
}

var segAnyIv = segIv{lo: math.Inf(-1), hi: math.Inf(1), any: true}

// segIntBound is the magnitude past which the bounds of an int expression
// are not trusted (expr's ints wrap around; floats lose integers).
const segIntBound = 1 << 52

// segAbs is what the bounds of a rule are computed from: the key's state,
// an instant c and, per feature, bounds of its values at every instant
// after c that no new event precedes.
type segAbs struct {
	r   *segmentRules
	st  *segKeyState
	c   int64
	ivs []segIv
}

// segCode is a rule or part of one compiled to Go: the value of an int
// (typ 'i'), float ('f') or bool ('b') expression from the feature values,
// and its bounds after an instant: for a number an interval, for a bool the
// earliest instant at which it could be true, or false (segNever: not at
// any).
type segCode struct {
	typ byte
	i   func(v []float64) int64
	f   func(v []float64) float64
	b   func(v []float64) bool
	n   func(a *segAbs) segIv
	t   func(a *segAbs, want bool) int64
	// days is set when the expression reads days_since; feat is the
	// feature when the expression is a feature call, else -1.
	days bool
	feat int
}

// float returns the value of a number as expr's arithmetic sees it.
func (c segCode) float() func(v []float64) float64 {
	if c.typ == 'f' {
		return c.f
	}
	i := c.i
	return func(v []float64) float64 { return float64(i(v)) }
}

// isNum reports whether the code is an int or a float.
func (c segCode) isNum() bool { return c.typ == 'i' || c.typ == 'f' }

// code compiles an expression of a rule to Go, following expr's semantics
// (ints are 64-bit and wrap around, / divides floats, a comparison of an
// int and a float compares floats). It handles number and bool literals,
// feature calls, unary not, - and +, and, or, comparisons, +, -, * and /;
// ok is false for anything else (the rule then runs in expr's VM).
func (c *segCollector) code(node ast.Node) (segCode, bool) {
	switch n := node.(type) {
	case *ast.IntegerNode:
		v := int64(n.Value)
		iv := segIv{lo: float64(v), hi: float64(v)}
		if v > segIntBound || v < -segIntBound {
			iv = segAnyIv
		}
		return segCode{typ: 'i', feat: -1,
			i: func([]float64) int64 { return v },
			n: func(*segAbs) segIv { return iv },
		}, true
	case *ast.FloatNode:
		v := n.Value
		iv := segIv{lo: v, hi: v}
		if math.IsNaN(v) {
			iv = segAnyIv
		}
		return segCode{typ: 'f', feat: -1,
			f: func([]float64) float64 { return v },
			n: func(*segAbs) segIv { return iv },
		}, true
	case *ast.BoolNode:
		v := n.Value
		return segCode{typ: 'b', feat: -1,
			b: func([]float64) bool { return v },
			t: func(a *segAbs, want bool) int64 { return segIf(v == want, a.c+1) },
		}, true
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			return segCode{}, false
		}
		i, err := c.feature(id.Value, n)
		if err != nil || i < 0 {
			return segCode{}, false
		}
		f := &c.r.features[i]
		code := segCode{feat: i, n: func(a *segAbs) segIv { return a.ivs[i] }}
		if f.isInt() {
			code.typ = 'i'
			code.i = func(v []float64) int64 { return int64(v[i]) }
		} else {
			code.typ = 'f'
			code.f = func(v []float64) float64 { return v[i] }
		}
		if f.kind == segDaysSince {
			code.days = true
		}
		return code, true
	case *ast.UnaryNode:
		x, ok := c.code(n.Node)
		if !ok {
			return segCode{}, false
		}
		switch {
		case (n.Operator == "not" || n.Operator == "!") && x.typ == 'b':
			b, t := x.b, x.t
			return segCode{typ: 'b', days: x.days, feat: -1,
				b: func(v []float64) bool { return !b(v) },
				t: func(a *segAbs, want bool) int64 { return t(a, !want) },
			}, true
		case n.Operator == "+" && x.isNum():
			x.feat = -1
			return x, true
		case n.Operator == "-" && x.isNum():
			xn := x.n
			code := segCode{typ: x.typ, days: x.days, feat: -1, n: func(a *segAbs) segIv {
				iv := xn(a)
				if iv.any {
					return iv
				}
				return segIv{lo: -iv.hi, hi: -iv.lo}
			}}
			if x.typ == 'i' {
				xi := x.i
				code.i = func(v []float64) int64 { return -xi(v) }
			} else {
				xf := x.f
				code.f = func(v []float64) float64 { return -xf(v) }
			}
			return code, true
		}
		return segCode{}, false
	case *ast.BinaryNode:
		l, ok := c.code(n.Left)
		if !ok {
			return segCode{}, false
		}
		r, ok := c.code(n.Right)
		if !ok {
			return segCode{}, false
		}
		days := l.days || r.days
		switch n.Operator {
		case "and", "&&", "or", "||":
			if l.typ != 'b' || r.typ != 'b' {
				return segCode{}, false
			}
			lb, rb, lt, rt := l.b, r.b, l.t, r.t
			if n.Operator == "and" || n.Operator == "&&" {
				return segCode{typ: 'b', days: days, feat: -1,
					b: func(v []float64) bool { return lb(v) && rb(v) },
					t: func(a *segAbs, want bool) int64 {
						// True when both are, false when either is.
						l := lt(a, want)
						switch {
						case want && l == segNever, !want && l == a.c+1:
							return l
						case want:
							return max(l, rt(a, want))
						}
						return min(l, rt(a, want))
					},
				}, true
			}
			return segCode{typ: 'b', days: days, feat: -1,
				b: func(v []float64) bool { return lb(v) || rb(v) },
				t: func(a *segAbs, want bool) int64 {
					// True when either is, false when both are.
					l := lt(a, want)
					switch {
					case !want && l == segNever, want && l == a.c+1:
						return l
					case !want:
						return max(l, rt(a, want))
					}
					return min(l, rt(a, want))
				},
			}, true
		case "==", "!=", "<", "<=", ">", ">=":
			if !l.isNum() || !r.isNum() {
				return segCode{}, false
			}
			return segCompare(n.Operator, l, r, c.r.features), true
		case "+", "-", "*", "/":
			if !l.isNum() || !r.isNum() {
				return segCode{}, false
			}
			return segArith(n.Operator, l, r), true
		}
	}
	return segCode{}, false
}

// segArith compiles l op r for op one of + - * /.
func segArith(op string, l, r segCode) segCode {
	isInt := l.typ == 'i' && r.typ == 'i' && op != "/"
	ln, rn := l.n, r.n
	code := segCode{typ: 'f', days: l.days || r.days, feat: -1}
	code.n = func(a *segAbs) segIv {
		x, y := ln(a), rn(a)
		if x.any || y.any {
			return segAnyIv
		}
		var iv segIv
		switch op {
		case "+":
			iv = segIv{lo: x.lo + y.lo, hi: x.hi + y.hi}
		case "-":
			iv = segIv{lo: x.lo - y.hi, hi: x.hi - y.lo}
		case "*":
			p := [4]float64{x.lo * y.lo, x.lo * y.hi, x.hi * y.lo, x.hi * y.hi}
			iv = segIv{lo: min(p[0], p[1], p[2], p[3]), hi: max(p[0], p[1], p[2], p[3])}
			for _, q := range p {
				if math.IsNaN(q) {
					return segAnyIv
				}
			}
		case "/":
			if y.lo <= 0 && y.hi >= 0 {
				return segAnyIv
			}
			p := [4]float64{x.lo / y.lo, x.lo / y.hi, x.hi / y.lo, x.hi / y.hi}
			iv = segIv{lo: min(p[0], p[1], p[2], p[3]), hi: max(p[0], p[1], p[2], p[3])}
			for _, q := range p {
				if math.IsNaN(q) {
					return segAnyIv
				}
			}
		}
		if math.IsNaN(iv.lo) || math.IsNaN(iv.hi) {
			return segAnyIv
		}
		if isInt && (iv.lo < -segIntBound || iv.hi > segIntBound) {
			return segAnyIv
		}
		return iv
	}
	if isInt {
		code.typ = 'i'
		li, ri := l.i, r.i
		switch op {
		case "+":
			code.i = func(v []float64) int64 { return li(v) + ri(v) }
		case "-":
			code.i = func(v []float64) int64 { return li(v) - ri(v) }
		default:
			code.i = func(v []float64) int64 { return li(v) * ri(v) }
		}
		return code
	}
	lf, rf := l.float(), r.float()
	switch op {
	case "+":
		code.f = func(v []float64) float64 { return lf(v) + rf(v) }
	case "-":
		code.f = func(v []float64) float64 { return lf(v) - rf(v) }
	case "*":
		code.f = func(v []float64) float64 { return lf(v) * rf(v) }
	default:
		code.f = func(v []float64) float64 { return lf(v) / rf(v) }
	}
	return code
}

// segCompareFunc returns the comparison l op r (op one of ==, !=, <, <=,
// >, >=) of two compiled numbers of the same kind.
func segCompareFunc[T int64 | float64](op string, l, r func(v []float64) T) func(v []float64) bool {
	switch op {
	case "==":
		return func(v []float64) bool { return l(v) == r(v) }
	case "!=":
		return func(v []float64) bool { return l(v) != r(v) }
	case "<":
		return func(v []float64) bool { return l(v) < r(v) }
	case "<=":
		return func(v []float64) bool { return l(v) <= r(v) }
	case ">":
		return func(v []float64) bool { return l(v) > r(v) }
	}
	return func(v []float64) bool { return l(v) >= r(v) }
}

// segCompare compiles the comparison l op r of a rule whose features are
// feats.
func segCompare(op string, l, r segCode, feats []segFeature) segCode {
	code := segCode{typ: 'b', days: l.days || r.days, feat: -1}
	if l.typ == 'i' && r.typ == 'i' {
		code.b = segCompareFunc(op, l.i, r.i)
	} else {
		code.b = segCompareFunc(op, l.float(), r.float())
	}
	ln, rn := l.n, r.n
	// generic bounds the comparison by the intervals of its sides.
	generic := func(a *segAbs, want bool) int64 {
		switch segCompareIv(op, ln(a), rn(a)) {
		case segTrue:
			return segIf(want, a.c+1)
		case segFalse:
			return segIf(!want, a.c+1)
		}
		return a.c + 1
	}
	code.t = generic
	// A feature that only moves one way without new events (days_since
	// grows; a count, sessions or a sum of terms >= 0 over a trailing
	// range falls) against anything: the comparison turns at an instant
	// that can be solved.
	f, kn, fop := -1, rn, op
	switch {
	case l.feat >= 0:
		f = l.feat
	case r.feat >= 0:
		f, kn = r.feat, ln
		fop = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}[op]
	}
	if f < 0 {
		return code
	}
	switch ft := &feats[f]; {
	case ft.kind == segDaysSince:
		if fop == "==" || fop == "!=" {
			return code
		}
		code.t = func(a *segAbs, want bool) int64 {
			last := a.st.last[a.r.features[f].idx]
			k := kn(a)
			if last == 0 || k.any {
				return generic(a, want)
			}
			from := a.c + 1
			// (days >= k) is true once days >= k.lo, and can be false
			// only while days < k.hi; days < k the other way round.
			geq, strict := fop == ">=" || fop == "<", fop == ">" || fop == "<="
			if want == (fop == ">=" || fop == ">") {
				return segSolveDays(last, from, k.lo, strict)
			}
			d := float64(from-last) / float64(segDay)
			return segIf(d < k.hi || !geq && d == k.hi, from)
		}
	case ft.kind != segDaysSince && ft.to == 0:
		code.t = func(a *segAbs, want bool) int64 {
			k := kn(a)
			if iv := a.ivs[f]; k.any || iv.any || iv.lo != 0 {
				return generic(a, want) // (a sum of terms not all >= 0)
			}
			// Now v, later at most v, down to 0 once all has left.
			v, from := a.ivs[f].hi, a.c+1
			switch {
			case fop == ">=" && want, fop == "<" && !want:
				return segIf(v >= k.lo, from)
			case fop == ">" && want, fop == "<=" && !want:
				return segIf(v > k.lo, from)
			case fop == ">=" || fop == "<":
				return a.r.fallsBelow(a.st, f, a.c, k.hi, false)
			case fop == ">" || fop == "<=":
				return a.r.fallsBelow(a.st, f, a.c, k.hi, true)
			}
			// == and !=: equal once at most k.hi, while at least k.lo.
			if want == (fop == "==") {
				if v < k.lo {
					return segNever
				}
				return a.r.fallsBelow(a.st, f, a.c, k.hi, true)
			}
			if k.lo == k.hi && v == k.lo {
				return a.r.fallsBelow(a.st, f, a.c, k.lo, false)
			}
			return from
		}
	}
	return code
}

// segIf returns at if cond, else segNever.
func segIf(cond bool, at int64) int64 {
	if cond {
		return at
	}
	return segNever
}

// segSolveDays returns the first instant at or after from at which
// days_since, for a last event at last, is at least x (above x if strict);
// segNever if none.
func segSolveDays(last, from int64, x float64, strict bool) int64 {
	ok := func(s int64) bool {
		d := float64(s-last) / float64(segDay)
		if strict {
			return d > x
		}
		return d >= x
	}
	if ok(from) {
		return from
	}
	// The last instant whose days_since does not overflow.
	hi := segNever
	if last < 0 {
		hi += last
	}
	if math.IsNaN(x) || hi <= from || !ok(hi) {
		return segNever
	}
	// A guess, then a binary search if rounding put it off.
	if g := x * float64(segDay); g > 0 && g < float64(hi-last) {
		s := last + int64(g)
		for range 4 {
			if s > from && s <= hi && ok(s) && !ok(s-1) {
				return s
			}
			if s <= from || !ok(s) {
				s++
			} else {
				s--
			}
		}
	}
	lo := from // !ok(lo), ok(hi)
	for hi-lo > 1 {
		m := lo + (hi-lo)/2
		if ok(m) {
			hi = m
		} else {
			lo = m
		}
	}
	return hi
}

// segTri is a three-valued truth.
type segTri uint8

const (
	segMaybe segTri = iota
	segTrue
	segFalse
)

// segCompareIv compares two bounded numbers.
func segCompareIv(op string, x, y segIv) segTri {
	if x.any || y.any {
		return segMaybe
	}
	switch op {
	case ">":
		x, y, op = y, x, "<"
	case ">=":
		x, y, op = y, x, "<="
	}
	switch op {
	case "<":
		if x.hi < y.lo {
			return segTrue
		}
		if x.lo >= y.hi {
			return segFalse
		}
	case "<=":
		if x.hi <= y.lo {
			return segTrue
		}
		if x.lo > y.hi {
			return segFalse
		}
	case "==", "!=":
		t := segMaybe
		switch {
		case x.lo == x.hi && y.lo == y.hi && x.lo == y.lo:
			t = segTrue
		case x.hi < y.lo || y.hi < x.lo:
			t = segFalse
		}
		if op == "!=" && t != segMaybe {
			t = segTrue + segFalse - t
		}
		return t
	}
	return segMaybe
}

// segFrame holds feature values at one instant, and bounds of their values
// at the later instants, computed on demand: a feature is there when its
// stamp is gen.
type segFrame struct {
	at    int64
	gen   uint32
	stamp []uint32
	vals  []float64
	ivs   []segIv
}

func newSegFrame(n int) segFrame {
	return segFrame{gen: 1, stamp: make([]uint32, n), vals: make([]float64, n), ivs: make([]segIv, n)}
}

// reset empties the frame for instant at.
func (f *segFrame) reset(at int64) {
	f.at = at
	f.gen++
	if f.gen == 0 {
		clear(f.stamp)
		f.gen = 1
	}
}

// featureAt computes feature i at fr.at, which is at or after the key's
// clock, into fr: its value, and bounds of its values at the later
// instants that no new event precedes.
func (r *segmentRules) featureAt(st *segKeyState, i int, fr *segFrame) {
	f := &r.features[i]
	t := fr.at
	var v float64
	var iv segIv
	switch f.kind {
	case segCount, segSum:
		es := st.series[f.idx]
		// es[j:k] are in (t - from, t - to].
		j := segEntryAfter(es, t-f.from)
		k := j
		if f.kind == segCount {
			if f.to == 0 && j <= len(es)/4 {
				// All but the few oldest: from the series' count. (The
				// counts are exact in a float64: so is any order of
				// adding them up.)
				n := st.count(f.idx)
				for _, e := range es[:j] {
					n -= e.n
				}
				v, k = float64(n), len(es)
			}
			for ; k < len(es) && es[k].at <= t-f.to; k++ {
				v += float64(es[k].n)
			}
			// Later, what is in range leaves and what is after it enters.
			hi := v
			for _, e := range es[k:] {
				hi += float64(e.n)
			}
			iv = segIv{lo: 0, hi: hi}
			break
		}
		pos, neg := true, true
		for ; k < len(es) && es[k].at <= t-f.to; k++ {
			x := es[k].v
			v += x
			pos = pos && x >= 0
			neg = neg && x <= 0
		}
		// A sum over fewer of the same terms of one sign (the range only
		// loses its oldest) is nearer to 0.
		switch {
		case k < len(es):
			iv = segAnyIv
		case pos:
			iv = segIv{lo: 0, hi: v}
		case neg:
			iv = segIv{lo: v, hi: 0}
		default:
			iv = segAnyIv
		}
	case segSessions:
		ss := st.sessions
		j, k := segSessionAfter(ss, t-f.from), len(ss)
		if f.to > 0 {
			k = segSessionAfter(ss, t-f.to)
		}
		v = float64(k - j)
		iv = segIv{lo: 0, hi: float64(len(ss) - j)}
	case segDaysSince:
		if last := st.last[f.idx]; last != 0 {
			v = float64(t-last) / float64(segDay)
			iv = segIv{lo: v, hi: math.Inf(1)}
		} else {
			v = segNeverDays
			iv = segIv{lo: v, hi: v}
		}
	}
	fr.vals[i], fr.ivs[i], fr.stamp[i] = v, iv, fr.gen
}

// nextChange returns the first instant after c (the key's clock or an
// instant returned by nextChange since) at which a feature of the sources
// in mask changes value without a new event (segNever if none): the
// instants at which the key is evaluated.
func (r *segmentRules) nextChange(st *segKeyState, c int64, mask uint64) int64 {
	next := segNever
	for i := range r.features {
		f := &r.features[i]
		if f.bit&mask == 0 {
			continue
		}
		switch f.kind {
		case segCount, segSum, segSessions:
			next = min(next, st.edgeAfter(f, c))
		case segDaysSince:
			if last := st.last[f.idx]; last != 0 && c-last < r.horizon {
				next = min(next, last+((c-last)/segDay+1)*segDay)
			}
		}
	}
	return next
}

// edgeAfter returns the first instant after x at which an event (a session
// start, for sessions) enters or leaves the range of count, sum or sessions
// feature f (an entry at e crosses an edge d of the range at e + d: the
// first in range leaves first, the first after it enters first);
// segNever if none.
func (st *segKeyState) edgeAfter(f *segFeature, x int64) int64 {
	next := segNever
	for k, d := range [2]int64{f.from, f.to} {
		if k == 1 && d <= 0 {
			break
		}
		if at, ok := st.entryStart(f, segEntryIndex(st, f, x-d)); ok {
			next = min(next, at+d)
		}
	}
	return next
}

// edgeAtOrBefore returns the last instant at or before x at which an event
// (a session start, for sessions) enters or leaves the range of count, sum
// or sessions feature f; math.MinInt64 if none.
func (st *segKeyState) edgeAtOrBefore(f *segFeature, x int64) int64 {
	last := int64(math.MinInt64)
	for k, d := range [2]int64{f.from, f.to} {
		if k == 1 && d <= 0 {
			break
		}
		if at, ok := st.entryStart(f, segEntryIndex(st, f, x-d)-1); ok {
			last = max(last, at+d)
		}
	}
	return last
}

// segEntryIndex returns the index of the first entry of feature f's list
// (its series, or the sessions) later than x.
func segEntryIndex(st *segKeyState, f *segFeature, x int64) int {
	if f.kind == segSessions {
		return segSessionAfter(st.sessions, x)
	}
	return segEntryAfter(st.series[f.idx], x)
}

// entryStart returns the time of entry j of feature f's list (a session's
// start), if there is one.
func (st *segKeyState) entryStart(f *segFeature, j int) (int64, bool) {
	if f.kind == segSessions {
		if j < 0 || j >= len(st.sessions) {
			return 0, false
		}
		return st.sessions[j].start, true
	}
	es := st.series[f.idx]
	if j < 0 || j >= len(es) {
		return 0, false
	}
	return es[j].at, true
}

// firstChangeFrom returns the first instant at or after from (later than
// the key's clock) at which a feature of the sources in mask changes value
// without a new event; segNever if none.
func (r *segmentRules) firstChangeFrom(st *segKeyState, from int64, mask uint64) int64 {
	if !r.exactTicks && mask&^(r.bit(r.daysSrc)-1) != 0 && len(r.daysTypes) > 0 {
		return r.walk(st, st.clock, from, false)
	}
	next := segNever
	for i := range r.features {
		f := &r.features[i]
		if f.bit&mask == 0 {
			continue
		}
		switch f.kind {
		case segCount, segSum, segSessions:
			next = min(next, st.edgeAfter(f, from-1))
		case segDaysSince:
			// Whole days k <= horizon, while the clock is within it.
			if last := st.last[f.idx]; last != 0 && st.clock-last < r.horizon {
				if k := (from - last + segDay - 1) / segDay; k <= r.dayTicks {
					next = min(next, last+k*segDay)
				}
			}
		}
	}
	return next
}

// lastChange returns the last instant in (c, to] at which a feature
// changes value without a new event, for a key evaluated last at c (its
// clock); c if none.
func (r *segmentRules) lastChange(st *segKeyState, c, to int64) int64 {
	if !r.exactTicks && len(r.daysTypes) > 0 {
		return r.walk(st, c, to, true)
	}
	last := c
	for i := range r.features {
		f := &r.features[i]
		switch f.kind {
		case segCount, segSum, segSessions:
			last = max(last, st.edgeAtOrBefore(f, to))
		case segDaysSince:
			if l := st.last[f.idx]; l != 0 && c-l < r.horizon {
				if k := min((to-l)/segDay, r.dayTicks); k >= 1 {
					last = max(last, l+k*segDay)
				}
			}
		}
	}
	return last
}

// lastInstant returns the last instant after c at which a feature could
// change value without a new event (at or after the last one; c if none).
func (r *segmentRules) lastInstant(st *segKeyState, c int64) int64 {
	last := c
	for i := range r.features {
		f := &r.features[i]
		switch f.kind {
		case segCount, segSum:
			if es := st.series[f.idx]; len(es) > 0 {
				last = max(last, es[len(es)-1].at+f.from)
			}
		case segSessions:
			if ss := st.sessions; len(ss) > 0 {
				last = max(last, ss[len(ss)-1].start+f.from)
			}
		case segDaysSince:
			if l := st.last[f.idx]; l != 0 && c-l < r.horizon {
				last = max(last, l+(r.dayTicks+1)*segDay)
			}
		}
	}
	return last
}

// walk goes from c through the instants at which a feature changes value
// without a new event, one by one, as evaluations at each would (whether
// one more whole day follows the horizon depends on them): it returns the
// last instant at or before to if before, else the first at or after to.
func (r *segmentRules) walk(st *segKeyState, c, to int64, before bool) int64 {
	for {
		n := r.nextChange(st, c, r.allSrcs)
		if before && n > to || !before && n >= to {
			if before {
				return c
			}
			return n
		}
		c = n
	}
}

// fallsBelow returns the first instant after c at which feature i, a
// count, sessions or a sum of terms >= 0 over a trailing range, is below x
// (at most x if orEqual) without a new event, or c + 1 if it may be at
// once; segNever if never.
func (r *segmentRules) fallsBelow(st *segKeyState, i int, c int64, x float64, orEqual bool) int64 {
	f := &r.features[i]
	if orEqual && !(x >= 0) || !orEqual && !(x > 0) {
		return segNever // counts are never below 0
	}
	if x > 1<<52 {
		return c + 1
	}
	// What is left of the events in range once the oldest have left: n is
	// the least that is not below x.
	n := math.Ceil(x)
	if orEqual {
		n = math.Floor(x) + 1
	}
	switch f.kind {
	case segCount:
		es := st.series[f.idx]
		j := segEntryAfter(es, c-f.from)
		acc := 0.0
		for m := len(es) - 1; m >= j; m-- {
			if acc += float64(es[m].n); acc >= n {
				// Below once es[m] has left.
				return max(es[m].at+f.from, c+1)
			}
		}
	case segSessions:
		ss := st.sessions
		if m := len(ss) - int(n); m >= segSessionAfter(ss, c-f.from) {
			return max(ss[m].start+f.from, c+1)
		}
	case segSum:
		// The sum over es[m:] as featureAt adds it up falls as m grows:
		// find the least m at which it is below x.
		es := st.series[f.idx]
		below := func(m int) bool {
			v := 0.0
			for _, e := range es[m:] {
				v += e.v
			}
			return v < x || orEqual && v == x
		}
		lo, hi := segEntryAfter(es, c-f.from), len(es)
		if below(lo) {
			return c + 1
		}
		for hi-lo > 1 { // !below(lo), below(hi)
			if m := lo + (hi-lo)/2; below(m) {
				hi = m
			} else {
				lo = m
			}
		}
		return es[lo].at + f.from
	}
	return c + 1
}

// segEntryAfter returns the index of the first entry after time x.
func segEntryAfter(es []segEntry, x int64) int {
	lo, hi := 0, len(es)
	if hi == 0 || es[hi-1].at <= x {
		return hi
	}
	if es[0].at > x {
		return 0 // (the usual case of the longest range, once pruned)
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if es[m].at <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// segSessionAfter returns the index of the first session starting after x.
func segSessionAfter(ss []segSession, x int64) int {
	lo, hi := 0, len(ss)
	if hi == 0 || ss[hi-1].start <= x {
		return hi
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ss[m].start <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func cmpEntryAt(e segEntry, at int64) int { return cmp.Compare(e.at, at) }

func cmpSessionStart(s segSession, at int64) int { return cmp.Compare(s.start, at) }
