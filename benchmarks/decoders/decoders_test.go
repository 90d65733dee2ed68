package decoders

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/valyala/fastjson"
)

// event is the DESIGN §2 example event, compacted (660 bytes).
const event = `{"event_id":"e-1","type":"product_viewed","user_id":"u-1","anonymous_id":"a-9",` +
	`"timestamp":"2026-11-28T10:00:00.123Z","received_at":"2026-11-28T10:00:00.200Z",` +
	`"context":{"page":{"url":"https://shop/p/1","referrer":"","title":""},"channel":"web","user_agent":"","locale":"en-US","ip":""},` +
	`"consent":{"analytics":true,"personalization":true,"marketing":false},` +
	`"product":{"id":"p-1","sku":"","category":"apparel.outerwear","brand":"acme","price":49.9,"currency":"USD","quantity":1},` +
	`"products":[],"order":{"id":"o-1","revenue":99.8,"currency":"USD"},` +
	`"search":{"query":"rain jacket","results":12},"filters":[{"field":"price","op":"lt","value":"50"}],` +
	`"properties":{}}`

// productView is a typical product view without the optional objects that a
// view does not need (420 bytes).
const productView = `{"event_id":"e-1","type":"product_viewed","user_id":"u-1","anonymous_id":"a-9",` +
	`"timestamp":"2026-11-28T10:00:00.123Z","received_at":"2026-11-28T10:00:00.200Z",` +
	`"context":{"page":{"url":"https://shop/p/1"},"channel":"web","locale":"en-US"},` +
	`"consent":{"analytics":true,"personalization":true,"marketing":false},` +
	`"product":{"id":"p-1","category":"apparel.outerwear","brand":"acme","price":49.9,"currency":"USD","quantity":1}}`

// wireEvent mirrors pipeline.Event with json tags, so that reflection-based
// decoders do the same work: same fields, same types, RFC 3339 times. It
// does none of the validation pipeline.EventDecoder does.
type wireEvent struct {
	EventID     string    `json:"event_id"`
	Type        string    `json:"type"`
	UserID      string    `json:"user_id"`
	AnonymousID string    `json:"anonymous_id"`
	Timestamp   time.Time `json:"timestamp"`
	ReceivedAt  time.Time `json:"received_at"`
	Context     struct {
		Page struct {
			URL      string `json:"url"`
			Referrer string `json:"referrer"`
			Title    string `json:"title"`
		} `json:"page"`
		Channel   string `json:"channel"`
		UserAgent string `json:"user_agent"`
		Locale    string `json:"locale"`
		IP        string `json:"ip"`
	} `json:"context"`
	Consent  map[string]bool `json:"consent"`
	Product  wireProduct     `json:"product"`
	Products []wireProduct   `json:"products"`
	Order    struct {
		ID       string  `json:"id"`
		Revenue  float64 `json:"revenue"`
		Currency string  `json:"currency"`
	} `json:"order"`
	Search struct {
		Query   string `json:"query"`
		Results int    `json:"results"`
	} `json:"search"`
	Filters []struct {
		Field string `json:"field"`
		Op    string `json:"op"`
		Value string `json:"value"`
	} `json:"filters"`
	Properties map[string]any `json:"properties"`
}

type wireProduct struct {
	ID       string  `json:"id"`
	SKU      string  `json:"sku"`
	Category string  `json:"category"`
	Brand    string  `json:"brand"`
	Price    float64 `json:"price"`
	Currency string  `json:"currency"`
	Quantity int     `json:"quantity"`
}

func BenchmarkDecode(b *testing.B) {
	for _, ev := range []struct{ name, data string }{{"design-example", event}, {"product-view", productView}} {
		b.Run(ev.name, func(b *testing.B) { benchmarkDecode(b, []byte(ev.data)) })
	}
}

func benchmarkDecode(b *testing.B, data []byte) {
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var e wireEvent
			if err := json.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy-go-json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var e wireEvent
			if err := gojson.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fastjson-parse-only", func(b *testing.B) {
		// The floor of the fastjson path: parsing, no mapping or copying.
		var p fastjson.Parser
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.ParseBytes(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fastjson-hand-mapping", func(b *testing.B) {
		// Parser reused, fields mapped by hand, strings copied; no
		// validation.
		var d fastjsonDecoder
		var e pipeline.Event
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := d.decode(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sluice-EventDecoder", func(b *testing.B) {
		// The single-pass decoder: mapping, string copying (one
		// allocation) and the full validation of DESIGN §2.
		var d pipeline.EventDecoder
		var e pipeline.Event
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := d.Decode(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestSameEvent checks that the decoders compared agree on the event.
func TestSameEvent(t *testing.T) {
	var w1, w2 wireEvent
	if err := json.Unmarshal([]byte(event), &w1); err != nil {
		t.Fatal(err)
	}
	if err := gojson.Unmarshal([]byte(event), &w2); err != nil {
		t.Fatal(err)
	}
	var d pipeline.EventDecoder
	var e pipeline.Event
	if err := d.Decode([]byte(event), &e); err != nil {
		t.Fatal(err)
	}
	var fd fastjsonDecoder
	var fe pipeline.Event
	if err := fd.decode([]byte(event), &fe); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e, fe) {
		t.Errorf("fastjson mapping disagrees:\n%+v\n%+v", fe, e)
	}
	for _, w := range []wireEvent{w1, w2} {
		if w.EventID != e.EventID || w.Type != e.Type || !w.Timestamp.Equal(e.Timestamp) ||
			w.Product != wireProduct(e.Product) || w.Search.Results != e.Search.Results ||
			len(w.Consent) != len(e.Consent) || w.Filters[0].Value != e.Filters[0].Value {
			t.Errorf("decoders disagree:\n%+v\n%+v", w, e)
		}
	}
}
