package pipeline

import (
	"strings"

	"github.com/expr-lang/expr/ast"
)

// EventFields is a set of an event's optional fields: strings that make up
// much of a typical event (a user agent alone is often a sixth of it) and
// that few operators read. The runtime decodes only the optional fields
// some operator of the pipeline reads, as Flink's JSON format decodes only
// the columns of a pushed-down projection. An optional field nobody reads
// is still checked (a string or null, like any field: a wrong type sends
// the event to the dead-letter output either way) but not copied, and
// reads as "" in the Event. Every other field is always decoded.
//
// What the runtime decodes is the union of what the operators declare (see
// EventFieldsReader); an operator that declares nothing reads them all.
// Events re-encoded by the runtime carry the decoded fields only: late
// events and events an operator failed on, in the dead-letter output, and
// events sent through a Kafka repartition topic. Sinks never get a trimmed
// event: an operator that forwards events to a sink makes the runtime
// decode every field.
type EventFields uint16

// The optional fields. A product's fields are those of product and of
// every item of products. Fields an event type requires (order.id,
// search.query...) are not optional: validation needs them.
const (
	// FieldPageURL is context.page.url.
	FieldPageURL EventFields = 1 << iota
	// FieldPageReferrer is context.page.referrer.
	FieldPageReferrer
	// FieldPageTitle is context.page.title.
	FieldPageTitle
	// FieldChannel is context.channel.
	FieldChannel
	// FieldUserAgent is context.user_agent.
	FieldUserAgent
	// FieldLocale is context.locale.
	FieldLocale
	// FieldIP is context.ip.
	FieldIP
	// FieldProductSKU is product.sku.
	FieldProductSKU
	// FieldProductBrand is product.brand.
	FieldProductBrand
	// FieldProductCurrency is product.currency.
	FieldProductCurrency
	// FieldOrderCurrency is order.currency.
	FieldOrderCurrency

	// AllEventFields holds every optional field.
	AllEventFields EventFields = 1<<iota - 1
)

// Groups of optional fields, by the object that holds them.
const (
	fieldsPage    = FieldPageURL | FieldPageReferrer | FieldPageTitle
	fieldsContext = fieldsPage | FieldChannel | FieldUserAgent | FieldLocale | FieldIP
	fieldsProduct = FieldProductSKU | FieldProductBrand | FieldProductCurrency
)

// optionalFieldPaths maps the paths of the optional fields, and of the
// objects that hold them, to the optional fields they read.
var optionalFieldPaths = map[string]EventFields{
	"context":               fieldsContext,
	"context.page":          fieldsPage,
	"context.page.url":      FieldPageURL,
	"context.page.referrer": FieldPageReferrer,
	"context.page.title":    FieldPageTitle,
	"context.channel":       FieldChannel,
	"context.user_agent":    FieldUserAgent,
	"context.locale":        FieldLocale,
	"context.ip":            FieldIP,
	"product":               fieldsProduct,
	"products":              fieldsProduct,
	"product.sku":           FieldProductSKU,
	"product.brand":         FieldProductBrand,
	"product.currency":      FieldProductCurrency,
	"order":                 FieldOrderCurrency,
	"order.currency":        FieldOrderCurrency,
}

// fieldNames names the optional fields, by bit.
var fieldNames = [...]string{
	"context.page.url", "context.page.referrer", "context.page.title", "context.channel",
	"context.user_agent", "context.locale", "context.ip",
	"product.sku", "product.brand", "product.currency", "order.currency",
}

// String lists the fields' paths, comma-separated, or says none.
func (f EventFields) String() string {
	var names []string
	for i, name := range fieldNames {
		if f&(1<<i) != 0 {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// DecodeOnly makes d decode, of the optional fields, only read: the others
// it checks and leaves empty, as the runtime does for a pipeline's
// projection. A new EventDecoder decodes them all.
func (d *EventDecoder) DecodeOnly(read EventFields) { d.skip = AllEventFields &^ read }

// EventFieldsOf returns the optional fields that reading the event field at
// path (as CompileField and CompileNumber take it: "context.page.url",
// "product.brand"...) needs; none for a field that is always decoded.
func EventFieldsOf(path string) EventFields { return optionalFieldPaths[path] }

// EventFieldsReader is implemented by operators that read only some of an
// event's optional fields (see EventFields). The planner asks one instance
// of each operator; an operator that does not implement it gets every
// optional field.
type EventFieldsReader interface {
	// EventFields returns the optional fields the operator reads, and
	// whether it forwards events (Context.Forward). An event that reaches
	// a sink keeps every field, so the runtime decodes them all when an
	// operator that forwards has sinks.
	EventFields() (read EventFields, forwards bool)
}

// EventFields returns the optional fields the expression reads: all those
// of each object it names (context, product, products, order).
func (m *Match) EventFields() EventFields {
	v := fieldsVisitor{}
	node := m.prog.Node()
	ast.Walk(&node, &v)
	return v.fields
}

// fieldsVisitor collects the optional fields of the objects an expression
// names.
type fieldsVisitor struct{ fields EventFields }

func (v *fieldsVisitor) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok {
		v.fields |= optionalFieldPaths[id.Value]
	}
}

// EventFields returns the optional fields the runtime decodes for the plan:
// those its operators read, and all of them when an operator that forwards
// events (or does not say what it reads) feeds a sink.
func (p *Plan) EventFields() EventFields {
	var f EventFields
	for _, po := range p.Operators {
		f |= po.Reads
		if po.Forwards && len(po.Sinks) > 0 {
			f = AllEventFields
		}
	}
	return f
}

// eventFieldsOf returns the optional fields an operator instance reads, and
// whether it may forward events.
func eventFieldsOf(op Operator) (read EventFields, forwards bool) {
	if r, ok := op.(EventFieldsReader); ok {
		return r.EventFields()
	}
	return AllEventFields, true
}
