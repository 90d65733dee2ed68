package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// planShape describes what a plan resolved, for comparisons.
func planShape(p *Plan) string {
	var b strings.Builder
	s := p.Spec
	fmt.Fprintf(&b, "name=%s partitions=%d ooo=%s idle=%s dir=%s interval=%s sync=%s\n",
		s.Name, s.Partitions, s.Time.MaxOutOfOrderness, s.Time.IdleTimeout, s.State.Dir, s.State.CheckpointInterval, s.State.Sync)
	fmt.Fprintf(&b, "source=%s dead_letter=%v\n", s.Source.Type, p.DeadLetter != nil)
	for _, op := range p.Operators {
		fmt.Fprintf(&b, "op %d %s %s inputs=%v outputs=%v sinks=%v rekeyed=%v\n", op.Index, op.ID, op.Type, op.Inputs, op.Outputs, op.Sinks, op.Rekeyed)
	}
	for _, sk := range p.Sinks {
		fmt.Fprintf(&b, "sink %s %s inputs=%v\n", sk.ID, sk.Type, sk.Inputs)
	}
	return b.String()
}

const validShape = `name=test-valid partitions=8 ooo=10s idle=30s dir=.sluice/state/test-valid interval=2s sync=never
source=test_spec_source dead_letter=true
op 0 consent test_spec_op inputs=[] outputs=[1 2] sinks=[1] rekeyed=false
op 1 sessions test_spec_op inputs=[0] outputs=[] sinks=[0] rekeyed=false
op 2 views test_spec_rekey inputs=[0] outputs=[] sinks=[0] rekeyed=true
sink out test_spec_sink inputs=[1 2]
sink audit test_spec_sink inputs=[0]
`

