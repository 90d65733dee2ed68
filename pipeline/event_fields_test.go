package pipeline

import (
	"math/bits"
	"reflect"
	"testing"
)

// TestDecodeSkipsEventFields decodes events with every optional field but
// the page URL skipped: they read as "", everything else is as a full
// decode gives it, and a skipped field is checked as a decoded one is (the
// same error, or none).
func TestDecodeSkipsEventFields(t *testing.T) {
	const head = `{"event_id":"e-1","type":"product_added","user_id":"u-1","timestamp":"2026-11-28T10:00:00Z",`
	inputs := []string{
		head + `"context":{"page":{"url":"https://shop/p/1","referrer":"https://www.google.com/","title":"Rain jacket | Shop"},"channel":"web","user_agent":"Mozilla/5.0 (X11; Linux x86_64)","locale":"en-US","ip":"192.0.2.1"}}`,
		head + `"context":{"user_agent":"caf\u00e9 \"quoted\" \\ back","title":"not a context field"}}`,
		head + `"context":{"page":{"title":"Caf` + "\xc3\xa9" + `","referrer":null},"ip":null,"locale":""}}`,
		head + `"context":{"page":{"url":"https://shop/","title":"bad ` + "\xff" + ` utf-8"}}}`,
		head + `"product":{"id":"p-1","sku":"SKU-1","brand":"Acme","price":49.9,"currency":"EUR","quantity":2},"products":[{"id":"p-2","sku":"S2","brand":"B","currency":"USD"}]}`,
		head + `"order":{"id":"o-1","revenue":99.8,"currency":"EUR"},"search":{"query":"rain jacket","results":3}}`,
		head + `"context":{"user_agent":5}}`,
		head + `"context":{"page":{"referrer":{"url":"x"}}}}`,
		head + `"context":{"channel":["web"]}}`,
		head + `"context":{"locale":true}}`,
		head + `"products":[{"id":"p-2","brand":7}]}`,
		head + `"order":{"currency":false}}`,
		head + `"order":{"currency":"EUR"}}`,
		head + `"context":{"ip":"bad \x escape"}}`,
		head + `"context":{"page":{"title":"control ` + "\x01" + ` char"}}}`,
		head + `"context":{"user_agent":"unterminated}}`,
		head + `"context":{"ip":"192.0.2.1"},"product":{"id":"p-1","price":"cheap"}}`,
		// Fields an event type requires are never skipped.
		`{"event_id":"e-2","type":"order_completed","user_id":"u-1","timestamp":"2026-11-28T10:00:00Z","order":{"id":"o-1","revenue":5,"currency":"EUR"},"products":[{"id":"p-1","price":5,"currency":"EUR"}]}`,
		`{"event_id":"e-3","type":"products_searched","user_id":"u-1","timestamp":"2026-11-28T10:00:00Z","search":{"query":"rain jacket"}}`,
	}
	var full, skipping EventDecoder
	skipping.DecodeOnly(FieldPageURL)
	for _, in := range inputs {
		var want, got Event
		wantErr := full.Decode([]byte(in), &want)
		gotErr := skipping.Decode([]byte(in), &got)
		if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
			t.Errorf("%s:\nerror %v, want %v", in, gotErr, wantErr)
			continue
		}
		want.Context = EventContext{Page: Page{URL: want.Context.Page.URL}}
		for _, p := range append([]*Product{&want.Product}, ptrs(want.Products)...) {
			p.SKU, p.Brand, p.Currency = "", "", ""
		}
		want.Order.Currency = ""
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", in, got, want)
		}
	}
}

