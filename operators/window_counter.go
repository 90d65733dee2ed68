package operators

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/state"
)

// The aggregates of a window counter.
const (
	// AggregateCount counts the matching events of a window.
	AggregateCount = "count"
	// AggregateSum also sums a numeric field over them.
	AggregateSum = "sum"
	// AggregateDistinct also counts the distinct values of a field.
	AggregateDistinct = "distinct"
)

// Spike defaults, used where a SpikeConfig field is zero.
const (
	// DefaultSpikeRatio is the default SpikeConfig.Ratio.
	DefaultSpikeRatio = 3
	// DefaultSpikeBaselineWindows is the default SpikeConfig.BaselineWindows.
	DefaultSpikeBaselineWindows = 12
	// DefaultSpikeMinCount is the default SpikeConfig.MinCount.
	DefaultSpikeMinCount = 20
)

// wcMaxWindowsPerEvent bounds size/slide: the windows one event falls in.
const wcMaxWindowsPerEvent = 1000

// wcMaxBaselineWindows bounds SpikeConfig.BaselineWindows.
const wcMaxBaselineWindows = 10000

// WindowCounterConfig configures a window counter.
type WindowCounterConfig struct {
	// Match, when set, counts only the events for which this expression is
	// true (expr-lang, as for filter); by default every event counts.
	Match string `yaml:"match"`
	// GroupBy is the event field whose value is the group (product.id,
	// product.category, properties.<name>...; see pipeline.CompileField).
	// Events without a value there are skipped. Required.
	GroupBy string `yaml:"group_by"`
	// Size is the length of a window, a whole number of milliseconds.
	// Required.
	Size pipeline.Duration `yaml:"size"`
	// Slide, when set, makes the windows hopping: a window starts every
	// Slide (at most Size, a whole number of milliseconds, and no less than
	// Size/1000). By default windows are tumbling (Slide = Size).
	Slide pipeline.Duration `yaml:"slide"`
	// Aggregate is count (default), sum or distinct. Every result carries
	// the count of events; sum adds the sum of Field, distinct the number of
	// distinct values of Field.
	Aggregate string `yaml:"aggregate"`
	// Field is the field that sum adds (a numeric path, see
	// pipeline.CompileNumber) or whose distinct values distinct counts (a
	// path as for GroupBy). Required for sum and distinct, not allowed for
	// count.
	Field string `yaml:"field"`
	// AllowedLateness keeps a window open for late events this long after
	// the watermark passed its end: each late event updates the window and
	// re-emits its result at once, with the next revision. Default 0.
	AllowedLateness pipeline.Duration `yaml:"allowed_lateness"`
	// Spike, when set, turns on demand spike detection.
	Spike *SpikeConfig `yaml:"spike"`
}

// SpikeConfig configures the demand spike detection of a window counter.
type SpikeConfig struct {
	// Ratio: a window is a spike when its count is at least Ratio times the
	// mean count of the group's previous BaselineWindows windows. Default 3.
	Ratio float64 `yaml:"ratio"`
	// BaselineWindows is the number of previous windows (every Slide) the
	// baseline averages; windows without events count as 0. Default 12.
	BaselineWindows int `yaml:"baseline_windows"`
	// MinCount is the least count a spike needs. Default 20; 1 lets every
	// window qualify.
	MinCount int64 `yaml:"min_count"`
}

