package operators

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

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
// counted, and whenever time alone changes a feature: at each instant a
// feature could change value without a new event, the key is evaluated as
// it would be at an event. Those instants are when the oldest event or
// session start in a range leaves it (an event at e leaves a trailing
// range r at exactly e + r), when one enters a sessions_between range,
// and for days_since each whole day since the last event of the type
// (so `days_since(x) >= 7` moves at exactly 7 days, `> 7` up to a day
// later), until days_since_horizon.
//
// A key starts outside every segment. For a segment the key is outside
// of, a true enter rule moves it in; for one it is in, a true exit rule (or
// a false enter rule when exit is not set) moves it out; at most one move
// per segment and evaluation, in the order of the segments. The record's
// rule is the source of the rule that fired; a default exit shows as
// `not (<enter>)`. The record's time and its `at` are the evaluation time.
// (A segment whose enter and exit rules are true together moves at every
// evaluation.) A rule that fails at run time (a modulo by zero) moves
// nothing; the error is returned, so the event goes to the dead-letter
// output with it, counted all the same.
//
// # Time order and lateness
//
// Each key has an evaluation clock: the latest of its event times and of
// the instants above that the watermark has passed (or that the key's
// events have reached). An event is evaluated at max(its time, the
// clock), so a key's records never go back in time. An out-of-order or
// late event is still counted by every range that includes its time at
// that clock (and updates days_since when it is the latest of its type);
// only an event behind the watermark that changes nothing (older than
// every range that uses it, or of a type no rule uses, and not moving the
// clock) goes to the late side output. The first events of a key have no
// clock to follow: when they are late, they are evaluated at their own
// times, behind the watermark, and the instants after them that are
// already behind the watermark are passed at the end of the round.
//
// # Cost
//
// Only what can move the key is computed. Each rule is compiled, where it
// can be, to Go code over a fixed slice of feature values (else it runs
// in expr's VM), with an interval form that bounds the rule over all later
// instants. An event evaluates only the rules of the key's memberships
// that read a feature it changed, or days_since; the others give what
// they gave at the key's last evaluation, which the key's timer keeps
// true: after each evaluation the key's event-time timer is set at the
// first instant at which one of those rules could become true without a
// new event (found from the intervals and by evaluating the rule at the
// instants its features change, a few at most), not at every instant a
// feature changes; when none can, at the last instant a feature changes,
// whose evaluation prunes what has aged out. The instants in between need
// no evaluation (nothing can move there); the clock passes them all the
// same, computed when a late event needs it. When instants are left
// behind the watermark (a late first event, a timer), a timer at the
// watermark passes them at the end of the round, as the timers at each
// instant did.
//
// # State
//
// Per key, only what the rules need: the clock, the timer, the
// memberships, per referenced (type, field) the sorted distinct event
// times in the longest range that uses them (with counts and sums), the
// sessions whose start can still count, and the last time of each
// days_since type; entries that no range can reach any more are pruned at
// each evaluation, and each list is capped by max_entries. After
// everything has aged out a key keeps a few bytes (clock, memberships,
// last times) so that its records stay in time order. The state is
// encoded in a compact binary form stamped with a fingerprint of the
// rules' features and segment names; a key stored under other rules
// starts afresh (outside every segment).
type segmentTransitioner struct {
	r      *segmentRules
	states *state.Value[*segKeyState]
	vm     vm.VM
	// env holds the feature values the rules run by the VM read, by
	// feature name.
	env map[string]any
	// envVals mirrors env to skip writes of unchanged values (a float
	// written to env is boxed, which allocates).
	envVals []float64
	// now holds the features at the evaluation time, step at a later
	// instant the timer search looks at.
	now, step segFrame
	abs       segAbs
	logger    *slog.Logger
	warned    bool
}

// segMaxSteps bounds the instants at which the search for a key's next
// move evaluates a rule; past them the timer is set at the next one, where
// the search goes on.
const segMaxSteps = 8

// segNever is the instant of what never happens.
const segNever = int64(math.MaxInt64)

func newSegmentTransitioner(r *segmentRules) *segmentTransitioner {
	o := &segmentTransitioner{
		r:       r,
		env:     r.newEnv(),
		envVals: make([]float64, len(r.features)),
		now:     newSegFrame(len(r.features)),
		step:    newSegFrame(len(r.features)),
	}
	o.abs.r = r
	return o
}

