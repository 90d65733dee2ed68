package pipeline

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// LoadSpec reads and decodes the YAML pipeline spec at path (DESIGN §3).
// Decoding is strict: unknown fields, wrong types and duplicate keys are
// errors. The error is a SpecErrors holding every problem found, each at its
// file:line:col. LoadSpec checks the spec's shape only; NewPlan checks its
// meaning (and LoadPlan does both at once).
func LoadSpec(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pipeline spec: %w", err)
	}
	return ParseSpec(data, path)
}

// ParseSpec decodes a YAML pipeline spec, like LoadSpec; file names the
// spec in positions and error messages.
//
// The settings of the source, sinks and dead-letter output are written
// inline beside their `type`; ParseSpec keeps them, and each operator's
// `with` block, as YAML nodes (ComponentSpec.Config, OperatorSpec.With) that
// NewPlan decodes into the config type the connector or operator registered.
func ParseSpec(data []byte, file string) (*Spec, error) {
	spec, errs := parseSpec(data, file)
	if len(errs) > 0 {
		return nil, errs
	}
	return spec, nil
}

// LoadPlan reads, decodes and plans the spec at path, and reports every
// problem of both steps at once, sorted by line: what `sluice validate`
// prints.
func LoadPlan(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pipeline spec: %w", err)
	}
	return ParsePlan(data, path)
}

// ParsePlan decodes and plans a YAML spec, like LoadPlan.
func ParsePlan(data []byte, file string) (*Plan, error) {
	spec, errs := parseSpec(data, file)
	if spec == nil {
		return nil, errs
	}
	plan, planErrs := newPlan(spec)
	errs = append(errs, planErrs...)
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return plan, nil
}

// specMeta records what a spec said explicitly and where: the planner uses
// it to tell an explicit zero from an unset field, to place its errors on
// the offending field, and to stay quiet about fields that failed to decode.
type specMeta struct {
	root   Position
	fields map[fieldKey]Position
	bad    map[fieldKey]bool
	// errs are problems found while building the spec (by the Builder),
	// reported by the planner with its own.
	errs SpecErrors
}

// fieldKey names a field of the spec: owner is the Pos of the operator or
// sink holding it, zero for the spec's own fields ("version",
// "time.idle_timeout", "source.type").
type fieldKey struct {
	owner Position
	name  string
}

func newSpecMeta(root Position) *specMeta {
	return &specMeta{root: root, fields: map[fieldKey]Position{}, bad: map[fieldKey]bool{}}
}

// has reports whether the field was written.
func (m *specMeta) has(owner Position, name string) bool {
	if m == nil {
		return false
	}
	_, ok := m.fields[fieldKey{owner, name}]
	return ok
}

// pos returns where the field was written, or fallback.
func (m *specMeta) pos(owner Position, name string, fallback Position) Position {
	if m == nil {
		return fallback
	}
	if p, ok := m.fields[fieldKey{owner, name}]; ok && p.Line > 0 {
		return p
	}
	return fallback
}

// isBad reports whether the field failed to decode (and was reported).
func (m *specMeta) isBad(owner Position, name string) bool {
	return m != nil && m.bad[fieldKey{owner, name}]
}

func (m *specMeta) clone() *specMeta {
	if m == nil {
		return nil
	}
	c := newSpecMeta(m.root)
	for k, v := range m.fields {
		c.fields[k] = v
	}
	for k, v := range m.bad {
		c.bad[k] = v
	}
	c.errs = slices.Clone(m.errs)
	return c
}

// specParser walks the YAML AST of a spec, collecting every error.
type specParser struct {
	file    string
	errs    SpecErrors
	anchors map[string]ast.Node
	meta    *specMeta
}

// scope is the part of the spec being decoded: owner keys its fields in
// specMeta, where prefixes its error messages.
type scope struct {
	owner Position
	where string
}