// Validate checks the config.
func (c WindowCounterConfig) Validate() error {
	var errs []error
	if c.GroupBy == "" {
		errs = append(errs, errors.New("group_by is required"))
	}
	size, slide := c.Size.D(), c.Slide.D()
	switch {
	case size <= 0:
		errs = append(errs, errors.New("size is required and must be positive"))
	case size%time.Millisecond != 0:
		errs = append(errs, fmt.Errorf("size %s is not a whole number of milliseconds", c.Size))
	}
	switch {
	case slide < 0:
		errs = append(errs, fmt.Errorf("slide %s is negative", c.Slide))
	case slide == 0:
	case slide%time.Millisecond != 0:
		errs = append(errs, fmt.Errorf("slide %s is not a whole number of milliseconds", c.Slide))
	case size > 0 && slide > size:
		errs = append(errs, fmt.Errorf("slide %s is longer than size %s", c.Slide, c.Size))
	case size > 0 && (size+slide-1)/slide > wcMaxWindowsPerEvent:
		errs = append(errs, fmt.Errorf("slide %s puts each event in more than %d windows of size %s", c.Slide, wcMaxWindowsPerEvent, c.Size))
	}
	switch c.Aggregate {
	case "", AggregateCount:
		if c.Field != "" {
			errs = append(errs, fmt.Errorf("field %q is only for aggregate sum or distinct", c.Field))
		}
	case AggregateSum, AggregateDistinct:
		if c.Field == "" {
			errs = append(errs, fmt.Errorf("aggregate %s needs field", c.Aggregate))
		}
	default:
		errs = append(errs, fmt.Errorf("aggregate %q: want count, sum or distinct", c.Aggregate))
	}
	if c.AllowedLateness < 0 {
		errs = append(errs, fmt.Errorf("allowed_lateness %s is negative", c.AllowedLateness))
	}
	if s := c.Spike; s != nil {
		if s.Ratio < 0 || math.IsNaN(s.Ratio) || math.IsInf(s.Ratio, 0) {
			errs = append(errs, fmt.Errorf("spike.ratio %v: want a positive number", s.Ratio))
		}
		if s.BaselineWindows < 0 || s.BaselineWindows > wcMaxBaselineWindows {
			errs = append(errs, fmt.Errorf("spike.baseline_windows %d: want 1 to %d", s.BaselineWindows, wcMaxBaselineWindows))
		}
		if s.MinCount < 0 {
			errs = append(errs, fmt.Errorf("spike.min_count %d is negative", s.MinCount))
		}
	}
	return errors.Join(errs...)
}

func init() {
	pipeline.RegisterOperator("window_counter", newWindowCounterFactory)
}

// newWindowCounterFactory compiles a window counter's config.
func newWindowCounterFactory(id string, cfg WindowCounterConfig) (pipeline.Factory, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("window_counter %q: %w", id, err)
	}
	p := wcParams{
		id:       id,
		size:     cfg.Size.D().Nanoseconds(),
		slide:    cfg.Slide.D().Nanoseconds(),
		lateness: cfg.AllowedLateness.D().Nanoseconds(),
		agg:      aggCount,
	}
	if p.slide == 0 {
		p.slide = p.size
	}
	var m *pipeline.Match
	var err error
	if cfg.Match != "" {
		if m, err = pipeline.CompileMatch(cfg.Match); err != nil {
			return nil, fmt.Errorf("window_counter %q: match: %w", id, err)
		}
	}
	if m != nil {
		p.reads = m.EventFields()
	}
	p.reads |= pipeline.EventFieldsOf(cfg.GroupBy) | pipeline.EventFieldsOf(cfg.Field)
	if p.group, err = pipeline.CompileField(cfg.GroupBy); err != nil {
		return nil, fmt.Errorf("window_counter %q: group_by: %w", id, err)
	}
	switch cfg.Aggregate {
	case AggregateSum:
		p.agg = aggSum
		if p.number, err = pipeline.CompileNumber(cfg.Field); err != nil {
			return nil, fmt.Errorf("window_counter %q: field: %w", id, err)
		}
	case AggregateDistinct:
		p.agg = aggDistinct
		if p.value, err = pipeline.CompileField(cfg.Field); err != nil {
			return nil, fmt.Errorf("window_counter %q: field: %w", id, err)
		}
	}
	if s := cfg.Spike; s != nil {
		p.spike = true
		p.ratio, p.baseline, p.minCount = s.Ratio, s.BaselineWindows, s.MinCount
		if p.ratio == 0 {
			p.ratio = DefaultSpikeRatio
		}
		if p.baseline == 0 {
			p.baseline = DefaultSpikeBaselineWindows
		}
		if p.minCount == 0 {
			p.minCount = DefaultSpikeMinCount
		}
	}
	return func() pipeline.Operator {
		w := &windowCounter{wcParams: p}
		if m != nil {
			w.matcher = m.NewMatcher()
		}
		return w
	}, nil
}

