package pipeline

import (
	"reflect"
	"testing"
)

// TestDecodeSkipsContextFields decodes events with every context field but
// the page URL skipped: they read as "", everything else is as a full
// decode gives it, and a skipped field is checked as a decoded one is (the
// same error, or none).
func TestDecodeSkipsContextFields(t *testing.T) {
	const head = `{"event_id":"e-1","type":"page_viewed","user_id":"u-1","timestamp":"2026-11-28T10:00:00Z",`
	inputs := []string{
		head + `"context":{"page":{"url":"https://shop/p/1","referrer":"https://www.google.com/","title":"Rain jacket | Shop"},"channel":"web","user_agent":"Mozilla/5.0 (X11; Linux x86_64)","locale":"en-US","ip":"192.0.2.1"}}`,
		head + `"context":{"user_agent":"caf\u00e9 \"quoted\" \\ back","title":"not a context field"}}`,
		head + `"context":{"page":{"title":"Caf` + "\xc3\xa9" + `","referrer":null},"ip":null,"locale":""}}`,
		head + `"context":{"page":{"url":"https://shop/","title":"bad ` + "\xff" + ` utf-8"}}}`,
		head + `"context":{"user_agent":5}}`,
		head + `"context":{"page":{"referrer":{"url":"x"}}}}`,
		head + `"context":{"channel":["web"]}}`,
		head + `"context":{"locale":true}}`,
		head + `"context":{"ip":"bad \x escape"}}`,
		head + `"context":{"page":{"title":"control ` + "\x01" + ` char"}}}`,
		head + `"context":{"user_agent":"unterminated}}`,
		head + `"context":{"ip":"192.0.2.1"},"product":{"id":"p-1","price":"cheap"}}`,
	}
	var full, skipping EventDecoder
	skipping.skip = AllContextFields &^ ContextPageURL
	for _, in := range inputs {
		var want, got Event
		wantErr := full.Decode([]byte(in), &want)
		gotErr := skipping.Decode([]byte(in), &got)
		if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
			t.Errorf("%s:\nerror %v, want %v", in, gotErr, wantErr)
			continue
		}
		want.Context = EventContext{Page: Page{URL: want.Context.Page.URL}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", in, got, want)
		}
	}
}

func TestContextFieldsOf(t *testing.T) {
	for path, want := range map[string]ContextFields{
		"context":            AllContextFields,
		"context.page":       ContextPageURL | ContextPageReferrer | ContextPageTitle,
		"context.page.url":   ContextPageURL,
		"context.user_agent": ContextUserAgent,
		"context.locale":     ContextLocale,
		"context.nonsense":   AllContextFields,
		"product.category":   0,
		"properties.context": 0,
		"type":               0,
	} {
		if got := ContextFieldsOf(path); got != want {
			t.Errorf("ContextFieldsOf(%q) = %b, want %b", path, got, want)
		}
	}
}

func TestMatchContextFields(t *testing.T) {
	for src, want := range map[string]ContextFields{
		`type == "page_viewed"`:                           0,
		`product.price > 20 && properties.context == "x"`: 0,
		`context.locale == "en-US"`:                       AllContextFields,
		`type == "x" || context.page.url contains "/p/"`:  AllContextFields,
	} {
		m, err := CompileMatch(src)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.ContextFields(); got != want {
			t.Errorf("%s: %b, want %b", src, got, want)
		}
	}
}

// contextOp is an operator that says what it reads of the context.
type contextOp struct {
	reads    ContextFields
	forwards bool
}

func (o *contextOp) Open(*OpenContext) error              { return nil }
func (o *contextOp) OnEvent(*Context, *Event) error       { return nil }
func (o *contextOp) ContextFields() (ContextFields, bool) { return o.reads, o.forwards }

func newContextOp(reads ContextFields, forwards bool) Factory {
	return func() Operator { return &contextOp{reads, forwards} }
}

// silentOp says nothing about what it reads.
type silentOp struct{}

func (o *silentOp) Open(*OpenContext) error        { return nil }
func (o *silentOp) OnEvent(*Context, *Event) error { return nil }

// TestPlanContextFields checks which context fields a plan decodes: the
// union of what its operators read, and all of them when an operator that
// forwards events, or one that says nothing, has a sink.
func TestPlanContextFields(t *testing.T) {
	type op struct {
		id     string
		new    Factory
		inputs []string
	}
	cases := []struct {
		name  string
		ops   []op
		sinks [][]string // inputs of each sink
		want  ContextFields
	}{
		{"union of reads", []op{
			{"a", newContextOp(ContextLocale, true), nil},
			{"b", newContextOp(ContextPageURL, false), []string{"a"}},
		}, [][]string{{"b"}}, ContextLocale | ContextPageURL},
		{"nothing read", []op{
			{"a", newContextOp(0, true), nil},
			{"b", newContextOp(0, false), []string{"a"}},
		}, [][]string{{"b"}}, 0},
		{"a forwarding operator feeds a sink", []op{
			{"a", newContextOp(0, true), nil},
			{"b", newContextOp(0, false), []string{"a"}},
		}, [][]string{{"b"}, {"a"}}, AllContextFields},
		{"an operator that says nothing", []op{
			{"a", newContextOp(0, true), nil},
			{"b", func() Operator { return &silentOp{} }, []string{"a"}},
		}, nil, AllContextFields},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := NewBuilder("ctx", WithStateDir(t.TempDir()))
			b.Source("test_spec_source", testSpecConnConfig{Path: "events.jsonl"})
			for _, o := range c.ops {
				b.Custom(o.id, o.new, o.inputs...)
			}
			for i, in := range c.sinks {
				b.Sink(string(rune('x'+i)), "test_spec_sink", testSpecConnConfig{Path: "out.jsonl"}, in...)
			}
			plan, err := b.Plan()
			if err != nil {
				t.Fatal(err)
			}
			if got := plan.ContextFields(); got != c.want {
				t.Errorf("ContextFields() = %b, want %b", got, c.want)
			}
		})
	}
}
