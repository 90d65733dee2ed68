package pipeline

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanGraphs(t *testing.T) {
	plan, err := LoadPlan(filepath.Join("testdata", "specs", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wantMermaid := `flowchart LR
    source[/"source: test_spec_source"/]
    op0["consent<br/>test_spec_op"]
    op1["sessions<br/>test_spec_op"]
    op2["views<br/>test_spec_rekey"]
    sink0[("out<br/>test_spec_sink")]
    sink1[("audit<br/>test_spec_sink")]
    dead[("dead letters<br/>test_spec_dead")]
    source --> op0
    op0 --> op1
    op0 -. exchange .-> op2
    op1 --> sink0
    op2 --> sink0
    op0 --> sink1
    source -. bad input .-> dead
`
	if got := plan.Mermaid(); got != wantMermaid {
		t.Errorf("Mermaid:\n%s\nwant:\n%s", got, wantMermaid)
	}
	wantDOT := `digraph "test-valid" {
    rankdir=LR;
    node [shape=box];
    source [label="source\ntest_spec_source", shape=invhouse];
    op0 [label="consent\ntest_spec_op"];
    op1 [label="sessions\ntest_spec_op"];
    op2 [label="views\ntest_spec_rekey"];
    sink0 [label="out\ntest_spec_sink", shape=cylinder];
    sink1 [label="audit\ntest_spec_sink", shape=cylinder];
    dead [label="dead letters\ntest_spec_dead", shape=cylinder, style=dashed];
    source -> op0;
    op0 -> op1;
    op0 -> op2 [style=dashed, label="exchange"];
    op1 -> sink0;
    op2 -> sink0;
    op0 -> sink1;
    source -> dead [style=dotted, label="bad input"];
}
`
	if got := plan.DOT(); got != wantDOT {
		t.Errorf("DOT:\n%s\nwant:\n%s", got, wantDOT)
	}
}

// TestPlanGraphsRekeyedFromSource checks that an exchange straight after
// the source is marked too, and that labels are escaped.
func TestPlanGraphsRekeyedFromSource(t *testing.T) {
	plan, err := NewBuilder("g").
		Source("test_spec_source", nil).
		Operator("by_product", "test_spec_rekey", map[string]any{"by": "product.id"}).
		Plan()
	if err != nil {
		t.Fatal(err)
	}
	if m := plan.Mermaid(); !strings.Contains(m, "source -. exchange .-> op0\n") || strings.Contains(m, "dead") {
		t.Errorf("Mermaid:\n%s", m)
	}
	if d := plan.DOT(); !strings.Contains(d, "source -> op0 [style=dashed, label=\"exchange\"];\n") {
		t.Errorf("DOT:\n%s", d)
	}
	if got := dotQuote("a\"b\\c\nd"); got != `"a\"b\\c\nd"` {
		t.Errorf("dotQuote = %s", got)
	}
	if got := mermaidText(`a"<b>`); got != "a#quot;#lt;b#gt;" {
		t.Errorf("mermaidText = %s", got)
	}
}