// aggKind is the compiled Aggregate.
type aggKind uint8

const (
	aggCount aggKind = iota
	aggSum
	aggDistinct
)

// wcParams is a window counter's compiled config, shared by its instances.
type wcParams struct {
	id                    string
	size, slide, lateness int64 // nanoseconds
	agg                   aggKind
	group                 pipeline.FieldFunc
	reads                 pipeline.EventFields // by match, group_by and field
	number                func(*pipeline.Event) (float64, bool)
	value                 pipeline.FieldFunc
	spike                 bool
	ratio                 float64
	baseline              int
	minCount              int64
}

// wcGCTimer is the timer that deletes a group's spike baseline once no window
// can use it any more. Window timers are named by the window start (Unix
// milliseconds), so they never take this name.
const wcGCTimer = "gc"

// wcLateReason is the dead-letter reason of a late event.
const wcLateReason = "every window of the event is closed (window end + allowed_lateness <= watermark)"

// windowCounter counts events per group in event-time windows.
//
// Windows are aligned to the Unix epoch: with slide s (s = size when
// tumbling) and size d, the windows are [k·s, k·s + d) for every integer k,
// and an event at time t falls in each of them that contains t (d/s
// windows when s divides d). Events are routed through an exchange to the
// partition that owns their group, and processed under the group as key;
// an event that does not match, or has no group, never crosses the
// exchange.
//
// Results. When the watermark passes a window's end (an event-time timer
// per group and window, named by the window start), the operator emits a
// `window_result` record {window_start, window_end, group, count} (plus
// sum, or distinct) for every window that holds at least one event. Its
// key is the group, its time the window end, and its id
// `<operator>/<group>/<window start, Unix ms>/<revision>`, revision 0 for
// the first result of a window.
//
// Lateness. An event whose window has ended (window end <= watermark) but
// is still within allowed_lateness (window end + allowed_lateness >
// watermark) updates the window and re-emits its result at once with the
// next revision (or revision 0 if the window had no events yet). An event
// past allowed_lateness for every window it falls in goes to the late side
// output (the dead-letter output, counted as late). With hopping windows,
// an event late for some of its windows only updates the others, as Flink
// does. A window's state is deleted once window end + allowed_lateness <=
// watermark.
//
// Spikes. With spike set, each window's first result is compared with the
// mean count of the group's previous baseline_windows windows (the windows
// starting 1..baseline_windows slides earlier; windows without events count
// as 0). When count >= ratio × mean and count >= min_count, a `demand_spike`
// record {window_start, window_end, group, count, baseline, ratio} follows
// the window_result, with the same key and time and the id of the result
// plus "/demand_spike"; ratio is count / baseline, null when the baseline
// is 0. Later revisions of a window update the baseline of the windows that
// follow but are not compared again, and a window created late after a
// later window of its group already had its result is not compared. The
// baseline lives in a per-group ring of the last baseline_windows window
// counts, deleted once no window that could use it can still be created.
//
// Aggregates. count counts every matching event with a group; sum adds the
// field where the event has it (events without it count but add nothing),
// in fixed point to the millionth so that the result does not depend on the
// order in which the exchange delivers the events (an addend beyond ±1e12
// is an error: the event goes to the dead-letter output and is not
// counted; a sum saturates at ±9.2e12);
// distinct counts the distinct values of the field, holding a set of them
// per window in state until the window closes. Groups and distinct values
// that contain the byte 0x00 (which the state store reserves) are treated
// as absent.
//
// Privacy. The operator's state is keyed by group, not by user, and the
// exchange does not pass control records, so an erasure record for a user
// does not reach it: counts and sums, which are aggregates, are kept.
// distinct over a personal field (user_id) is different: the window's set
// then holds user ids under the group's key, which an erasure does not
// delete; it lasts until the window closes (end + allowed_lateness). Do not
// count distinct personal ids where erasure must be immediate.
//
// State per group: one compact value (the live windows and the spike ring,
// binary-encoded), and with distinct a map of the windows' values.
type windowCounter struct {
	wcParams
	matcher *pipeline.Matcher
	groups  *state.Value[*wcGroup]
	sets    *state.Map[struct{}]
	logger  *slog.Logger
	// matchFailed is set once a match error has been logged.
	matchFailed bool

	buf []byte
}