// EventFields implements pipeline.EventFieldsReader: rules read event
// types, times and numbers, never an optional field, and the transitioner
// forwards no event.
func (o *segmentTransitioner) EventFields() (pipeline.EventFields, bool) { return 0, false }

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
	at, wm := ctx.TimeNanos(), ctx.WatermarkNanos()
	// The clock has passed the instants the watermark has, unless a timer
	// behind the watermark has yet to pass them at the end of the round.
	clock := st.clock
	if found && at < wm && clock < wm && (st.timer == 0 || st.timer > wm) {
		clock = o.r.lastChange(st, clock, wm)
	}
	t := max(at, clock)
	c0 := st.clock
	changed, srcs := o.add(st, e, at, t, wm)
	if !changed && found && t == clock {
		if st.clock != c0 {
			o.states.Put(ctx.Key(), st) // pruned
		}
		if at < wm {
			ctx.Late(e, "behind the watermark and changes no feature")
		}
		return nil
	}
	full := !found || !st.settled || (st.timer != 0 && t >= st.timer)
	return o.evaluate(ctx, st, t, srcs, full)
}

func (o *segmentTransitioner) OnTimer(ctx *pipeline.Context, tm pipeline.Timer) error {
	st, found, err := o.load(ctx.Key())
	if err != nil || !found {
		return err
	}
	at := ctx.TimeNanos()
	if at != st.timer {
		// Not the timer of this state (one of state stored under other
		// rules): an evaluation as at an event.
		st.timer = 0
		return o.evaluate(ctx, st, max(at, st.clock), 0, true)
	}
	st.timer = 0 // it fired
	// The timer is at the first instant a rule could move the key, or at
	// the watermark to pass the instants behind it: evaluate at the last
	// instant a feature changed, which nothing moved before.
	t := o.r.lastChange(st, st.clock, at)
	if t == st.clock {
		// (Never so, unless the two disagree: then go on all the same.)
		if n := o.r.nextChange(st, st.clock, o.r.allSrcs); n <= at {
			t = n
		}
	}
	if t > st.clock {
		return o.evaluate(ctx, st, t, 0, true)
	}
	o.now.reset(st.clock)
	next := segNever
	for i := range o.r.segments {
		ru, neg, _ := o.r.segments[i].rule(st.member&(1<<i) != 0)
		next = min(next, o.firstTrue(st, ru, neg, next))
	}
	o.arm(ctx, st, st.clock, next)
	o.states.Put(ctx.Key(), st)
	return nil
}

// add records event e (time at) in the key's state at clock t, under
// watermark wm; it reports whether the state changed, and the sources of
// the features that changed (the end of a session alone is no feature's).
// It may move the state's clock to an instant it passed.
func (o *segmentTransitioner) add(st *segKeyState, e *pipeline.Event, at, t, wm int64) (changed bool, srcs uint64) {
	r := o.r
	u, used := r.typeUse(e.Type)
	// A full list loses its oldest entry to the new one: first prune the
	// lists as the evaluations at the instants passed since the last one
	// would have (so too before an event that could extend a session they
	// would have pruned).
	prune := r.sessRange > 0 && (len(st.sessions) >= r.maxEntries || at < max(wm, st.clock)-r.sessRange)
	for _, si := range u.series {
		prune = prune || len(st.series[si]) >= r.maxEntries
	}
	if prune {
		to := at
		if st.timer == 0 || st.timer > wm {
			to = max(at, wm)
		}
		st.clock = r.lastChange(st, st.clock, to)
		st.prune(r, st.clock)
	}
	if used {
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
			st.counts[si]++
			st.pruneAt = min(st.pruneAt, at+s.maxRange)
			srcs |= r.bit(si)
		}
		if u.days >= 0 && (st.last[u.days] == 0 || at > st.last[u.days]) {
			st.last[u.days] = at
			srcs |= r.bit(r.daysSrc + u.days)
		}
	}
	changed = srcs != 0
	// An event this old cannot change the start of a session in range.
	if r.sessRange > 0 && at > t-r.sessRange-r.gap {
		var ch segSessionChange
		st.sessions, ch = segAddSessionChange(st.sessions, at, r.gap, r.maxEntries)
		st.pruneAt = min(st.pruneAt, at+r.gap+r.sessRange)
		changed = changed || ch != segSessionsSame
		if ch == segSessionsStarts {
			srcs |= r.bit(r.sessSrc)
		}
	}
	return changed, srcs
}

