package pipeline

import (
	"strings"

	"github.com/expr-lang/expr/ast"
)

// ContextFields is a set of the string fields of an event's context. They
// are the bulk of a typical event (a user agent alone is often a sixth of
// it) and few operators read them, so the runtime decodes only those that
// some operator of the pipeline reads, as Flink's JSON format decodes only
// the columns of a pushed-down projection. A context field nobody reads is
// still checked (it must be a string or null, like any field: a wrong type
// sends the event to the dead-letter output either way) but not copied,
// and reads as "" in the Event. Every other field is always decoded.
//
// What the runtime decodes is the union of what the operators declare (see
// ContextFieldsReader); an operator that declares nothing reads them all.
// Events re-encoded by the runtime carry the decoded fields only: those of
// late events and of failed operators in the dead-letter output, and those
// exchanged through a Kafka repartition topic. Sinks never see a trimmed
// event: an operator whose events go to a sink makes the runtime decode
// every context field.
type ContextFields uint8

// The context fields.
const (
	// ContextPageURL is context.page.url.
	ContextPageURL ContextFields = 1 << iota
	// ContextPageReferrer is context.page.referrer.
	ContextPageReferrer
	// ContextPageTitle is context.page.title.
	ContextPageTitle
	// ContextChannel is context.channel.
	ContextChannel
	// ContextUserAgent is context.user_agent.
	ContextUserAgent
	// ContextLocale is context.locale.
	ContextLocale
	// ContextIP is context.ip.
	ContextIP

	// AllContextFields holds every context field.
	AllContextFields ContextFields = 1<<iota - 1
)

// contextPage holds the fields of context.page.
const contextPage = ContextPageURL | ContextPageReferrer | ContextPageTitle

// contextFieldPaths maps the path of each context field to it.
var contextFieldPaths = map[string]ContextFields{
	"context":               AllContextFields,
	"context.page":          contextPage,
	"context.page.url":      ContextPageURL,
	"context.page.referrer": ContextPageReferrer,
	"context.page.title":    ContextPageTitle,
	"context.channel":       ContextChannel,
	"context.user_agent":    ContextUserAgent,
	"context.locale":        ContextLocale,
	"context.ip":            ContextIP,
}

// ContextFieldsOf returns the context fields that reading the event field
// at path (as CompileField takes it: "context.page.url", "product.id"...)
// needs: none for a path outside context, all of them for "context".
func ContextFieldsOf(path string) ContextFields {
	if f, ok := contextFieldPaths[path]; ok {
		return f
	}
	if strings.HasPrefix(path, "context.") {
		return AllContextFields // a path CompileField rejects: be safe
	}
	return 0
}

// ContextFieldsReader is implemented by operators that need only some of
// an event's context fields (see ContextFields). The planner asks one
// instance of each operator; an operator that does not implement it gets
// every context field.
type ContextFieldsReader interface {
	// ContextFields returns the context fields the operator reads, and
	// whether it forwards events (Context.Forward). An event that reaches
	// a sink keeps every field, so the runtime decodes them all when an
	// operator that forwards has sinks.
	ContextFields() (read ContextFields, forwards bool)
}

// ContextFields returns the context fields the expression reads: all of
// them when it names context at all.
func (m *Match) ContextFields() ContextFields {
	var v contextVisitor
	node := m.prog.Node()
	ast.Walk(&node, &v)
	if v.found {
		return AllContextFields
	}
	return 0
}

// contextVisitor looks for the identifier context in an expression.
type contextVisitor struct{ found bool }

func (v *contextVisitor) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok && id.Value == "context" {
		v.found = true
	}
}

// ContextFields returns the context fields the runtime decodes for the
// plan: those its operators read, and all of them when an operator that
// forwards events (or does not say what it reads) feeds a sink.
func (p *Plan) ContextFields() ContextFields {
	var f ContextFields
	for _, po := range p.Operators {
		f |= po.ReadsContext
		if po.Forwards && len(po.Sinks) > 0 {
			f = AllContextFields
		}
	}
	return f
}

// contextFieldsOf returns what an operator instance reads of the context,
// and whether it may forward events.
func contextFieldsOf(op Operator) (read ContextFields, forwards bool) {
	if r, ok := op.(ContextFieldsReader); ok {
		return r.ContextFields()
	}
	return AllContextFields, true
}