// parseSpec decodes what it can of a spec and returns every error. The spec
// is nil only when the YAML could not be parsed at all.
func parseSpec(data []byte, file string) (*Spec, SpecErrors) {
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		return nil, SpecErrors{yamlSpecError(err, file, Position{File: file}, true)}
	}
	var docs []ast.Node
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d.Body)
		}
	}
	if len(docs) == 0 {
		return nil, SpecErrors{{Pos: Position{File: file}, Msg: "the spec is empty"}}
	}
	p := &specParser{file: file, anchors: map[string]ast.Node{}}
	if len(docs) > 1 {
		p.errs = append(p.errs, SpecError{Pos: nodePos(docs[1], file), Msg: "a spec file holds one YAML document; found another"})
	}
	root := docs[0]
	ast.Walk(anchorCollector(p.anchors), root)
	resolveAliases(root, p.anchors, 0)
	p.meta = newSpecMeta(nodePos(unwrapNode(root, p.anchors), file))
	spec := p.spec(root)
	p.errs.sort()
	return spec, p.errs
}

// anchorCollector records every anchor of a document by name.
type anchorCollector map[string]ast.Node

func (c anchorCollector) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		c[a.Name.GetToken().Value] = a.Value
	}
	return c
}

// resolveAliases replaces every alias under n by the node its anchor names,
// so that a `with` or connector block decoded on its own still sees the
// anchors written elsewhere in the file.
func resolveAliases(n ast.Node, anchors map[string]ast.Node, depth int) {
	if depth > 1000 {
		return
	}
	resolve := func(v ast.Node) ast.Node {
		if a, ok := v.(*ast.AliasNode); ok && a.Value != nil {
			if target, ok := anchors[a.Value.GetToken().Value]; ok {
				return target
			}
		}
		resolveAliases(v, anchors, depth+1)
		return v
	}
	switch v := n.(type) {
	case *ast.MappingNode:
		for _, kv := range v.Values {
			kv.Value = resolve(kv.Value)
		}
	case *ast.MappingValueNode:
		v.Value = resolve(v.Value)
	case *ast.SequenceNode:
		for i := range v.Values {
			v.Values[i] = resolve(v.Values[i])
		}
	case *ast.AnchorNode:
		v.Value = resolve(v.Value)
	case *ast.TagNode:
		v.Value = resolve(v.Value)
	}
}

var specFields = []string{"version", "name", "source", "time", "state", "partitions", "dead_letter", "operators", "sinks"}

func (p *specParser) spec(root ast.Node) *Spec {
	s := &Spec{File: p.file, meta: p.meta}
	top := scope{}
	for _, kv := range p.entries(top, "the spec", root) {
		key, v := keyText(kv.Key), kv.Value
		switch key {
		case "version":
			s.Version = p.integer(top, "version", v)
		case "name":
			s.Name = p.str(top, "name", v)
		case "partitions":
			s.Partitions = p.integer(top, "partitions", v)
		case "source":
			p.record(top, "source", v)
			s.Source, _ = p.component(scope{where: "source"}, "source", v)
		case "dead_letter":
			if isNull(unwrapNode(v, p.anchors)) {
				continue
			}
			p.record(top, "dead_letter", v)
			dl, _ := p.component(scope{where: "dead_letter"}, "dead_letter", v)
			s.DeadLetter = &dl
		case "time":
			sc := scope{where: "time"}
			for _, kv := range p.entries(sc, "", v) {
				switch k := keyText(kv.Key); k {
				case "max_out_of_orderness":
					s.Time.MaxOutOfOrderness = p.duration(sc, "time."+k, kv.Value)
				case "idle_timeout":
					s.Time.IdleTimeout = p.duration(sc, "time."+k, kv.Value)
				default:
					p.unknownField(sc, kv.Key, k, []string{"max_out_of_orderness", "idle_timeout"})
				}
			}
		case "state":
			sc := scope{where: "state"}
			for _, kv := range p.entries(sc, "", v) {
				switch k := keyText(kv.Key); k {
				case "dir":
					s.State.Dir = p.str(sc, "state."+k, kv.Value)
				case "checkpoint_interval":
					s.State.CheckpointInterval = p.duration(sc, "state."+k, kv.Value)
				case "sync":
					s.State.Sync = p.str(sc, "state."+k, kv.Value)
				default:
					p.unknownField(sc, kv.Key, k, []string{"dir", "checkpoint_interval", "sync"})
				}
			}
		case "operators":
			for i, n := range p.sequence(top, "operators", v) {
				s.Operators = append(s.Operators, p.operator(i, n))
			}
		case "sinks":
			for i, n := range p.sequence(top, "sinks", v) {
				s.Sinks = append(s.Sinks, p.sink(i, n))
			}
		default:
			p.unknownField(top, kv.Key, key, specFields)
		}
	}
	return s
}

