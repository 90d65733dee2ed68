package pipeline

import (
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// Match is a compiled `match` expression: a boolean expr-lang expression
// over an Event, whose fields go by their expr tags (type, user_id,
// product.id, properties.x...). It is safe for concurrent use; evaluate it
// through a Matcher.
type Match struct {
	src  string
	prog *vm.Program
	// typeIs is set when the whole expression is `type == "<typeEq>"`,
	// which Matcher.Match then evaluates without the virtual machine (whose
	// field access by reflection allocates).
	typeIs bool
	typeEq string
}

// CompileMatch compiles a match expression such as
// `type == "product_viewed" && product.price > 20`. The expression must
// yield a bool. A compile error carries expr's message, which gives the
// line and column.
func CompileMatch(src string) (*Match, error) {
	prog, err := expr.Compile(src, expr.Env(&Event{}), expr.AsBool())
	if err != nil {
		return nil, fmt.Errorf("match expression: %w", err)
	}
	m := &Match{src: src, prog: prog}
	m.typeEq, m.typeIs = typeEquality(prog.Node())
	return m, nil
}

// typeEquality reports whether n is `type == "s"` (or `"s" == type`), and
// returns s.
func typeEquality(n ast.Node) (string, bool) {
	b, ok := n.(*ast.BinaryNode)
	if !ok || b.Operator != "==" {
		return "", false
	}
	left, right := b.Left, b.Right
	if _, ok := left.(*ast.StringNode); ok {
		left, right = right, left
	}
	id, ok := left.(*ast.IdentifierNode)
	if !ok || id.Value != "type" {
		return "", false
	}
	s, ok := right.(*ast.StringNode)
	if !ok {
		return "", false
	}
	return s.Value, true
}

// String returns the source of the expression.
func (m *Match) String() string { return m.src }

// NewMatcher returns an evaluator of m. A Matcher reuses its virtual
// machine across calls and is not safe for concurrent use: use one per
// goroutine (per partition).
func (m *Match) NewMatcher() *Matcher {
	return &Matcher{prog: m.prog, typeIs: m.typeIs, typeEq: m.typeEq}
}

// Matcher evaluates a Match against events. See Match.NewMatcher.
type Matcher struct {
	prog   *vm.Program
	vm     vm.VM
	typeIs bool
	typeEq string
}

// Match reports whether e matches. An error is a runtime failure of the
// expression (a nil property used in arithmetic, say).
func (mt *Matcher) Match(e *Event) (bool, error) {
	if mt.typeIs {
		return e.Type == mt.typeEq, nil
	}
	out, err := mt.vm.Run(mt.prog, e)
	if err != nil {
		return false, fmt.Errorf("match expression: %w", err)
	}
	b, _ := out.(bool)
	return b, nil
}
