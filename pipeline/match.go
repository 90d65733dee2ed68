package pipeline

import (
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// Match is a compiled `match` expression: a boolean expr-lang expression
// over an Event, whose fields go by their expr tags (type, user_id,
// product.id, properties.x...). It is safe for concurrent use; evaluate it
// through a Matcher.
type Match struct {
	src  string
	prog *vm.Program
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
	return &Match{src: src, prog: prog}, nil
}

// String returns the source of the expression.
func (m *Match) String() string { return m.src }

// NewMatcher returns an evaluator of m. A Matcher reuses its virtual
// machine across calls and is not safe for concurrent use: use one per
// goroutine (per partition).
func (m *Match) NewMatcher() *Matcher {
	return &Matcher{prog: m.prog}
}

// Matcher evaluates a Match against events. See Match.NewMatcher.
type Matcher struct {
	prog *vm.Program
	vm   vm.VM
}

// Match reports whether e matches. An error is a runtime failure of the
// expression (a nil property used in arithmetic, say).
func (mt *Matcher) Match(e *Event) (bool, error) {
	out, err := mt.vm.Run(mt.prog, e)
	if err != nil {
		return false, fmt.Errorf("match expression: %w", err)
	}
	b, _ := out.(bool)
	return b, nil
}