// evaluate runs the rules at time t, emits the moves, sets the timer and
// stores the state. Unless full, it runs only the rules that read a
// feature of srcs or days_since: the key's last evaluation (when settled)
// and its timer (when later than t) vouch that the others are false.
func (o *segmentTransitioner) evaluate(ctx *pipeline.Context, st *segKeyState, t int64, srcs uint64, full bool) error {
	r := o.r
	st.clock = t
	st.prune(r, t)
	o.now.reset(t)
	var firstErr error
	hot := false
	var ran uint64
	for i := range r.segments {
		s := &r.segments[i]
		bit := uint64(1) << i
		in := st.member&bit != 0
		ru, neg, rule := s.rule(in)
		if !full && ru.srcs&srcs == 0 && !ru.days {
			continue
		}
		ran |= bit
		v, err := o.run(st, ru, neg, &o.now)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("segment %q: rule %q: %w", s.name, rule, err)
			}
			hot = true
			continue
		}
		if !v {
			continue
		}
		typ := recordSegmentEntered
		if in {
			typ = recordSegmentExited
		}
		st.member ^= bit
		ctx.EmitRecord(pipeline.Record{
			Type: typ,
			Time: pipeline.TimeFromNanos(t),
			Data: &segmentMove{segment: s.name, rule: rule, at: t},
		})
		// A rule true at once moves the key back at the next evaluation.
		ru, neg, _ = s.rule(!in)
		if v, err := o.run(st, ru, neg, &o.now); err != nil || v {
			hot = true
		}
	}
	// The timer: at the first instant a rule could move the key, or, when
	// a rule is true or fails, at the next evaluation an event would have.
	next := segNever
	if hot {
		next = r.nextChange(st, t, r.allSrcs)
	} else {
		if !full && st.timer > t {
			next = st.timer
		}
		for i := range r.segments {
			if full || ran&(1<<i) != 0 {
				ru, neg, _ := r.segments[i].rule(st.member&(1<<i) != 0)
				next = min(next, o.firstTrue(st, ru, neg, next))
			}
		}
	}
	o.arm(ctx, st, t, next)
	st.settled = !hot
	o.states.Put(ctx.Key(), st)
	return firstErr
}

// arm sets the key's timer at next, after an evaluation at t. When no rule
// can move the key (next is segNever), a timer still set stays (it fires
// early, harmlessly), else one is set at the last instant a feature
// changes, whose evaluation prunes what has aged out. When instants at
// which a feature changes are behind the watermark, the timer goes no
// later than the watermark: it fires at the end of the round, and the
// clock passes them then.
func (o *segmentTransitioner) arm(ctx *pipeline.Context, st *segKeyState, t, next int64) {
	if next == segNever {
		if st.timer > t {
			next = st.timer
		} else if l := o.r.lastInstant(st, t); l > t {
			next = l
		}
	}
	if wm := ctx.WatermarkNanos(); next > wm && t < wm && o.r.nextChange(st, t, o.r.allSrcs) <= wm {
		next = wm
	}
	switch {
	case next == segNever:
		if st.timer != 0 {
			ctx.DeleteTimer(segEvalTimer)
			st.timer = 0
		}
	case next != st.timer:
		ctx.SetTimer(segEvalTimer, pipeline.TimeFromNanos(next))
		st.timer = next
	}
}

// run evaluates a rule (negated if neg) on the features of frame fr.
func (o *segmentTransitioner) run(st *segKeyState, ru *segRule, neg bool, fr *segFrame) (bool, error) {
	for _, i := range ru.feats {
		if fr.stamp[i] != fr.gen {
			o.r.featureAt(st, i, fr)
		}
	}
	if ru.eval != nil {
		return ru.eval(fr.vals) != neg, nil
	}
	for _, i := range ru.feats {
		v := fr.vals[i]
		if o.envVals[i] == v {
			continue
		}
		o.envVals[i] = v
		if o.r.features[i].isInt() {
			o.env[o.r.features[i].name] = int(v)
		} else {
			o.env[o.r.features[i].name] = v
		}
	}
	out, err := o.vm.Run(ru.prog, o.env)
	if err != nil {
		return false, err
	}
	v, _ := out.(bool)
	return v != neg, nil
}

