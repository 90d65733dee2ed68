package pipeline

import (
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// here returns the position of the line that calls it.
func here() Position {
	_, file, line, _ := runtime.Caller(1)
	return Position{File: file, Line: line}
}

// TestBuilderMatchesYAML builds testdata/specs/valid.yaml in Go: the plans
// must have the same shape and graphs, and the same operator configs.
func TestBuilderMatchesYAML(t *testing.T) {
	yamlPlan, err := LoadPlan(filepath.Join("testdata", "specs", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b := NewBuilder("test-valid",
		WithMaxOutOfOrderness(10*time.Second),
		WithCheckpointInterval(2*time.Second),
		WithSync(SyncNever),
	)
	b.Source("test_spec_source", testSpecConnConfig{Path: "events.jsonl"})
	b.DeadLetter("test_spec_dead", &testSpecConnConfig{Path: "dead.jsonl"})
	b.Operator("sessions", "test_spec_op", testSpecOpConfig{Gap: Duration(36 * time.Hour), Limit: 3}, "consent")
	b.Operator("consent", "test_spec_op", nil)
	b.Operator("views", "test_spec_rekey", &testSpecRekeyConfig{By: "product.id"}, "consent")
	b.Sink("out", "test_spec_sink", testSpecConnConfig{Path: "out.jsonl"}, "sessions", "views")
	b.Sink("audit", "test_spec_sink", nil, "consent")
	plan, err := b.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := planShape(plan), planShape(yamlPlan); got != want {
		t.Fatalf("builder plan:\n%s\nYAML plan:\n%s", got, want)
	}
	if plan.Mermaid() != yamlPlan.Mermaid() || plan.DOT() != yamlPlan.DOT() {
		t.Fatalf("graphs differ:\n%s\n%s", plan.Mermaid(), yamlPlan.Mermaid())
	}
	for i := range plan.Operators {
		got, want := plan.Operators[i].New(), yamlPlan.Operators[i].New()
		switch g := got.(type) {
		case *testSpecOp:
			if w := want.(*testSpecOp); g.id != w.id || g.cfg.Gap != w.cfg.Gap || g.cfg.Limit != w.cfg.Limit {
				t.Errorf("operator %d: %+v, YAML %+v", i, g, w)
			}
		case *testSpecRekeyOp:
			if w := want.(*testSpecRekeyOp); g.id != w.id || g.by != w.by {
				t.Errorf("operator %d: %+v, YAML %+v", i, g, w)
			}
		}
	}
	src, err := plan.Source()
	if err != nil || src.(*testSpecSource).cfg.Path != "events.jsonl" {
		t.Errorf("source = %+v, %v", src, err)
	}
}

func TestBuilderCustom(t *testing.T) {
	mine := func() Operator { return &testSpecRekeyOp{by: "custom"} }
	plan, err := NewBuilder("c", WithPartitions(3), WithStateDir("/tmp/s"), WithIdleTimeout(time.Minute), WithMaxOutOfOrderness(0)).
		Source("test_spec_source", nil).
		Operator("a", "test_spec_op", nil).
		Custom("mine", mine, "a").
		Sink("out", "test_spec_sink", map[string]any{"path": "x"}, "mine").
		Plan()
	if err != nil {
		t.Fatal(err)
	}
	want := `name=c partitions=3 ooo=0s idle=1m dir=/tmp/s interval=1s sync=checkpoint
source=test_spec_source dead_letter=false
op 0 a test_spec_op inputs=[] outputs=[1] sinks=[] rekeyed=false
op 1 mine custom inputs=[0] outputs=[] sinks=[0] rekeyed=true
sink out test_spec_sink inputs=[1]
`
	if got := planShape(plan); got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
}

// TestBuilderErrors checks that a built spec is validated like YAML, with
// each problem at the Go line that caused it.
func TestBuilderErrors(t *testing.T) {
	at := here()
	b := NewBuilder("bad", WithPartitions(0), WithIdleTimeout(0), WithSync("maybe"))
	b.Source("test_spec_source", nil)
	b.Source("test_spec_source", testSpecConnConfig{Path: "again"})
	b.Operator("a", "test_spec_nope", nil)
	b.Operator("b", "test_spec_op", map[string]any{"gapp": "1h"}, "a", "zz")
	b.Custom("c", nil, "b")
	b.Sink("out", "test_spec_sink", "not a config", "c")
	_, err := b.Plan()
	line := func(n int) string { return at.File + ":" + strconv.Itoa(at.Line+n) }
	want := strings.Join([]string{
		line(1) + ": partitions: must be between 1 and 4096, got 0",
		line(1) + ": time: idle_timeout: must be greater than 0",
		line(1) + `: state: sync: must be always, checkpoint or never, got "maybe"`,
		line(3) + ": source is set twice (first at " + line(2) + "); the last one is used",
		line(4) + `: operator "a": unknown operator type "test_spec_nope" (did you mean "test_spec_op"?)`,
		line(5) + `: operator "b": unknown field "gapp"`,
		line(5) + `: operator "b": unknown input "zz"`,
		line(6) + `: operator "c": Custom needs a factory`,
		line(7) + `: sink "out": config must be a pipeline.testSpecConnConfig, a pointer to one, a YAML node or a map[string]any; got string`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("errors:\n%v\nwant:\n%s", err, want)
	}
}

func TestBuilderSpecIsACopy(t *testing.T) {
	b := NewBuilder("n").Source("test_spec_source", nil)
	inputs := []string{"a"}
	b.Operator("a", "test_spec_op", nil).Operator("b", "test_spec_op", nil, inputs...)
	inputs[0] = "changed"
	s := b.Spec()
	s.Operators[1].Inputs[0] = "changed too"
	s.Operators = append(s.Operators, OperatorSpec{ID: "c"})
	s2 := b.Spec()
	if len(s2.Operators) != 2 || s2.Operators[1].Inputs[0] != "a" {
		t.Fatalf("the builder's spec changed: %+v", s2.Operators)
	}
	if s2.Version != 1 || s2.Name != "n" {
		t.Fatalf("spec = %+v", s2)
	}
}
