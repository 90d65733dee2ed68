package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"
)

func TestLoadSpec(t *testing.T) {
	path := filepath.Join("testdata", "specs", "valid.yaml")
	s, err := LoadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.File != path || s.Version != 1 || s.Name != "test-valid" || s.Partitions != 0 {
		t.Errorf("file %q version %d name %q partitions %d", s.File, s.Version, s.Name, s.Partitions)
	}
	if s.Time.MaxOutOfOrderness.D() != 10*time.Second || s.Time.IdleTimeout != 0 {
		t.Errorf("time = %+v", s.Time)
	}
	if s.State != (StateSpec{CheckpointInterval: Duration(2 * time.Second), Sync: "never"}) {
		t.Errorf("state = %+v", s.State)
	}
	if s.Source.Type != "test_spec_source" || s.Source.Pos != (Position{path, 5, 9}) {
		t.Errorf("source = %q at %v", s.Source.Type, s.Source.Pos)
	}
	if _, ok := s.Source.Config.(ast.Node); !ok {
		t.Errorf("source config is a %T, want an ast.Node", s.Source.Config)
	}
	if s.DeadLetter == nil || s.DeadLetter.Type != "test_spec_dead" || s.DeadLetter.Pos.Line != 9 {
		t.Errorf("dead letter = %+v", s.DeadLetter)
	}
	type op struct {
		id, typ string
		inputs  []string
		with    bool
		line    int
		col     int
	}
	var ops []op
	for _, o := range s.Operators {
		_, isNode := o.With.(ast.Node)
		ops = append(ops, op{o.ID, o.Type, o.Inputs, isNode, o.Pos.Line, o.Pos.Column})
	}
	wantOps := []op{
		{"sessions", "test_spec_op", []string{"consent"}, true, 11, 5},
		{"consent", "test_spec_op", nil, false, 17, 5},
		{"views", "test_spec_rekey", []string{"consent"}, true, 19, 5},
	}
	if !slices.EqualFunc(ops, wantOps, func(a, b op) bool {
		return a.id == b.id && a.typ == b.typ && slices.Equal(a.inputs, b.inputs) && a.with == b.with && a.line == b.line && a.col == b.col
	}) {
		t.Errorf("operators\n got %+v\nwant %+v", ops, wantOps)
	}
	if len(s.Sinks) != 2 {
		t.Fatalf("sinks = %+v", s.Sinks)
	}
	out, audit := s.Sinks[0], s.Sinks[1]
	if out.ID != "out" || out.Type != "test_spec_sink" || !slices.Equal(out.Inputs, []string{"sessions", "views"}) || out.Pos != (Position{path, 24, 5}) {
		t.Errorf("sink out = %+v", out)
	}
	// The config of a sink holds only the connector's own fields.
	if m, ok := out.Config.(*ast.MappingNode); !ok || len(m.Values) != 1 || keyText(m.Values[0].Key) != "path" {
		t.Errorf("sink out config = %v", out.Config)
	}
	if audit.ID != "audit" || audit.Config != nil || audit.Pos.Line != 25 {
		t.Errorf("sink audit = %+v", audit)
	}
}

func TestLoadSpecMissingFile(t *testing.T) {
	_, err := LoadSpec(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want a not-exist error", err)
	}
}