func (p *specParser) operator(i int, n ast.Node) OperatorSpec {
	n = unwrapNode(n, p.anchors)
	op := OperatorSpec{Pos: nodePos(n, p.file)}
	sc := scope{owner: op.Pos, where: p.itemName("operator", "operators", i, n)}
	for _, kv := range p.entries(sc, "", n) {
		switch k := keyText(kv.Key); k {
		case "id":
			op.ID = p.str(sc, k, kv.Value)
		case "type":
			op.Type = p.str(sc, k, kv.Value)
		case "inputs":
			op.Inputs = p.strList(sc, k, kv.Value)
		case "with":
			if w := unwrapNode(kv.Value, p.anchors); !isNull(w) {
				p.record(sc, k, w)
				op.With = w
			}
		default:
			p.unknownField(sc, kv.Key, k, []string{"id", "type", "inputs", "with"})
		}
	}
	return op
}

func (p *specParser) sink(i int, n ast.Node) SinkSpec {
	n = unwrapNode(n, p.anchors)
	pos := nodePos(n, p.file)
	sc := scope{owner: pos, where: p.itemName("sink", "sinks", i, n)}
	comp, extra := p.component(sc, "", n, "id", "inputs")
	sk := SinkSpec{ComponentSpec: comp}
	if kv := extra["id"]; kv != nil {
		sk.ID = p.str(sc, "id", kv.Value)
	}
	if kv := extra["inputs"]; kv != nil {
		sk.Inputs = p.strList(sc, "inputs", kv.Value)
	}
	return sk
}

// itemName names an operator or sink in messages: by its id when it has a
// readable one, else by its index.
func (p *specParser) itemName(kind, list string, i int, n ast.Node) string {
	if m, ok := n.(*ast.MappingNode); ok {
		for _, kv := range m.Values {
			if keyText(kv.Key) != "id" {
				continue
			}
			if s, ok := unwrapNode(kv.Value, p.anchors).(*ast.StringNode); ok && s.Value != "" {
				return fmt.Sprintf("%s %q", kind, s.Value)
			}
			break
		}
	}
	return fmt.Sprintf("%s[%d]", list, i)
}

// component decodes a source, sink or dead-letter block: its type, and its
// other fields (but extra) as the Config node. The extra fields' entries are
// returned for the caller. prefix is the name of the block in specMeta keys
// ("source"; "" for a sink, whose fields are keyed by its owner).
func (p *specParser) component(sc scope, prefix string, n ast.Node, extra ...string) (ComponentSpec, map[string]*ast.MappingValueNode) {
	n = unwrapNode(n, p.anchors)
	c := ComponentSpec{Pos: nodePos(n, p.file)}
	name := func(f string) string {
		if prefix == "" {
			return f
		}
		return prefix + "." + f
	}
	found := map[string]*ast.MappingValueNode{}
	var rest []*ast.MappingValueNode
	for _, kv := range p.entries(sc, "", n) {
		k := keyText(kv.Key)
		switch {
		case k == "type":
			c.Type = p.str(sc, name(k), kv.Value)
		case slices.Contains(extra, k):
			found[k] = kv
		default:
			rest = append(rest, kv)
		}
	}
	if len(rest) > 0 {
		m := &ast.MappingNode{BaseNode: &ast.BaseNode{}, Values: rest}
		if orig, ok := n.(*ast.MappingNode); ok {
			m.Start, m.End, m.IsFlowStyle = orig.Start, orig.End, orig.IsFlowStyle
		} else {
			m.Start = n.GetToken()
		}
		c.Config = m
	}
	return c, found
}

