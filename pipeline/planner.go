package pipeline

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults and limits of a spec.
const (
	// DefaultPartitions is the partition count of a spec that sets none.
	DefaultPartitions = 8
	// MaxPartitions is the largest partition count a spec may set.
	MaxPartitions = 4096
	// DefaultMaxOutOfOrderness is the time.max_out_of_orderness of a spec
	// that sets none.
	DefaultMaxOutOfOrderness = 5 * time.Second
	// DefaultIdleTimeout is the time.idle_timeout of a spec that sets none.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultCheckpointInterval is the state.checkpoint_interval of a spec
	// that sets none.
	DefaultCheckpointInterval = time.Second
)

// State sync modes (StateSpec.Sync).
const (
	// SyncAlways makes every commit wait for the disk.
	SyncAlways = "always"
	// SyncCheckpoint makes checkpoint commits wait for the disk; it is the
	// default.
	SyncCheckpoint = "checkpoint"
	// SyncNever never waits for the disk: a machine crash may lose the last
	// checkpoints (a process crash loses nothing).
	SyncNever = "never"
)

// SpecError is one problem of a pipeline spec, at the place it was written.
type SpecError struct {
	// Pos is where the problem was written; its Line is 0 when the spec did
	// not come from a file or the problem is an absent field.
	Pos Position
	Msg string
}

// Error returns "file:line:col: msg".
func (e SpecError) Error() string {
	if p := e.Pos.String(); p != "" {
		return p + ": " + e.Msg
	}
	return e.Msg
}

// SpecErrors is every problem found in a spec, sorted by position. It is the
// error LoadSpec, ParseSpec, NewPlan, LoadPlan and Builder.Plan return.
type SpecErrors []SpecError

// Error returns one problem per line.
func (e SpecErrors) Error() string {
	var b strings.Builder
	for i, se := range e {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(se.Error())
	}
	return b.String()
}

func (e SpecErrors) sort() {
	slices.SortStableFunc(e, func(a, b SpecError) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column),
		)
	})
}

// String returns "file:line:col", leaving out what is unknown.
func (p Position) String() string {
	s := p.File
	if p.Line > 0 {
		if s != "" {
			s += ":"
		}
		s += strconv.Itoa(p.Line)
		if p.Column > 0 {
			s += ":" + strconv.Itoa(p.Column)
		}
	}
	return s
}

// NewPlan validates a spec and resolves it into a Plan. It checks
// everything and reports every problem at once, as a SpecErrors sorted by
// position:
//   - version is 1 and name is set (letters, digits, '_', '-', '.');
//   - partitions is 1..4096 (default 8);
//   - time.max_out_of_orderness >= 0 (default 5s), time.idle_timeout > 0
//     (default 30s), state.checkpoint_interval > 0 (default 1s), state.sync
//     is always, checkpoint (default) or never, state.dir defaults to
//     .sluice/state/<name>;
//   - the source, sink and dead-letter types are registered, and their
//     settings decode (strictly) and validate;
//   - operator ids are set, unique and made of letters, digits, '_' and
//     '-'; operator types are registered (unless OperatorSpec.New is set)
//     and their `with` blocks decode and validate, and build;
//   - every input names an operator and the operators form no cycle;
//   - sink ids are set and unique, and every sink reads known operators.
//
// The plan's Spec is a copy of spec with the defaults filled in. NewPlan
// makes one instance of each operator to learn whether it is a Rekeyer;
// it opens no connector.
func NewPlan(spec *Spec) (*Plan, error) {
	plan, errs := newPlan(spec)
	if len(errs) > 0 {
		return nil, errs
	}
	return plan, nil
}

type planner struct {
	s    *Spec
	meta *specMeta
	errs SpecErrors
}

