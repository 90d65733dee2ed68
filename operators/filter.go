package operators

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/pipeline"
)

// FilterConfig configures a filter.
type FilterConfig struct {
	// Match is an expression over the event (expr-lang syntax, fields named
	// as in the event JSON: `type == "product_viewed" && product.price > 50`).
	// Events for which it is true pass on; the others are dropped.
	Match string `yaml:"match"`
}

// Validate checks the config.
func (c FilterConfig) Validate() error {
	if c.Match == "" {
		return errors.New("match is required")
	}
	return nil
}

func init() {
	pipeline.RegisterOperator("filter", func(id string, cfg FilterConfig) (pipeline.Factory, error) {
		m, err := pipeline.CompileMatch(cfg.Match)
		if err != nil {
			return nil, fmt.Errorf("filter %q: match: %w", id, err)
		}
		reads := m.EventFields()
		return func() pipeline.Operator { return &filter{matcher: m.NewMatcher(), reads: reads} }, nil
	})
}

// filter forwards the events that match an expression. It keeps no state.
type filter struct {
	matcher *pipeline.Matcher
	reads   pipeline.EventFields
}

// EventFields implements pipeline.EventFieldsReader: the filter reads
// the optional fields its expression names, and forwards events.
func (f *filter) EventFields() (pipeline.EventFields, bool) { return f.reads, true }

func (f *filter) Open(*pipeline.OpenContext) error { return nil }

func (f *filter) OnEvent(ctx *pipeline.Context, e *pipeline.Event) error {
	ok, err := f.matcher.Match(e)
	if err != nil {
		return err
	}
	if ok {
		ctx.Forward(e)
	}
	return nil
}