// entries returns the key/value pairs of a mapping, reporting a value that
// is not a mapping, merge keys and duplicate keys (the later duplicates are
// dropped). A null or missing mapping has no entries.
func (p *specParser) entries(sc scope, what string, n ast.Node) []*ast.MappingValueNode {
	n = unwrapNode(n, p.anchors)
	var kvs []*ast.MappingValueNode
	switch m := n.(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.MappingNode:
		kvs = m.Values
	case *ast.MappingValueNode:
		kvs = []*ast.MappingValueNode{m}
	default:
		if sc.where == "" {
			p.errorf(sc, n, "%s: expected a mapping, got %s", what, describeNode(n))
		} else {
			p.errorf(sc, n, "expected a mapping, got %s", describeNode(n))
		}
		return nil
	}
	seen := make(map[string]Position, len(kvs))
	out := kvs[:0:0]
	for _, kv := range kvs {
		if kv.Key.Type() == ast.MergeKeyType {
			p.errorf(sc, kv.Key, "merge keys (<<) are not supported")
			continue
		}
		k := keyText(kv.Key)
		if first, dup := seen[k]; dup {
			p.errorf(sc, kv.Key, "duplicate key %q (first at line %d)", k, first.Line)
			continue
		}
		seen[k] = nodePos(kv.Key, p.file)
		out = append(out, kv)
	}
	return out
}

// sequence returns the items of a list; null is an empty list.
func (p *specParser) sequence(sc scope, field string, n ast.Node) []ast.Node {
	n = unwrapNode(n, p.anchors)
	switch s := n.(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.SequenceNode:
		p.record(sc, field, n)
		return s.Values
	default:
		p.fail(sc, field, n, "expected a list, got %s", describeNode(n))
		return nil
	}
}

func (p *specParser) str(sc scope, field string, n ast.Node) string {
	n = unwrapNode(n, p.anchors)
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return ""
	case *ast.StringNode:
		p.record(sc, field, n)
		return v.Value
	case *ast.LiteralNode:
		p.record(sc, field, n)
		return v.Value.Value
	}
	p.fail(sc, field, n, "expected a string, got %s", describeNode(n))
	return ""
}

func (p *specParser) integer(sc scope, field string, n ast.Node) int {
	n = unwrapNode(n, p.anchors)
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return 0
	case *ast.IntegerNode:
		switch x := v.Value.(type) {
		case int64:
			if x >= math.MinInt && x <= math.MaxInt {
				p.record(sc, field, n)
				return int(x)
			}
		case uint64:
			if x <= math.MaxInt {
				p.record(sc, field, n)
				return int(x)
			}
		}
		p.fail(sc, field, n, "%s is out of range", v.GetToken().Value)
		return 0
	}
	p.fail(sc, field, n, "expected an integer, got %s", describeNode(n))
	return 0
}

func (p *specParser) duration(sc scope, field string, n ast.Node) Duration {
	n = unwrapNode(n, p.anchors)
	if isNull(n) {
		return 0
	}
	var d Duration
	if err := d.UnmarshalYAML(n); err != nil {
		var ne *nodeError
		if errors.As(err, &ne) {
			p.fail(sc, field, n, "%s", ne.msg)
		} else {
			p.fail(sc, field, n, "%v", err)
		}
		return 0
	}
	p.record(sc, field, n)
	return d
}