func (pl *planner) errorf(pos Position, format string, args ...any) {
	pl.errs = append(pl.errs, SpecError{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// root is where errors about absent top-level fields go.
func (pl *planner) root() Position {
	if pl.meta != nil && pl.meta.root.Line > 0 {
		return pl.meta.root
	}
	return Position{File: pl.s.File}
}

// top returns where a top-level field was written, or the root.
func (pl *planner) top(field string) Position { return pl.meta.pos(Position{}, field, pl.root()) }

// orRoot returns p, or the root when p is unknown.
func (pl *planner) orRoot(p Position) Position {
	if p.Line > 0 || p.File != "" {
		return p
	}
	return pl.root()
}

func newPlan(in *Spec) (*Plan, SpecErrors) {
	if in == nil {
		return nil, SpecErrors{{Msg: "no spec"}}
	}
	s := *in
	s.Operators = slices.Clone(in.Operators)
	for i := range s.Operators {
		s.Operators[i].Inputs = slices.Clone(s.Operators[i].Inputs)
	}
	s.Sinks = slices.Clone(in.Sinks)
	for i := range s.Sinks {
		s.Sinks[i].Inputs = slices.Clone(s.Sinks[i].Inputs)
	}
	if in.DeadLetter != nil {
		dl := *in.DeadLetter
		s.DeadLetter = &dl
	}
	pl := &planner{s: &s, meta: in.meta}
	if in.meta != nil {
		pl.errs = slices.Clone(in.meta.errs)
	}
	plan := &Plan{Spec: &s}

	pl.settings()
	plan.Source = planConnector(pl, registry.sources, "source", "source", &s.Source, true)
	if s.DeadLetter != nil {
		plan.DeadLetter = planConnector(pl, registry.deadLetters, "dead_letter", "dead_letter", s.DeadLetter, true)
	}
	pl.graph(plan)

	if len(pl.errs) > 0 {
		pl.errs.sort()
		return nil, pl.errs
	}
	return plan, nil
}

// settings checks the top-level fields and fills in the defaults.
func (pl *planner) settings() {
	s, m, none := pl.s, pl.meta, Position{}
	if s.Version != 1 && !m.isBad(none, "version") {
		if s.Version == 0 && !m.has(none, "version") {
			pl.errorf(pl.root(), "version is required (version: 1)")
		} else {
			pl.errorf(pl.top("version"), "version: must be 1, got %d", s.Version)
		}
	}
	switch {
	case m.isBad(none, "name"):
	case s.Name == "":
		pl.errorf(pl.top("name"), "name is required")
	case !validName(s.Name):
		pl.errorf(pl.top("name"), "name: %q may only hold letters, digits, '_', '-' and '.', and must start with a letter or digit", s.Name)
	}
	switch {
	case m.isBad(none, "partitions"):
	case s.Partitions == 0 && !m.has(none, "partitions"):
		s.Partitions = DefaultPartitions
	case s.Partitions < 1 || s.Partitions > MaxPartitions:
		pl.errorf(pl.top("partitions"), "partitions: must be between 1 and %d, got %d", MaxPartitions, s.Partitions)
	}
	pl.duration(&s.Time.MaxOutOfOrderness, "time.max_out_of_orderness", DefaultMaxOutOfOrderness, true)
	pl.duration(&s.Time.IdleTimeout, "time.idle_timeout", DefaultIdleTimeout, false)
	pl.duration(&s.State.CheckpointInterval, "state.checkpoint_interval", DefaultCheckpointInterval, false)
	if s.State.Dir == "" && s.Name != "" && validName(s.Name) {
		s.State.Dir = filepath.Join(".sluice", "state", s.Name)
	}
	switch s.State.Sync {
	case "":
		s.State.Sync = SyncCheckpoint
	case SyncAlways, SyncCheckpoint, SyncNever:
	default:
		if !m.isBad(none, "state.sync") {
			pl.errorf(pl.top("state.sync"), "state: sync: must be %s, %s or %s, got %q", SyncAlways, SyncCheckpoint, SyncNever, s.State.Sync)
		}
	}
}

// duration defaults an unset duration and checks a set one.
func (pl *planner) duration(d *Duration, field string, def time.Duration, zeroOK bool) {
	m, none := pl.meta, Position{}
	if m.isBad(none, field) {
		return
	}
	name := strings.Replace(field, ".", ": ", 1)
	switch {
	case *d == 0 && !m.has(none, field):
		*d = Duration(def)
	case *d < 0:
		pl.errorf(pl.top(field), "%s: must not be negative, got %s", name, *d)
	case *d == 0 && !zeroOK:
		pl.errorf(pl.top(field), "%s: must be greater than 0", name)
	}
}

// planConnector checks a source, sink or dead-letter component and returns
// its opener. where names it in messages; field is its specMeta prefix
// ("source"; "" for a sink, whose fields are keyed by its owner).
func planConnector[T any](pl *planner, types map[string]connectorType[T], where, field string, c *ComponentSpec, top bool) Opener[T] {
	owner, typeField := c.Pos, "type"
	if top {
		owner, typeField = Position{}, field+".type"
	}
	at := pl.orRoot(c.Pos)
	if pl.meta.isBad(owner, typeField) {
		return nil
	}
	typePos := pl.meta.pos(owner, typeField, at)
	if c.Type == "" {
		if top && c.Pos == (Position{}) && !pl.meta.has(Position{}, field) && c.Config == nil {
			pl.errorf(at, "%s is required", field)
		} else {
			pl.errorf(typePos, "%s: type is required", where)
		}
		return nil
	}
	registry.RLock()
	ct, ok := types[c.Type]
	known := make([]string, 0, len(types))
	for t := range types {
		known = append(known, t)
	}
	registry.RUnlock()
	if !ok {
		slices.Sort(known)
		pl.errorf(typePos, "%s: unknown type %q%s", where, c.Type, knownHint(c.Type, known))
		return nil
	}
	cfg, serr := ct.decode(c.Config, pl.s.File, at)
	if serr != nil {
		pl.errorf(serr.Pos, "%s: %s", where, serr.Msg)
		return nil
	}
	open, label := ct.open, fmt.Sprintf("%s (type %s)", where, c.Type)
	return func() (T, error) {
		t, err := open(cfg)
		if err != nil {
			var zero T
			return zero, fmt.Errorf("open %s: %w", label, err)
		}
		return t, nil
	}
}

// knownHint helps with an unknown type name: a likely correction, else the
// names there are.
func knownHint(typ string, known []string) string {
	if s := suggest(typ, known); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	if len(known) == 0 {
		return " (none is registered: import the package that registers them)"
	}
	return " (known: " + strings.Join(known, ", ") + ")"
}

// graph checks the operators and sinks and fills in plan.Operators and
// plan.Sinks.
func (pl *planner) graph(plan *Plan) {
	s, m := pl.s, pl.meta
	n := len(s.Operators)
	index := make(map[string]int, n) // operator id -> spec index
	inGraph := make([]bool, n)
	factories := make([]Factory, n)
	rekeyed := make([]bool, n)
	reads := make([]EventFields, n)
	forwards := make([]bool, n)
	names := make([]string, n)

	for i := range s.Operators {
		op := &s.Operators[i]
		names[i] = itemName("operator", "operators", i, op.ID)
		idPos := m.pos(op.Pos, "id", pl.orRoot(op.Pos))
		switch first, dup := index[op.ID]; {
		case m.isBad(op.Pos, "id"):
		case op.ID == "":
			pl.errorf(pl.orRoot(op.Pos), "%s: id is required", names[i])
		case !validID(op.ID):
			pl.errorf(idPos, "%s: id may only hold letters, digits, '_' and '-'", names[i])
		case dup:
			pl.errorf(idPos, "operator id %q is used twice%s", op.ID, firstAt(s.Operators[first].Pos))
		default:
			index[op.ID] = i
			inGraph[i] = true
		}
		factories[i] = pl.factory(op, names[i])
		if f := factories[i]; f != nil {
			inst := f()
			if inst == nil {
				pl.errorf(pl.orRoot(op.Pos), "%s: factory made a nil operator", names[i])
				factories[i] = nil
				continue
			}
			_, rekeyed[i] = inst.(Rekeyer)
			reads[i], forwards[i] = eventFieldsOf(inst)
		}
	}

	// Edges, in spec indexes.
	inputs := make([][]int, n)
	outputs := make([][]int, n)
	for i := range s.Operators {
		op := &s.Operators[i]
		if m.isBad(op.Pos, "inputs") {
			continue
		}
		for _, k := range pl.resolveInputs(op.Pos, names[i], op.Inputs, index, s.Sinks, false) {
			if inGraph[i] && k >= 0 {
				inputs[i] = append(inputs[i], k)
				outputs[k] = append(outputs[k], i)
			}
		}
	}
	for i := range outputs {
		slices.Sort(outputs[i])
		outputs[i] = slices.Compact(outputs[i])
	}

	order := topoOrder(inGraph, inputs, outputs)
	pl.cycles(order, inGraph, outputs, names)

	topo := make([]int, n) // spec index -> plan index, -1 when not placed
	for i := range topo {
		topo[i] = -1
	}
	for j, i := range order {
		topo[i] = j
	}
	for j, i := range order {
		op := &s.Operators[i]
		po := &PlannedOperator{ID: op.ID, Type: op.Type, Index: j, New: factories[i], Rekeyed: rekeyed[i],
			Reads: reads[i], Forwards: forwards[i]}
		for _, k := range inputs[i] {
			po.Inputs = append(po.Inputs, topo[k])
		}
		for _, k := range outputs[i] {
			po.Outputs = append(po.Outputs, topo[k])
		}
		slices.Sort(po.Outputs)
		plan.Operators = append(plan.Operators, po)
	}

	// Sinks.
	sinkIDs := make(map[string]int, len(s.Sinks))
	for j := range s.Sinks {
		sk := &s.Sinks[j]
		name := itemName("sink", "sinks", j, sk.ID)
		idPos := m.pos(sk.Pos, "id", pl.orRoot(sk.Pos))
		switch first, dup := sinkIDs[sk.ID]; {
		case m.isBad(sk.Pos, "id"):
		case sk.ID == "":
			pl.errorf(pl.orRoot(sk.Pos), "%s: id is required", name)
		case !validID(sk.ID):
			pl.errorf(idPos, "%s: id may only hold letters, digits, '_' and '-'", name)
		case dup:
			pl.errorf(idPos, "sink id %q is used twice%s", sk.ID, firstAt(s.Sinks[first].Pos))
		default:
			sinkIDs[sk.ID] = j
		}
		ps := &PlannedSink{ID: sk.ID, Type: sk.Type}
		ps.Open = planConnector(pl, registry.sinks, name, "", &sk.ComponentSpec, false)
		if !m.isBad(sk.Pos, "inputs") {
			if len(sk.Inputs) == 0 {
				pl.errorf(m.pos(sk.Pos, "inputs", pl.orRoot(sk.Pos)), "%s: inputs: name at least one operator", name)
			}
			for _, k := range pl.resolveInputs(sk.Pos, name, sk.Inputs, index, nil, true) {
				if k >= 0 && topo[k] >= 0 {
					ps.Inputs = append(ps.Inputs, topo[k])
					po := plan.Operators[topo[k]]
					po.Sinks = append(po.Sinks, j)
				}
			}
		}
		plan.Sinks = append(plan.Sinks, ps)
	}
}

// factory resolves an operator's factory: OperatorSpec.New, or the
// registered type's build of the decoded `with` block.
func (pl *planner) factory(op *OperatorSpec, name string) Factory {
	m := pl.meta
	if op.New != nil {
		return op.New
	}
	if m.isBad(op.Pos, "type") {
		return nil
	}
	at := pl.orRoot(op.Pos)
	if op.Type == "" {
		pl.errorf(at, "%s: type is required", name)
		return nil
	}
	ot, ok := lookupOperator(op.Type)
	if !ok {
		pl.errorf(m.pos(op.Pos, "type", at), "%s: unknown operator type %q%s", name, op.Type, knownHint(op.Type, OperatorTypes()))
		return nil
	}
	cfg, serr := ot.decode(op.With, pl.s.File, m.pos(op.Pos, "with", at))
	if serr != nil {
		pl.errorf(serr.Pos, "%s: %s", name, serr.Msg)
		return nil
	}
	f, err := ot.build(op.ID, cfg)
	if err != nil {
		pl.errorf(at, "%s: %v", name, err)
		return nil
	}
	if f == nil {
		pl.errorf(at, "%s: type %q built no factory", name, op.Type)
	}
	return f
}

// resolveInputs maps input ids to spec indexes (-1 for the bad ones),
// reporting empty, repeated and unknown ids.
func (pl *planner) resolveInputs(owner Position, name string, ids []string, index map[string]int, sinks []SinkSpec, isSink bool) []int {
	out := make([]int, len(ids))
	seen := make(map[string]bool, len(ids))
	for j, id := range ids {
		out[j] = -1
		at := pl.meta.pos(owner, fmt.Sprintf("inputs[%d]", j), pl.meta.pos(owner, "inputs", pl.orRoot(owner)))
		k, ok := index[id]
		switch {
		case id == "":
			pl.errorf(at, "%s: inputs[%d] is empty", name, j)
		case seen[id]:
			pl.errorf(at, "%s: input %q is listed twice", name, id)
		case !ok:
			hint := ""
			if s := suggest(id, mapKeys(index)); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			} else if slices.ContainsFunc(sinks, func(sk SinkSpec) bool { return sk.ID == id }) {
				hint = " (a sink: inputs name operators)"
			}
			what := "input"
			if isSink {
				what = "input operator"
			}
			pl.errorf(at, "%s: unknown %s %q%s", name, what, id, hint)
		default:
			out[j] = k
		}
		seen[id] = true
	}
	return out
}

// topoOrder orders the graph's operators so that each comes after its
// inputs; among the ready ones, spec order wins. Operators in or after a
// cycle are left out.
func topoOrder(inGraph []bool, inputs, outputs [][]int) []int {
	n := len(inGraph)
	indeg := make([]int, n)
	var ready []int
	for i := range n {
		if !inGraph[i] {
			continue
		}
		indeg[i] = len(inputs[i])
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	order := make([]int, 0, n)
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		order = append(order, i)
		for _, k := range outputs[i] {
			if indeg[k]--; indeg[k] == 0 {
				at, _ := slices.BinarySearch(ready, k)
				ready = slices.Insert(ready, at, k)
			}
		}
	}
	return order
}

// cycles reports each cycle among the operators topoOrder left out, naming
// its operators in order.
func (pl *planner) cycles(order []int, inGraph []bool, outputs [][]int, names []string) {
	n := len(inGraph)
	left := make([]bool, n)
	for i := range n {
		left[i] = inGraph[i]
	}
	for _, i := range order {
		left[i] = false
	}
	for _, scc := range stronglyConnected(left, outputs) {
		u := scc[0] // the first in spec order
		path := cyclePath(u, scc, outputs)
		if path == nil {
			continue // a single operator that does not read itself
		}
		ids := make([]string, len(path))
		for k, i := range path {
			ids[k] = pl.s.Operators[i].ID
		}
		op := &pl.s.Operators[u]
		at := pl.meta.pos(op.Pos, "inputs", pl.orRoot(op.Pos))
		pl.errorf(at, "%s: cycle: %s", names[u], strings.Join(ids, " -> "))
	}
}

// stronglyConnected returns the strongly connected components of the
// subgraph of nodes in sub (Tarjan), each sorted, ordered by first member.
func stronglyConnected(sub []bool, outputs [][]int) [][]int {
	n := len(sub)
	idx := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range idx {
		idx[i] = -1
	}
	var stack []int
	var sccs [][]int
	next := 0
	var visit func(v int)
	visit = func(v int) {
		idx[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range outputs[v] {
			if !sub[w] {
				continue
			}
			if idx[w] < 0 {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], idx[w])
			}
		}
		if low[v] == idx[v] {
			var scc []int
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			slices.Sort(scc)
			sccs = append(sccs, scc)
		}
	}
	for v := range n {
		if sub[v] && idx[v] < 0 {
			visit(v)
		}
	}
	slices.SortFunc(sccs, func(a, b []int) int { return cmp.Compare(a[0], b[0]) })
	return sccs
}

// cyclePath returns a shortest cycle u -> ... -> u within scc, or nil.
func cyclePath(u int, scc []int, outputs [][]int) []int {
	in := make(map[int]bool, len(scc))
	for _, v := range scc {
		in[v] = true
	}
	parent := map[int]int{u: -1}
	queue := []int{u}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range outputs[v] {
			if w == u {
				var path []int
				for x := v; x != -1; x = parent[x] {
					path = append(path, x)
				}
				slices.Reverse(path)
				return append(path, u)
			}
			if _, seen := parent[w]; seen || !in[w] {
				continue
			}
			parent[w] = v
			queue = append(queue, w)
		}
	}
	return nil
}

// itemName names an operator or sink in messages.
func itemName(kind, list string, i int, id string) string {
	if id != "" {
		return fmt.Sprintf("%s %q", kind, id)
	}
	return fmt.Sprintf("%s[%d]", list, i)
}

func firstAt(p Position) string {
	if p.Line > 0 {
		return fmt.Sprintf(" (first at line %d)", p.Line)
	}
	return ""
}

func mapKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// validID reports whether s is a valid operator or sink id.
func validID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validName reports whether s is a valid pipeline name: safe as a path
// element.
func validName(s string) bool {
	if s == "" {
		return false
	}
	if c := s[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
