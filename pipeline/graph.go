package pipeline

import (
	"fmt"
	"strings"
)

// Mermaid renders the plan as a Mermaid flowchart: the source, the
// operators in plan order, the sinks and the dead-letter output. An edge into
// a Rekeyed operator is dashed and labelled "exchange": events are routed to
// the partition that owns their group key there.
func (p *Plan) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	fmt.Fprintf(&b, "    source[/\"%s\"/]\n", mermaidText("source: "+p.sourceType()))
	for i, op := range p.Operators {
		fmt.Fprintf(&b, "    op%d[\"%s<br/>%s\"]\n", i, mermaidText(op.ID), mermaidText(op.Type))
	}
	for j, sk := range p.Sinks {
		fmt.Fprintf(&b, "    sink%d[(\"%s<br/>%s\")]\n", j, mermaidText(sk.ID), mermaidText(sk.Type))
	}
	if dl := p.deadLetterType(); dl != "" {
		fmt.Fprintf(&b, "    dead[(\"dead letters<br/>%s\")]\n", mermaidText(dl))
	}
	p.edges(func(from, to string, exchange bool) {
		if exchange {
			fmt.Fprintf(&b, "    %s -. exchange .-> %s\n", from, to)
		} else {
			fmt.Fprintf(&b, "    %s --> %s\n", from, to)
		}
	})
	if p.deadLetterType() != "" {
		b.WriteString("    source -. bad input .-> dead\n")
	}
	return b.String()
}

// DOT renders the plan as a Graphviz digraph, like Mermaid: exchanges are
// dashed edges labelled "exchange".
func (p *Plan) DOT() string {
	var b strings.Builder
	name := ""
	if p.Spec != nil {
		name = p.Spec.Name
	}
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(name))
	b.WriteString("    rankdir=LR;\n    node [shape=box];\n")
	fmt.Fprintf(&b, "    source [label=%s, shape=invhouse];\n", dotQuote("source\n"+p.sourceType()))
	for i, op := range p.Operators {
		fmt.Fprintf(&b, "    op%d [label=%s];\n", i, dotQuote(op.ID+"\n"+op.Type))
	}
	for j, sk := range p.Sinks {
		fmt.Fprintf(&b, "    sink%d [label=%s, shape=cylinder];\n", j, dotQuote(sk.ID+"\n"+sk.Type))
	}
	if dl := p.deadLetterType(); dl != "" {
		fmt.Fprintf(&b, "    dead [label=%s, shape=cylinder, style=dashed];\n", dotQuote("dead letters\n"+dl))
	}
	p.edges(func(from, to string, exchange bool) {
		if exchange {
			fmt.Fprintf(&b, "    %s -> %s [style=dashed, label=\"exchange\"];\n", from, to)
		} else {
			fmt.Fprintf(&b, "    %s -> %s;\n", from, to)
		}
	})
	if p.deadLetterType() != "" {
		b.WriteString("    source -> dead [style=dotted, label=\"bad input\"];\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// edges calls edge for every edge of the plan, in plan order: into each
// operator from the source or its inputs, then from operators to sinks.
func (p *Plan) edges(edge func(from, to string, exchange bool)) {
	for i, op := range p.Operators {
		to := fmt.Sprintf("op%d", i)
		if len(op.Inputs) == 0 {
			edge("source", to, op.Rekeyed)
		}
		for _, in := range op.Inputs {
			edge(fmt.Sprintf("op%d", in), to, op.Rekeyed)
		}
	}
	for j, sk := range p.Sinks {
		for _, in := range sk.Inputs {
			edge(fmt.Sprintf("op%d", in), fmt.Sprintf("sink%d", j), false)
		}
	}
}

func (p *Plan) sourceType() string {
	if p.Spec == nil {
		return ""
	}
	return p.Spec.Source.Type
}

func (p *Plan) deadLetterType() string {
	if p.Spec == nil || p.Spec.DeadLetter == nil {
		return ""
	}
	return p.Spec.DeadLetter.Type
}

// mermaidText escapes text for a quoted Mermaid label.
func mermaidText(s string) string {
	return strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;").Replace(s)
}

// dotQuote quotes s as a DOT string; a newline becomes a line break.
func dotQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