func ptrs[T any](s []T) []*T {
	out := make([]*T, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	return out
}

func TestEventFieldsString(t *testing.T) {
	if len(fieldNames) != bits.Len(uint(AllEventFields)) {
		t.Fatalf("%d field names for %d fields", len(fieldNames), bits.Len(uint(AllEventFields)))
	}
	for i, name := range fieldNames {
		if f := EventFieldsOf(name); f != 1<<i {
			t.Errorf("field %d is named %q, which is field %b", i, name, f)
		}
	}
	if got, want := (FieldPageURL | FieldOrderCurrency).String(), "context.page.url, order.currency"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := EventFields(0).String(); got != "none" {
		t.Errorf("String() of no field = %q", got)
	}
}

func TestEventFieldsOf(t *testing.T) {
	for path, want := range map[string]EventFields{
		"context":            fieldsContext,
		"context.page":       FieldPageURL | FieldPageReferrer | FieldPageTitle,
		"context.page.url":   FieldPageURL,
		"context.user_agent": FieldUserAgent,
		"context.locale":     FieldLocale,
		"product.brand":      FieldProductBrand,
		"products":           FieldProductSKU | FieldProductBrand | FieldProductCurrency,
		"order.currency":     FieldOrderCurrency,
		"order.id":           0,
		"search.query":       0,
		"product.category":   0,
		"product.price":      0,
		"order.revenue":      0,
		"properties.context": 0,
		"type":               0,
	} {
		if got := EventFieldsOf(path); got != want {
			t.Errorf("EventFieldsOf(%q) = %b, want %b", path, got, want)
		}
	}
}

func TestMatchEventFields(t *testing.T) {
	for src, want := range map[string]EventFields{
		`type == "page_viewed"`:                          0,
		`properties.context == "x" && user_id != ""`:     0,
		`product.price > 20`:                             fieldsProduct,
		`context.locale == "en-US"`:                      fieldsContext,
		`type == "x" || context.page.url contains "/p/"`: fieldsContext,
		`order.revenue > 100 && search.query == ""`:      FieldOrderCurrency,
		`any(products, .price > 10)`:                     fieldsProduct,
	} {
		m, err := CompileMatch(src)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.EventFields(); got != want {
			t.Errorf("%s: %b, want %b", src, got, want)
		}
	}
}

// contextOp is an operator that says which optional fields it reads.
type contextOp struct {
	reads    EventFields
	forwards bool
}

func (o *contextOp) Open(*OpenContext) error          { return nil }
func (o *contextOp) OnEvent(*Context, *Event) error   { return nil }
func (o *contextOp) EventFields() (EventFields, bool) { return o.reads, o.forwards }

func newContextOp(reads EventFields, forwards bool) Factory {
	return func() Operator { return &contextOp{reads, forwards} }
}

// silentOp says nothing about what it reads.
type silentOp struct{}

func (o *silentOp) Open(*OpenContext) error        { return nil }
func (o *silentOp) OnEvent(*Context, *Event) error { return nil }

// TestPlanEventFields checks which context fields a plan decodes: the
// union of what its operators read, and all of them when an operator that
// forwards events, or one that says nothing, has a sink.
func TestPlanEventFields(t *testing.T) {
	type op struct {
		id     string
		new    Factory
		inputs []string
	}
	cases := []struct {
		name  string
		ops   []op
		sinks [][]string // inputs of each sink
		want  EventFields
	}{
		{"union of reads", []op{
			{"a", newContextOp(FieldLocale, true), nil},
			{"b", newContextOp(FieldPageURL, false), []string{"a"}},
		}, [][]string{{"b"}}, FieldLocale | FieldPageURL},
		{"nothing read", []op{
			{"a", newContextOp(0, true), nil},
			{"b", newContextOp(0, false), []string{"a"}},
		}, [][]string{{"b"}}, 0},
		{"a forwarding operator feeds a sink", []op{
			{"a", newContextOp(0, true), nil},
			{"b", newContextOp(0, false), []string{"a"}},
		}, [][]string{{"b"}, {"a"}}, AllEventFields},
		{"an operator that says nothing", []op{
			{"a", newContextOp(0, true), nil},
			{"b", func() Operator { return &silentOp{} }, []string{"a"}},
		}, nil, AllEventFields},
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
			if got := plan.EventFields(); got != c.want {
				t.Errorf("EventFields() = %b, want %b", got, c.want)
			}
		})
	}
}