func TestLoadPlanValid(t *testing.T) {
	plan, err := LoadPlan(filepath.Join("testdata", "specs", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := planShape(plan); got != validShape {
		t.Fatalf("plan\n got:\n%s\nwant:\n%s", got, validShape)
	}

	// The factories build from the decoded `with` blocks.
	sessions := plan.Operators[1].New().(*testSpecOp)
	if sessions.id != "sessions" || sessions.cfg.Gap.D() != 36*time.Hour || sessions.cfg.Limit != 3 {
		t.Errorf("sessions = %+v", sessions)
	}
	if again := plan.Operators[1].New(); again == Operator(sessions) {
		t.Error("the factory returned the same instance twice")
	}
	if consent := plan.Operators[0].New().(*testSpecOp); consent.cfg.Gap.D() != 30*time.Minute {
		t.Errorf("consent = %+v, want the build default gap", consent)
	}
	if views := plan.Operators[2].New().(*testSpecRekeyOp); views.id != "views" || views.by != "product.id" {
		t.Errorf("views = %+v", views)
	}

	// The openers open the connectors with their decoded settings.
	src, err := plan.Source()
	if err != nil || src.(*testSpecSource).cfg.Path != "events.jsonl" {
		t.Errorf("source = %+v, %v", src, err)
	}
	dl, err := plan.DeadLetter()
	if err != nil || dl.(*testSpecDead).cfg.Path != "dead.jsonl" {
		t.Errorf("dead letter = %+v, %v", dl, err)
	}
	out, err := plan.Sinks[0].Open()
	if err != nil || out.(*testSpecSink).cfg.Path != "out.jsonl" {
		t.Errorf("sink out = %+v, %v", out, err)
	}
	audit, err := plan.Sinks[1].Open()
	if err != nil || audit.(*testSpecSink).cfg != (testSpecConnConfig{}) {
		t.Errorf("sink audit = %+v, %v", audit, err)
	}
}

// TestLoadPlanInvalid is what `sluice validate` shows: all four problems
// of the file at once, each at its line, in line order.
func TestLoadPlanInvalid(t *testing.T) {
	path := filepath.Join("testdata", "specs", "invalid.yaml")
	plan, err := LoadPlan(path)
	if plan != nil {
		t.Fatal("got a plan from an invalid spec")
	}
	want := strings.ReplaceAll(`F:6:1: unknown field "partitons" (did you mean "partitions"?)
F:10:13: operator "a": cycle: a -> c -> a
F:12:11: operator "b": unknown operator type "test_spec_opp" (did you mean "test_spec_op"?)
F:15:17: operator "c": unknown input "missing"`, "F", path)
	if err == nil || err.Error() != want {
		t.Fatalf("errors\n got:\n%v\nwant:\n%s", err, want)
	}
	var errs SpecErrors
	if !errors.As(err, &errs) || len(errs) != 4 || errs[1].Pos != (Position{path, 10, 13}) {
		t.Fatalf("error %#v is not the four SpecErrors", err)
	}

	// ParseSpec sees the unknown field only; NewPlan sees the others.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseSpec(data, path); err == nil || err.Error() != strings.Split(want, "\n")[0] {
		t.Fatalf("ParseSpec: %v", err)
	}
	spec, err := ParseSpec([]byte(strings.Replace(string(data), "partitons:", "partitions:", 1)), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewPlan(spec); err == nil || err.Error() != strings.Join(strings.Split(want, "\n")[1:], "\n") {
		t.Fatalf("NewPlan: %v", err)
	}
}

// TestPlanErrors checks each rule of NewPlan, and where it reports.
func TestPlanErrors(t *testing.T) {
	const head = "version: 1\nname: n\nsource: {type: test_spec_source}\n" // lines 1-3
	for _, c := range []struct {
		name, src, want string
	}{
		{"missing top fields", "partitions: 2\n", `
t.yaml:1:1: version is required (version: 1)
t.yaml:1:1: name is required
t.yaml:1:1: source is required`},
		{"version", "version: 2\nname: n\nsource: {type: test_spec_source}\n", `
t.yaml:1:10: version: must be 1, got 2`},
		{"name", "version: 1\nname: ../etc\nsource: {type: test_spec_source}\n", `
t.yaml:2:7: name: "../etc" may only hold letters, digits, '_', '-' and '.', and must start with a letter or digit`},
		{"partitions zero", head + "partitions: 0\n", `
t.yaml:4:13: partitions: must be between 1 and 4096, got 0`},
		{"partitions too many", head + "partitions: 5000\n", `
t.yaml:4:13: partitions: must be between 1 and 4096, got 5000`},
		{"durations", head + "time: {max_out_of_orderness: -1s, idle_timeout: 0s}\nstate: {checkpoint_interval: -1d}\n", `
t.yaml:4:30: time: max_out_of_orderness: must not be negative, got -1s
t.yaml:4:49: time: idle_timeout: must be greater than 0
t.yaml:5:30: state: checkpoint_interval: must not be negative, got -1d`},
		{"sync", head + "state:\n  sync: sometimes\n", `
t.yaml:5:9: state: sync: must be always, checkpoint or never, got "sometimes"`},
		{"source type", "version: 1\nname: n\nsource: {type: test_spec_sourc}\n", `
t.yaml:3:16: source: unknown type "test_spec_sourc" (did you mean "test_spec_source"?)`},
		{"source without type", "version: 1\nname: n\nsource: {path: x}\n", `
t.yaml:3:9: source: type is required`},
		{"source settings", "version: 1\nname: n\nsource:\n  type: test_spec_source\n  paht: x\n  batch: lots\n", `
t.yaml:6:10: source: batch: expected an integer, got a string "lots"`},
		{"source unknown setting", "version: 1\nname: n\nsource:\n  type: test_spec_source\n  paht: x\n", `
t.yaml:5:3: source: unknown field "paht"`},
		{"dead letter", head + "dead_letter: {type: test_spec_dea}\n", `
t.yaml:4:21: dead_letter: unknown type "test_spec_dea" (did you mean "test_spec_dead"?)`},
		{"operator ids", head + `operators:
  - type: test_spec_op
  - id: a b
    type: test_spec_op
  - id: x
    type: test_spec_op
  - id: x
    type: test_spec_op
`, `
t.yaml:5:5: operators[0]: id is required
t.yaml:6:9: operator "a b": id may only hold letters, digits, '_' and '-'
t.yaml:10:9: operator id "x" is used twice (first at line 8)`},
		{"operator type", head + "operators:\n  - id: a\n  - {id: b, type: test_spec_rekye}\n", `
t.yaml:5:5: operator "a": type is required
t.yaml:6:19: operator "b": unknown operator type "test_spec_rekye" (did you mean "test_spec_rekey"?)`},
		{"operator config", head + `operators:
  - id: strict
    type: test_spec_op
    with:
      gap: 30m
      gapp: 1h
  - id: validated
    type: test_spec_op
    with:
      limit: -2
  - id: built
    type: test_spec_op
    with: {gap: -30m}
  - id: pointer
    type: test_spec_rekey
`, `
t.yaml:9:7: operator "strict": unknown field "gapp"
t.yaml:13:7: operator "validated": limit must be >= 0, got -2
t.yaml:14:5: operator "built": gap must be > 0
t.yaml:17:5: operator "pointer": by is required`},
		{"inputs", head + `operators:
  - {id: a, type: test_spec_op, inputs: [a2, a, a]}
  - {id: b, type: test_spec_op, inputs: ["", out]}
sinks:
  - {id: out, type: test_spec_sink, inputs: [b]}
`, `
t.yaml:5:41: operator "a": cycle: a -> a
t.yaml:5:42: operator "a": unknown input "a2" (did you mean "a"?)
t.yaml:5:49: operator "a": input "a" is listed twice
t.yaml:6:42: operator "b": inputs[0] is empty
t.yaml:6:46: operator "b": unknown input "out" (a sink: inputs name operators)`},
		{"cycles", head + `operators:
  - {id: src, type: test_spec_op}
  - {id: a, type: test_spec_op, inputs: [src, c]}
  - {id: b, type: test_spec_op, inputs: [a]}
  - {id: c, type: test_spec_op, inputs: [b]}
  - {id: after, type: test_spec_op, inputs: [c]}
  - {id: x, type: test_spec_op, inputs: [y]}
  - {id: y, type: test_spec_op, inputs: [x]}
`, `
t.yaml:6:41: operator "a": cycle: a -> b -> c -> a
t.yaml:10:41: operator "x": cycle: x -> y -> x`},
		{"sinks", head + `operators:
  - {id: a, type: test_spec_op}
sinks:
  - {type: test_spec_sink, inputs: [a]}
  - {id: out, type: test_spec_sink}
  - {id: out, type: test_spec_sink, inputs: [a, nope, a]}
  - {id: other, type: test_spec_sinc, inputs: [a]}
  - {id: third, type: test_spec_sink, batch: [1], inputs: [a]}
`, `
t.yaml:7:5: sinks[0]: id is required
t.yaml:8:5: sink "out": inputs: name at least one operator
t.yaml:9:10: sink id "out" is used twice (first at line 8)
t.yaml:9:49: sink "out": unknown input operator "nope"
t.yaml:9:55: sink "out": input "a" is listed twice
t.yaml:10:23: sink "other": unknown type "test_spec_sinc" (did you mean "test_spec_sink"?)
t.yaml:11:46: sink "third": batch: expected an integer, got a list`},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan, err := ParsePlan([]byte(c.src), "t.yaml")
			if plan != nil || err == nil {
				t.Fatalf("no error; plan:\n%s", planShape(plan))
			}
			if got, want := err.Error(), strings.TrimPrefix(c.want, "\n"); got != want {
				t.Fatalf("errors\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestPlanTopoOrder checks that operators come after their inputs, in spec
// order among those that are ready.
func TestPlanTopoOrder(t *testing.T) {
	plan, err := ParsePlan([]byte(`version: 1
name: n
source: {type: test_spec_source}
operators:
  - {id: d, type: test_spec_op, inputs: [c, a]}
  - {id: c, type: test_spec_op, inputs: [b]}
  - {id: b, type: test_spec_op, inputs: [a]}
  - {id: a, type: test_spec_op}
  - {id: e, type: test_spec_op}
  - {id: f, type: test_spec_rekey, inputs: [e, d], with: {by: x}}
sinks:
  - {id: s, type: test_spec_sink, inputs: [f, a]}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := `name=n partitions=8 ooo=5s idle=30s dir=.sluice/state/n interval=1s sync=checkpoint
source=test_spec_source dead_letter=false
op 0 a test_spec_op inputs=[] outputs=[1 3] sinks=[0] rekeyed=false
op 1 b test_spec_op inputs=[0] outputs=[2] sinks=[] rekeyed=false
op 2 c test_spec_op inputs=[1] outputs=[3] sinks=[] rekeyed=false
op 3 d test_spec_op inputs=[2 0] outputs=[5] sinks=[] rekeyed=false
op 4 e test_spec_op inputs=[] outputs=[5] sinks=[] rekeyed=false
op 5 f test_spec_rekey inputs=[4 3] outputs=[] sinks=[0] rekeyed=true
sink s test_spec_sink inputs=[5 0]
`
	if got := planShape(plan); got != want {
		t.Fatalf("plan\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestPlanExplicitZero(t *testing.T) {
	// Written zeros stay zero where zero is allowed; unset fields default.
	plan, err := ParsePlan([]byte("version: 1\nname: n\nsource: {type: test_spec_source}\ntime: {max_out_of_orderness: 0s}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if plan.Spec.Time.MaxOutOfOrderness != 0 || plan.Spec.Time.IdleTimeout.D() != DefaultIdleTimeout {
		t.Fatalf("time = %+v", plan.Spec.Time)
	}
	// A spec built by hand has no record of what was written: zero is unset.
	plan, err = NewPlan(&Spec{Version: 1, Name: "n", Source: ComponentSpec{Type: "test_spec_source"}})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Spec.Time.MaxOutOfOrderness.D() != DefaultMaxOutOfOrderness {
		t.Fatalf("time = %+v", plan.Spec.Time)
	}
}

// TestNewPlanGoSpec plans a spec written as Go values.
func TestNewPlanGoSpec(t *testing.T) {
	mine := func() Operator { return &testSpecRekeyOp{by: "mine"} }
	spec := &Spec{
		Version: 1,
		Name:    "go",
		Source:  ComponentSpec{Type: "test_spec_source", Config: testSpecConnConfig{Path: "in"}},
		Operators: []OperatorSpec{
			{ID: "a", Type: "test_spec_op", With: &testSpecOpConfig{Limit: 1}},
			{ID: "b", Type: "test_spec_op", With: map[string]any{"gap": "1h"}, Inputs: []string{"a"}},
			{ID: "c", Type: "unregistered", New: mine, Inputs: []string{"a"}},
		},
		Sinks: []SinkSpec{{ID: "s", Inputs: []string{"b", "c"}, ComponentSpec: ComponentSpec{Type: "test_spec_sink", Config: &testSpecConnConfig{Path: "out"}}}},
	}
	plan, err := NewPlan(spec)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Spec == spec || spec.Partitions != 0 {
		t.Error("NewPlan changed the spec it was given")
	}
	if a := plan.Operators[0].New().(*testSpecOp); a.cfg.Limit != 1 {
		t.Errorf("a = %+v", a)
	}
	if b := plan.Operators[1].New().(*testSpecOp); b.cfg.Gap.D() != time.Hour {
		t.Errorf("b = %+v", b)
	}
	if c := plan.Operators[2]; !c.Rekeyed || c.New().(*testSpecRekeyOp).by != "mine" {
		t.Errorf("c = %+v", c)
	}
	if s, err := plan.Sinks[0].Open(); err != nil || s.(*testSpecSink).cfg.Path != "out" {
		t.Errorf("sink = %+v, %v", s, err)
	}

	// Errors of a Go spec have no position.
	spec.Operators[0].With = map[string]any{"gapp": 1}
	spec.Operators = append(spec.Operators, OperatorSpec{ID: "nil", New: func() Operator { return nil }})
	_, err = NewPlan(spec)
	want := `operator "a": unknown field "gapp"
operator "nil": factory made a nil operator`
	if err == nil || err.Error() != want {
		t.Fatalf("errors\n got:\n%v\nwant:\n%s", err, want)
	}
}

func TestPlanOpenError(t *testing.T) {
	plan, err := ParsePlan([]byte("version: 1\nname: n\nsource: {type: test_spec_source, path: fail}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = plan.Source()
	if !errors.Is(err, errTestOpen) || err.Error() != "open source (type test_spec_source): cannot open" {
		t.Fatalf("err = %v", err)
	}
}

func TestSpecErrorFormat(t *testing.T) {
	errs := SpecErrors{
		{Pos: Position{"f.yaml", 3, 7}, Msg: "a"},
		{Pos: Position{"f.yaml", 3, 0}, Msg: "b"},
		{Pos: Position{"f.yaml", 0, 0}, Msg: "c"},
		{Pos: Position{"", 4, 2}, Msg: "d"},
		{Msg: "e"},
	}
	want := "f.yaml:3:7: a\nf.yaml:3: b\nf.yaml: c\n4:2: d\ne"
	if got := errs.Error(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	errs.sort()
	var order []string
	for _, e := range errs {
		order = append(order, e.Msg)
	}
	if got := strings.Join(order, ""); got != "edcba" {
		t.Fatalf("sorted order %s, want edcba (file, then line, then column)", got)
	}
}

func BenchmarkLoadPlan(b *testing.B) {
	path := filepath.Join("testdata", "specs", "valid.yaml")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadPlan(path); err != nil {
			b.Fatal(err)
		}
	}
}
