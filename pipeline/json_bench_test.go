package pipeline

import (
	"testing"
	"time"
)

// benchEvent is the DESIGN §2 example event, compacted (660 bytes).
const benchEvent = `{"event_id":"e-1","type":"product_viewed","user_id":"u-1","anonymous_id":"a-9",` +
	`"timestamp":"2026-11-28T10:00:00.123Z","received_at":"2026-11-28T10:00:00.200Z",` +
	`"context":{"page":{"url":"https://shop/p/1","referrer":"","title":""},"channel":"web","user_agent":"","locale":"en-US","ip":""},` +
	`"consent":{"analytics":true,"personalization":true,"marketing":false},` +
	`"product":{"id":"p-1","sku":"","category":"apparel.outerwear","brand":"acme","price":49.9,"currency":"USD","quantity":1},` +
	`"products":[],"order":{"id":"o-1","revenue":99.8,"currency":"USD"},` +
	`"search":{"query":"rain jacket","results":12},"filters":[{"field":"price","op":"lt","value":"50"}],` +
	`"properties":{}}`

// benchEventSmall is a typical product view without the optional objects
// that a view does not need (420 bytes).
const benchEventSmall = `{"event_id":"e-1","type":"product_viewed","user_id":"u-1","anonymous_id":"a-9",` +
	`"timestamp":"2026-11-28T10:00:00.123Z","received_at":"2026-11-28T10:00:00.200Z",` +
	`"context":{"page":{"url":"https://shop/p/1"},"channel":"web","locale":"en-US"},` +
	`"consent":{"analytics":true,"personalization":true,"marketing":false},` +
	`"product":{"id":"p-1","category":"apparel.outerwear","brand":"acme","price":49.9,"currency":"USD","quantity":1}}`

func BenchmarkDecodeEvent(b *testing.B) {
	for _, bc := range []struct{ name, data string }{
		{"design-example", benchEvent},
		{"product-view", benchEventSmall},
	} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte(bc.data)
			var d EventDecoder
			var e Event
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Decode(data, &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendEventJSON(b *testing.B) {
	var d EventDecoder
	var e Event
	if err := d.Decode([]byte(benchEvent), &e); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEventJSON(buf[:0], &e)
	}
}

// benchPayload is a record payload that encodes itself.
type benchPayload struct {
	Group string
	Count int64
}

func (p *benchPayload) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"group":`...)
	dst = AppendJSONString(dst, p.Group)
	dst = append(dst, `,"count":`...)
	dst = appendJSONValue(dst, p.Count)
	return append(dst, '}')
}

func BenchmarkAppendRecordJSON(b *testing.B) {
	t := time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC)
	for _, bc := range []struct {
		name string
		data any
	}{
		{"appender", &benchPayload{Group: "p-1", Count: 42}},
		{"encoding-json", map[string]any{"group": "p-1", "count": 42}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := Record{ID: "views_1h:p-1:1795860000000:0", Type: "window_result", Key: "p-1", Time: t, Operator: "views_1h", Data: bc.data}
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendRecordJSON(buf[:0], &r)
			}
		})
	}
}

func BenchmarkMatcher(b *testing.B) {
	var d EventDecoder
	var e Event
	if err := d.Decode([]byte(benchEvent), &e); err != nil {
		b.Fatal(err)
	}
	for _, src := range []string{
		`type == "product_viewed"`,
		`type == "product_viewed" && product.price > 20`,
		`type in ["product_viewed", "product_added"] && consent.analytics`,
	} {
		b.Run(src, func(b *testing.B) {
			m, err := CompileMatch(src)
			if err != nil {
				b.Fatal(err)
			}
			mt := m.NewMatcher()
			b.ReportAllocs()
			for b.Loop() {
				ok, err := mt.Match(&e)
				if err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

func BenchmarkCompileField(b *testing.B) {
	var d EventDecoder
	var e Event
	if err := d.Decode([]byte(benchEvent), &e); err != nil {
		b.Fatal(err)
	}
	f, err := CompileField("product.id")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := f(&e); !ok {
			b.Fatal("no product.id")
		}
	}
}