// Open declares the operator's state.
// EventFields implements pipeline.EventFieldsReader: the counter reads
// the optional fields its match, group_by and field name, and forwards no
// event.
func (w *windowCounter) EventFields() (pipeline.EventFields, bool) { return w.reads, false }

func (w *windowCounter) Open(oc *pipeline.OpenContext) error {
	w.groups = pipeline.NewValue(oc, "groups", state.Codec[*wcGroup](wcGroupCodec{params: &w.wcParams}))
	if w.agg == aggDistinct {
		w.sets = pipeline.NewMap(oc, "distinct", state.Codec[struct{}](wcEmptyCodec{}))
	}
	w.logger = oc.Logger
	return nil
}

// GroupKey returns the group of a matching event. It runs on the partition
// the event comes from, so non-matching events never cross the exchange.
func (w *windowCounter) GroupKey(e *pipeline.Event) (string, bool) {
	g, ok := w.group(e)
	if !ok || strings.IndexByte(g, 0) >= 0 {
		return "", false
	}
	if w.matcher != nil {
		m, err := w.matcher.Match(e)
		if err != nil {
			// GroupKey cannot fail: the event is skipped. Log once per
			// partition, without the payload.
			if !w.matchFailed {
				w.matchFailed = true
				w.logger.Warn("match failed; events for which it fails are skipped", "err", err)
			}
			return "", false
		}
		if !m {
			return "", false
		}
	}
	return g, true
}

// wcFloorDiv is a / b rounded down (b > 0).
func wcFloorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// OnEvent adds the event to the windows it falls in.
func (w *windowCounter) OnEvent(ctx *pipeline.Context, e *pipeline.Event) error {
	group := ctx.Key()
	g, found, err := w.groups.Get(group)
	if err != nil {
		return fmt.Errorf("window_counter %q: %w", w.id, err)
	}
	if !found {
		g = &wcGroup{}
	}
	var addend int64
	if w.agg == aggSum {
		if addend, err = w.sumAddend(e); err != nil {
			return err
		}
	}
	t, wm := ctx.TimeNanos(), ctx.WatermarkNanos()
	last := wcFloorDiv(t, w.slide) * w.slide
	first := (wcFloorDiv(t-w.size, w.slide) + 1) * w.slide
	accepted := false
	for start := first; start <= last; start += w.slide {
		end := start + w.size
		if end+w.lateness <= wm {
			continue // closed
		}
		accepted = true
		i, ok := g.find(start)
		if !ok {
			i = g.insert(i, start)
		}
		win := &g.wins[i]
		win.count++
		switch w.agg {
		case aggSum:
			win.sum = wcAddSaturated(win.sum, addend)
		case aggDistinct:
			if err := w.addDistinct(group, win, e); err != nil {
				return err
			}
		}
		switch {
		case end <= wm:
			// Late but within allowed_lateness: emit at once, and keep the
			// window until end + allowed_lateness.
			w.emit(ctx, group, g, i)
			ctx.SetTimer(wcTimerName(start), pipeline.TimeFromNanos(end+w.lateness))
		case !ok:
			ctx.SetTimer(wcTimerName(start), pipeline.TimeFromNanos(end))
		}
	}
	if !accepted {
		ctx.Late(e, wcLateReason)
		return nil
	}
	w.groups.Put(group, g)
	return nil
}