// strList decodes a list of strings, recording each item's position as
// field[i].
func (p *specParser) strList(sc scope, field string, n ast.Node) []string {
	items := p.sequence(sc, field, n)
	if items == nil {
		return nil
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, ok := unwrapNode(it, p.anchors).(*ast.StringNode)
		if !ok {
			p.fail(sc, field, it, "expected a list of strings, got %s", describeNode(unwrapNode(it, p.anchors)))
			return nil
		}
		p.record(sc, fmt.Sprintf("%s[%d]", field, i), s)
		out = append(out, s.Value)
	}
	return out
}

// record notes that field was written, at n.
func (p *specParser) record(sc scope, field string, n ast.Node) {
	p.meta.fields[fieldKey{sc.owner, field}] = nodePos(n, p.file)
}

// fail reports a field that could not be decoded; the planner then says
// nothing more about it.
func (p *specParser) fail(sc scope, field string, n ast.Node, format string, args ...any) {
	p.meta.bad[fieldKey{sc.owner, field}] = true
	name := field
	if sc.where != "" {
		// Nested spec fields are keyed by their path ("time.idle_timeout")
		// but named under their scope ("time: idle_timeout: ...").
		name = lastSegment(field)
	}
	p.errorf(sc, n, "%s: %s", name, fmt.Sprintf(format, args...))
}

func (p *specParser) unknownField(sc scope, key ast.Node, name string, known []string) {
	msg := fmt.Sprintf("unknown field %q", name)
	if s := suggest(name, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	p.errorf(sc, key, "%s", msg)
}

func (p *specParser) errorf(sc scope, n ast.Node, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if sc.where != "" {
		msg = sc.where + ": " + msg
	}
	p.errs = append(p.errs, SpecError{Pos: nodePos(n, p.file), Msg: msg})
}

func lastSegment(field string) string {
	for i := len(field) - 1; i >= 0; i-- {
		if field[i] == '.' {
			return field[i+1:]
		}
	}
	return field
}

// unwrapNode strips anchors and tags off n and resolves aliases through
// anchors (when given).
func unwrapNode(n ast.Node, anchors map[string]ast.Node) ast.Node {
	for i := 0; i < 100; i++ {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			if v.Start != nil && v.Start.Value == "!!str" {
				if _, isStr := v.Value.(*ast.StringNode); !isStr {
					if s, ok := v.Value.(ast.ScalarNode); ok && v.Value.Type() != ast.NullType {
						return &ast.StringNode{BaseNode: &ast.BaseNode{}, Token: s.GetToken(), Value: s.GetToken().Value}
					}
				}
			}
			n = v.Value
		case *ast.AliasNode:
			if anchors == nil || v.Value == nil {
				return n
			}
			target, ok := anchors[v.Value.GetToken().Value]
			if !ok {
				return n
			}
			n = target
		default:
			return n
		}
	}
	return n
}

func isNull(n ast.Node) bool {
	return n == nil || n.Type() == ast.NullType
}

// keyText returns a mapping key as text.
func keyText(k ast.Node) string {
	switch v := unwrapNode(k, nil).(type) {
	case *ast.StringNode:
		return v.Value
	case nil:
		return ""
	default:
		if tk := v.GetToken(); tk != nil {
			return tk.Value
		}
		return v.String()
	}
}

// nodePos returns where a node starts: for a block mapping its first key,
// not its first colon.
func nodePos(n ast.Node, file string) Position {
	if n == nil {
		return Position{File: file}
	}
	tk := n.GetToken()
	switch v := n.(type) {
	case *ast.MappingNode:
		if !v.IsFlowStyle && len(v.Values) > 0 && v.Values[0].Key != nil {
			tk = v.Values[0].Key.GetToken()
		}
	case *ast.MappingValueNode:
		if v.Key != nil {
			tk = v.Key.GetToken()
		}
	}
	return tokenPos(tk, file)
}