// TestParseSpecErrors checks that decoding is strict and reports every
// problem at once, each naming its line, column and field.
func TestParseSpecErrors(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"duplicate key", `
version: 1
name: a
name: b
`, `t.yaml:4:1: duplicate key "name" (first at line 3)`},
		{"duplicate key in operator", `
version: 1
operators:
  - id: a
    type: x
    type: y
`, `t.yaml:6:5: operator "a": duplicate key "type" (first at line 5)`},
		{"duplicate key in flow sink", `
sinks:
  - {id: out, type: f, id: again}
`, `t.yaml:3:24: sink "out": duplicate key "id" (first at line 3)`},
		{"unknown fields everywhere", `
version: 1
partitons: 8
time: {idle: 3s}
state: {sink: always}
operators:
  - id: a
    input: [b]
`, `t.yaml:3:1: unknown field "partitons" (did you mean "partitions"?)
t.yaml:4:8: time: unknown field "idle"
t.yaml:5:9: state: unknown field "sink"
t.yaml:8:5: operator "a": unknown field "input" (did you mean "inputs"?)`},
		{"wrong types", `
version: one
name: [x]
partitions: 8.5
time: {max_out_of_orderness: 5}
state: {dir: 3, checkpoint_interval: soon}
operators:
  - id: 7
    inputs: consent
  - id: b
    inputs: [a, [c]]
sinks: {id: out}
`, `t.yaml:2:10: version: expected an integer, got a string
t.yaml:3:7: name: expected a string, got a list
t.yaml:4:13: partitions: expected an integer, got a number
t.yaml:5:30: time: max_out_of_orderness: invalid duration "5": missing unit (ns, us, ms, s, m, h, d or w)
t.yaml:6:14: state: dir: expected a string, got an integer
t.yaml:6:38: state: checkpoint_interval: invalid duration "soon"
t.yaml:8:9: operators[0]: id: expected a string, got an integer
t.yaml:9:13: operators[0]: inputs: expected a list, got a string
t.yaml:11:17: operator "b": inputs: expected a list of strings, got a list
t.yaml:12:8: sinks: expected a list, got a mapping`},
		{"not a mapping", `
- version: 1
`, `t.yaml:2:1: the spec: expected a mapping, got a list`},
		{"operator not a mapping", `
operators: [a]
`, `t.yaml:2:13: operators[0]: expected a mapping, got a string`},
		{"merge key", `
base: &b {type: x}
operators:
  - <<: *b
    id: a
`, `t.yaml:2:1: unknown field "base"
t.yaml:4:5: operator "a": merge keys (<<) are not supported`},
		{"syntax error", `
version: 1
operators: [a
`, `t.yaml:3:12: sequence end token ']' not found`},
		{"empty", "# nothing\n", `t.yaml: the spec is empty`},
		{"two documents", "version: 1\n---\nversion: 1\n", `t.yaml:3:1: a spec file holds one YAML document; found another`},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(c.src), "t.yaml")
			if err == nil {
				t.Fatalf("no error; spec %+v", s)
			}
			var errs SpecErrors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not a SpecErrors", err)
			}
			if got := err.Error(); got != strings.TrimPrefix(c.want, "\n") {
				t.Fatalf("errors\n got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// TestParseSpecInline checks that a component's settings beside its type
// become its Config, and the other forms YAML allows.
func TestParseSpecInline(t *testing.T) {
	s, err := ParseSpec([]byte(`
version: 1
name: n
source:
  type: test_spec_source
  path: in.jsonl
  batch: 5
dead_letter: null
operators:
  - id: a
    type: test_spec_op
    with: &w {gap: 1h}
  - id: b
    type: test_spec_op
    inputs: []
    with: *w
  - id: c
    type: !!str test_spec_op
    with:
sinks:
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, ok := s.Source.Config.(*ast.MappingNode)
	if !ok || len(m.Values) != 2 || keyText(m.Values[0].Key) != "path" || keyText(m.Values[1].Key) != "batch" {
		t.Fatalf("source config = %#v", s.Source.Config)
	}
	if s.Source.Pos != (Position{"t.yaml", 5, 3}) || s.DeadLetter != nil || s.Sinks != nil {
		t.Errorf("source at %v, dead letter %v, sinks %v", s.Source.Pos, s.DeadLetter, s.Sinks)
	}
	if s.Operators[0].With == nil || s.Operators[1].With != s.Operators[0].With {
		t.Errorf("the alias does not resolve to the anchored with block: %v, %v", s.Operators[0].With, s.Operators[1].With)
	}
	if s.Operators[2].Type != "test_spec_op" || s.Operators[2].With != nil {
		t.Errorf("operator c = %+v", s.Operators[2])
	}
}

// TestParseSpecAliases checks that an anchor written in one block can be
// used in another: each block is decoded on its own.
func TestParseSpecAliases(t *testing.T) {
	plan, err := ParsePlan([]byte(`version: 1
name: n
source: {type: test_spec_source}
operators:
  - {id: a, type: test_spec_op, with: {gap: &g 2h, tags: &t [x, y]}}
  - {id: b, type: test_spec_op, with: {gap: *g, tags: *t}}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := plan.Operators[1].New().(*testSpecOp)
	if b.cfg.Gap.D() != 2*time.Hour || !slices.Equal(b.cfg.Tags, []string{"x", "y"}) {
		t.Fatalf("b = %+v", b.cfg)
	}
	_, err = ParsePlan([]byte(`version: 1
name: n
source: {type: test_spec_source}
operators:
  - {id: c, type: test_spec_op, with: {gap: *nope}}
`), "t.yaml")
	if err == nil || err.Error() != `t.yaml:5:46: operator "c": could not find alias "nope"` {
		t.Fatalf("err = %v", err)
	}
}