// wcSumScale is the fixed point of sums: millionths. Sums are kept as
// integers so that they do not depend on the order of the events, which
// the exchange does not keep.
const wcSumScale = 1e6

// wcMaxSumAddend bounds the absolute value of one addend, in units.
const wcMaxSumAddend = 1e12

// sumAddend returns the event's value of the sum field in millionths (0
// when it has none).
func (w *windowCounter) sumAddend(e *pipeline.Event) (int64, error) {
	v, ok := w.number(e)
	if !ok {
		return 0, nil
	}
	if !(math.Abs(v) <= wcMaxSumAddend) {
		return 0, fmt.Errorf("window_counter %q: sum: value %v out of range (±%g)", w.id, v, float64(wcMaxSumAddend))
	}
	return int64(math.Round(v * wcSumScale)), nil
}

// wcAddSaturated returns a + b, clamped to the int64 range.
func wcAddSaturated(a, b int64) int64 {
	s := a + b
	if (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0) {
		if a >= 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}

// addDistinct adds the event's value to the window's set.
func (w *windowCounter) addDistinct(group string, win *wcWindow, e *pipeline.Event) error {
	v, ok := w.value(e)
	if !ok || strings.IndexByte(v, 0) >= 0 {
		return nil
	}
	w.buf = wcSetPrefix(w.buf[:0], win.start)
	w.buf = append(w.buf, v...)
	field := string(w.buf)
	_, seen, err := w.sets.Get(group, field)
	if err != nil {
		return fmt.Errorf("window_counter %q: %w", w.id, err)
	}
	if !seen {
		w.sets.Put(group, field, struct{}{})
		win.distinct++
	}
	return nil
}

// wcSetPrefix appends the prefix of a window's fields in the distinct
// map: the window start in Unix ms and a colon.
func wcSetPrefix(dst []byte, start int64) []byte {
	dst = strconv.AppendInt(dst, start/int64(time.Millisecond), 10)
	return append(dst, ':')
}

// wcTimerName names the timer of the window starting at start.
func wcTimerName(start int64) string {
	return strconv.FormatInt(start/int64(time.Millisecond), 10)
}

// OnTimer emits a window's first result when the watermark passes its end,
// and deletes the window once it is past allowed_lateness. Behind the
// exchange, timers fire on the watermark only (never early on a group's
// next event, whose order depends on the partitioning).
func (w *windowCounter) OnTimer(ctx *pipeline.Context, t pipeline.Timer) error {
	wm := ctx.WatermarkNanos()
	group := ctx.Key()
	g, found, err := w.groups.Get(group)
	if err != nil {
		return fmt.Errorf("window_counter %q: %w", w.id, err)
	}
	if !found {
		return nil
	}
	if t.Name == wcGCTimer {
		if len(g.wins) == 0 {
			w.groups.Delete(group)
		}
		return nil
	}
	ms, err := strconv.ParseInt(t.Name, 10, 64)
	if err != nil {
		return fmt.Errorf("window_counter %q: timer %q: %w", w.id, t.Name, err)
	}
	start := ms * int64(time.Millisecond)
	i, ok := g.find(start)
	if !ok {
		return nil
	}
	end := start + w.size
	if g.wins[i].rev == 0 {
		w.emit(ctx, group, g, i)
	}
	if end+w.lateness > wm {
		ctx.SetTimer(t.Name, pipeline.TimeFromNanos(end+w.lateness))
		w.groups.Put(group, g)
		return nil
	}
	if err := w.dropWindow(group, g, i); err != nil {
		return err
	}
	if len(g.wins) > 0 {
		w.groups.Put(group, g)
		return nil
	}
	// The last window is gone: the spike ring is needed until no window
	// that could use it can still be created.
	if top, ok := g.top(); ok && w.spike {
		gcAt := (top+int64(w.baseline))*w.slide + w.size + w.lateness
		if gcAt > wm {
			ctx.SetTimer(wcGCTimer, pipeline.TimeFromNanos(gcAt))
			w.groups.Put(group, g)
			return nil
		}
	}
	w.groups.Delete(group)
	return nil
}

// dropWindow removes window i of a group and its distinct set.
func (w *windowCounter) dropWindow(group string, g *wcGroup, i int) error {
	if w.agg == aggDistinct {
		prefix := string(wcSetPrefix(nil, g.wins[i].start))
		err := w.sets.Range(group, func(field string, _ struct{}) bool {
			if strings.HasPrefix(field, prefix) {
				w.sets.Delete(group, field)
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("window_counter %q: %w", w.id, err)
		}
	}
	g.wins = append(g.wins[:i], g.wins[i+1:]...)
	return nil
}

// emit emits the next revision of window i's result, with a spike record
// at its first result if it is one, and records its count in the ring.
func (w *windowCounter) emit(ctx *pipeline.Context, group string, g *wcGroup, i int) {
	win := &g.wins[i]
	end := win.start + w.size
	rev := win.rev
	win.rev++
	var digits [20]byte // the id in one allocation
	id := w.id + "/" + group + "/" + string(strconv.AppendInt(digits[:0], win.start/int64(time.Millisecond), 10)) + "/" + strconv.Itoa(int(rev))
	at := pipeline.TimeFromNanos(end)
	ctx.EmitRecord(pipeline.Record{
		ID:   id,
		Type: "window_result",
		Time: at,
		Data: &windowResult{start: win.start, end: end, group: group, count: win.count, agg: w.agg, sum: win.sum, distinct: win.distinct},
	})
	if !w.spike {
		return
	}
	idx := wcFloorDiv(win.start, w.slide)
	if rev == 0 {
		if top, ok := g.top(); !ok || idx > top {
			var sum int64
			for k := int64(1); k <= int64(w.baseline); k++ {
				sum += g.ringCount(idx - k)
			}
			n := float64(w.baseline)
			if float64(win.count)*n >= w.ratio*float64(sum) && win.count >= w.minCount {
				ctx.EmitRecord(pipeline.Record{
					ID:   id + "/demand_spike",
					Type: "demand_spike",
					Time: at,
					Data: &demandSpike{start: win.start, end: end, group: group, count: win.count, baseline: float64(sum) / n, n: n, sum: sum},
				})
			}
		}
	}
	g.ringPut(w.baseline, idx, win.count)
}

// wcWindow is one live window of a group.
type wcWindow struct {
	start int64 // Unix nanos
	count int64
	// sum is in millionths (see wcSumScale).
	sum      int64
	distinct int64
	// rev is the number of results emitted: 0 until the window first
	// closes.
	rev int64
}

// wcSlot is one entry of a group's spike ring: a window index (start /
// slide) and its count.
type wcSlot struct {
	idx, count int64
}

// wcEmptySlot marks an unused ring slot.
const wcEmptySlot = math.MinInt64

// wcGroup is the state of one group: its live windows in start order, and
// with spike detection the ring of the last window counts (slot idx mod
// len(ring)).
type wcGroup struct {
	wins []wcWindow
	ring []wcSlot
}

// find returns the position of the window starting at start, or where to
// insert it.
func (g *wcGroup) find(start int64) (int, bool) {
	// Windows are few and events mostly hit the newest: search from the end.
	i := len(g.wins)
	for i > 0 && g.wins[i-1].start > start {
		i--
	}
	if i > 0 && g.wins[i-1].start == start {
		return i - 1, true
	}
	return i, false
}

// insert inserts an empty window starting at start at position i.
func (g *wcGroup) insert(i int, start int64) int {
	g.wins = append(g.wins, wcWindow{})
	copy(g.wins[i+1:], g.wins[i:])
	g.wins[i] = wcWindow{start: start}
	return i
}

// top returns the highest window index in the ring.
func (g *wcGroup) top() (int64, bool) {
	top, ok := int64(wcEmptySlot), false
	for _, s := range g.ring {
		if s.idx != wcEmptySlot && (!ok || s.idx > top) {
			top, ok = s.idx, true
		}
	}
	return top, ok
}

func wcRingPos(idx int64, n int) int {
	p := idx % int64(n)
	if p < 0 {
		p += int64(n)
	}
	return int(p)
}

// ringCount returns the count of window idx, 0 if the ring does not have
// it.
func (g *wcGroup) ringCount(idx int64) int64 {
	if len(g.ring) == 0 {
		return 0
	}
	if s := g.ring[wcRingPos(idx, len(g.ring))]; s.idx == idx {
		return s.count
	}
	return 0
}

// ringPut records the count of window idx, unless its slot holds a later
// window.
func (g *wcGroup) ringPut(n int, idx, count int64) {
	if len(g.ring) != n {
		g.resizeRing(n)
	}
	s := &g.ring[wcRingPos(idx, n)]
	if s.idx == wcEmptySlot || s.idx <= idx {
		*s = wcSlot{idx: idx, count: count}
	}
}

// resizeRing gives the ring n slots, keeping the latest window of each.
func (g *wcGroup) resizeRing(n int) {
	old := g.ring
	g.ring = make([]wcSlot, n)
	for i := range g.ring {
		g.ring[i].idx = wcEmptySlot
	}
	for _, s := range old {
		if s.idx != wcEmptySlot {
			g.ringPut(n, s.idx, s.count)
		}
	}
}

// wcGroupCodec encodes a wcGroup compactly:
//
//	version(1) aggregate(1)
//	uvarint(len wins) { varint start, uvarint count, uvarint rev,
//	                    [sum: varint millionths] [distinct: uvarint] }
//	uvarint(used slots) { varint idx, uvarint count }
type wcGroupCodec struct {
	params *wcParams
}

const wcCodecVersion = 1

func (c wcGroupCodec) Append(dst []byte, g *wcGroup) []byte {
	dst = append(dst, wcCodecVersion, byte(c.params.agg))
	dst = binary.AppendUvarint(dst, uint64(len(g.wins)))
	for i := range g.wins {
		win := &g.wins[i]
		dst = binary.AppendVarint(dst, win.start)
		dst = binary.AppendUvarint(dst, uint64(win.count))
		dst = binary.AppendUvarint(dst, uint64(win.rev))
		switch c.params.agg {
		case aggSum:
			dst = binary.AppendVarint(dst, win.sum)
		case aggDistinct:
			dst = binary.AppendUvarint(dst, uint64(win.distinct))
		}
	}
	used := 0
	for _, s := range g.ring {
		if s.idx != wcEmptySlot {
			used++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(used))
	for _, s := range g.ring {
		if s.idx != wcEmptySlot {
			dst = binary.AppendVarint(dst, s.idx)
			dst = binary.AppendUvarint(dst, uint64(s.count))
		}
	}
	return dst
}

// errWCCorrupt reports a group state that does not decode.
var errWCCorrupt = errors.New("window_counter: malformed group state")

func (c wcGroupCodec) Decode(src []byte) (*wcGroup, error) {
	if len(src) < 2 || src[0] != wcCodecVersion {
		return nil, errWCCorrupt
	}
	if aggKind(src[1]) != c.params.agg {
		return nil, fmt.Errorf("window_counter %q: state was written for another aggregate (%d, now %d)", c.params.id, src[1], c.params.agg)
	}
	d := wcDecoder{src: src[2:]}
	g := &wcGroup{}
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.src)) {
		g.wins = make([]wcWindow, n)
	} else if n > 0 {
		return nil, errWCCorrupt
	}
	for i := range g.wins {
		win := &g.wins[i]
		win.start = d.varint()
		win.count = int64(d.uvarint())
		win.rev = int64(d.uvarint())
		switch c.params.agg {
		case aggSum:
			win.sum = d.varint()
		case aggDistinct:
			win.distinct = int64(d.uvarint())
		}
	}
	used := d.uvarint()
	if used > uint64(len(d.src)) {
		return nil, errWCCorrupt
	}
	for range used {
		idx, count := d.varint(), int64(d.uvarint())
		if c.params.spike {
			g.ringPut(c.params.baseline, idx, count)
		}
	}
	if d.bad || len(d.src) != 0 {
		return nil, errWCCorrupt
	}
	return g, nil
}

// wcDecoder reads varints off a buffer, remembering any failure.
type wcDecoder struct {
	src []byte
	bad bool
}

func (d *wcDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.src)
	if n <= 0 {
		d.bad, d.src = true, nil
		return 0
	}
	d.src = d.src[n:]
	return v
}

func (d *wcDecoder) varint() int64 {
	v, n := binary.Varint(d.src)
	if n <= 0 {
		d.bad, d.src = true, nil
		return 0
	}
	d.src = d.src[n:]
	return v
}

// wcEmptyCodec stores a set member: the value is empty.
type wcEmptyCodec struct{}

func (wcEmptyCodec) Append(dst []byte, _ struct{}) []byte { return dst }

func (wcEmptyCodec) Decode([]byte) (struct{}, error) { return struct{}{}, nil }

// windowResult is the payload of a window_result record.
type windowResult struct {
	start, end int64
	group      string
	count      int64
	agg        aggKind
	sum        int64 // millionths
	distinct   int64
}

// AppendJSON encodes {window_start, window_end, group, count[, sum |
// distinct]} without reflection.
func (r *windowResult) AppendJSON(dst []byte) []byte {
	dst = wcAppendHead(dst, r.start, r.end, r.group, r.count)
	switch r.agg {
	case aggSum:
		dst = append(dst, `,"sum":`...)
		dst = wcAppendFloat(dst, float64(r.sum)/wcSumScale)
	case aggDistinct:
		dst = append(dst, `,"distinct":`...)
		dst = strconv.AppendInt(dst, r.distinct, 10)
	}
	return append(dst, '}')
}

// demandSpike is the payload of a demand_spike record.
type demandSpike struct {
	start, end int64
	group      string
	count      int64
	baseline   float64
	// n and sum are the baseline's window count and sum, for the ratio.
	n   float64
	sum int64
}

// AppendJSON encodes {window_start, window_end, group, count, baseline,
// ratio} without reflection; ratio is null when the baseline is 0.
func (s *demandSpike) AppendJSON(dst []byte) []byte {
	dst = wcAppendHead(dst, s.start, s.end, s.group, s.count)
	dst = append(dst, `,"baseline":`...)
	dst = wcAppendFloat(dst, s.baseline)
	dst = append(dst, `,"ratio":`...)
	if s.sum == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = wcAppendFloat(dst, float64(s.count)*s.n/float64(s.sum))
	}
	return append(dst, '}')
}

// wcAppendHead appends `{"window_start":..,"window_end":..,"group":..,
// "count":n` (no closing brace).
func wcAppendHead(dst []byte, start, end int64, group string, count int64) []byte {
	dst = append(dst, `{"window_start":"`...)
	dst = pipeline.TimeFromNanos(start).AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","window_end":"`...)
	dst = pipeline.TimeFromNanos(end).AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","group":`...)
	dst = pipeline.AppendJSONString(dst, group)
	dst = append(dst, `,"count":`...)
	return strconv.AppendInt(dst, count, 10)
}

// wcAppendFloat appends a float as a JSON number (null if not finite).
func wcAppendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}