func tokenPos(tk *token.Token, file string) Position {
	if tk == nil || tk.Position == nil {
		return Position{File: file}
	}
	return Position{File: file, Line: tk.Position.Line, Column: tk.Position.Column}
}

// describeNode names the kind of a YAML value for error messages.
func describeNode(n ast.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Type() {
	case ast.NullType:
		return "null"
	case ast.BoolType:
		return "a boolean"
	case ast.IntegerType:
		return "an integer"
	case ast.FloatType, ast.InfinityType, ast.NanType:
		return "a number"
	case ast.StringType, ast.LiteralType:
		return "a string"
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.AliasType:
		return "an unknown alias"
	}
	return n.Type().YAMLName()
}

// describeType names a Go type the way a YAML author thinks of it.
func describeType(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Pointer:
		return describeType(t.Elem())
	case reflect.Interface:
		return "a value"
	}
	return t.String()
}

func describeNodeType(t ast.NodeType) string {
	switch t {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.StringType, ast.LiteralType:
		return "a string"
	case ast.IntegerType:
		return "an integer"
	case ast.FloatType:
		return "a number"
	case ast.BoolType:
		return "a boolean"
	case ast.NullType:
		return "null"
	}
	return t.YAMLName()
}

// nodeError is an error about a YAML node, positioned at its token. It is
// what Duration's UnmarshalYAML returns, so that decoders report the line.
type nodeError struct {
	msg string
	tk  *token.Token
}

var _ yaml.Error = (*nodeError)(nil)

func (e *nodeError) Error() string          { return e.FormatError(false, false) }
func (e *nodeError) GetToken() *token.Token { return e.tk }
func (e *nodeError) GetMessage() string     { return e.msg }
func (e *nodeError) FormatError(colored, inclSource bool) string {
	return yaml.FormatErrorWithToken(e.msg, e.tk, colored, inclSource)
}

// yamlSpecError turns a goccy/go-yaml error into a SpecError at its token
// (when usePos) or at fallback, with a message that names the field.
func yamlSpecError(err error, file string, fallback Position, usePos bool) SpecError {
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return SpecError{Pos: fallback, Msg: err.Error()}
	}
	tk := ye.GetToken()
	var msg string
	named := true
	switch e := ye.(type) {
	case *yaml.TypeError:
		got := describeType(e.SrcType)
		if tk != nil && e.SrcType != nil && e.SrcType.Kind() != reflect.Map && e.SrcType.Kind() != reflect.Slice {
			got += " " + strconv.Quote(tk.Value)
		}
		msg = fmt.Sprintf("expected %s, got %s", describeType(e.DstType), got)
	case *yaml.UnexpectedNodeTypeError:
		msg = fmt.Sprintf("expected %s, got %s", describeNodeType(e.Expected), describeNodeType(e.Actual))
	case *yaml.OverflowError, *nodeError:
		msg = ye.GetMessage()
	default:
		// Unknown field and duplicate key messages name their key; syntax
		// errors are about the text, not a field.
		msg = ye.GetMessage()
		named = false
	}
	if named {
		if k := keyOf(tk); k != "" {
			msg = k + ": " + msg
		}
	}
	if usePos && tk != nil && tk.Position != nil {
		return SpecError{Pos: tokenPos(tk, file), Msg: msg}
	}
	return SpecError{Pos: fallback, Msg: msg}
}

// keyOf returns the key a value token is written under, if it follows
// `key:`.
func keyOf(tk *token.Token) string {
	if tk == nil {
		return ""
	}
	prev := tk.Prev
	for prev != nil && prev.Type == token.CommentType {
		prev = prev.Prev
	}
	if prev == nil || prev.Type != token.MappingValueType || prev.Prev == nil {
		return ""
	}
	return prev.Prev.Value
}

// suggest returns the known name closest to name, if it is close enough to
// be a typo.
func suggest(name string, known []string) string {
	best, bestDist := "", max(1, len(name)/3)+1
	for _, k := range known {
		if d := editDistance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