// firstTrue returns the first instant after the evaluation in o.now, at
// which a feature changes value, that rule ru (negated if neg), false at
// o.now, could be true or fail at without a new event (segNever if none).
// It may return an earlier such instant, where the search goes on, and
// any instant at or after limit once the answer is known to be there.
func (o *segmentTransitioner) firstTrue(st *segKeyState, ru *segRule, neg bool, limit int64) int64 {
	if ru.bound == nil && len(ru.feats) == 0 {
		return segNever // a constant
	}
	mask := ru.srcs
	if ru.days {
		// days_since changes between the instants; the rule is seen at
		// every instant at which any feature changes.
		mask = o.r.allSrcs
	}
	fr := &o.now
	for step := 0; ; step++ {
		from := fr.at + 1
		if ru.bound != nil {
			for _, i := range ru.feats {
				if fr.stamp[i] != fr.gen {
					o.r.featureAt(st, i, fr)
				}
			}
			a := &o.abs
			a.st, a.c, a.ivs = st, fr.at, fr.ivs
			whenTrue := ru.bound(a, !neg)
			a.st, a.ivs = nil, nil
			if whenTrue >= limit {
				return whenTrue
			}
			from = max(from, whenTrue)
		}
		var n int64
		if from == fr.at+1 {
			n = o.r.nextChange(st, fr.at, mask)
		} else {
			n = o.r.firstChangeFrom(st, from, mask)
		}
		if n >= limit || step == segMaxSteps {
			return n
		}
		fr = &o.step
		fr.reset(n)
		if v, err := o.run(st, ru, neg, fr); err != nil || v {
			return n
		}
	}
}

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
	// clock is the key's evaluation clock (Unix ns) as of its last
	// evaluation: the instants at which a feature changed since, up to the
	// watermark, are computed when needed.
	clock int64
	// timer is when the key's eval timer is set, 0 if not: at the first
	// instant a rule could move the key, or at most the watermark.
	timer int64
	// member has bit i set when the key is in segment i.
	member   uint64
	series   [][]segEntry
	sessions []segSession
	// last is the time of the last event per days_since type, 0 if none.
	last []int64
	// stale is set by the codec when it met state of other rules.
	stale bool
	// settled is set when, after the key's last evaluation in this
	// process, every rule that could move the key was false (none failed):
	// until the timer, an event need run only the rules that read what it
	// changed, or days_since. It is not stored: a decoded state runs every
	// rule at its next event.
	settled bool
	// pruneAt is an instant before which prune has nothing to drop
	// (math.MinInt64: not known). It is not stored.
	pruneAt int64
	// counts holds, when countsOK, the number of events in each series
	// (the sum of its entries' n). It is not stored.
	counts   []int64
	countsOK bool
	// seriesIn, countsIn and lastIn hold series, counts and last when
	// they are short, in the state's own memory.
	seriesIn [4][]segEntry
	countsIn [4]int64
	lastIn   [2]int64
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
	st := &segKeyState{pruneAt: math.MinInt64}
	if n := len(r.series); n <= len(st.seriesIn) {
		st.series, st.counts = st.seriesIn[:n:n], st.countsIn[:n:n]
	} else {
		st.series, st.counts = make([][]segEntry, n), make([]int64, n)
	}
	if n := len(r.daysTypes); n <= len(st.lastIn) {
		st.last = st.lastIn[:n:n]
	} else {
		st.last = make([]int64, n)
	}
	return st
}

// prune drops what no range can reach at t or later.
func (st *segKeyState) prune(r *segmentRules, t int64) {
	if t < st.pruneAt {
		return
	}
	st.pruneAt = math.MaxInt64
	for i := range st.series {
		st.pruneSeries(r, i, t)
		if es := st.series[i]; len(es) > 0 {
			st.pruneAt = min(st.pruneAt, es[0].at+r.series[i].maxRange)
		}
	}
	if r.sessRange > 0 {
		st.pruneSessions(r, t)
		if ss := st.sessions; len(ss) > 0 {
			st.pruneAt = min(st.pruneAt, ss[0].end+r.gap+r.sessRange)
		}
	}
}

func (st *segKeyState) pruneSeries(r *segmentRules, i int, t int64) {
	es := st.series[i]
	lo := t - r.series[i].maxRange
	k := 0
	for k < len(es) && es[k].at <= lo {
		st.counts[i] -= es[k].n
		k++
	}
	if k > 0 {
		st.series[i] = es[:copy(es, es[k:])]
	}
}

// count returns the number of events in series i.
func (st *segKeyState) count(i int) int64 {
	if !st.countsOK {
		for j, es := range st.series {
			st.counts[j] = 0
			for _, e := range es {
				st.counts[j] += e.n
			}
		}
		st.countsOK = true
	}
	return st.counts[i]
}

func (st *segKeyState) pruneSessions(r *segmentRules, t int64) {
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
