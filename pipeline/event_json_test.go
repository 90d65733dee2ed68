package pipeline

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exampleEvent is benchEvent (the DESIGN §2 example) as decoded.
func exampleEvent() Event {
	return Event{
		EventID:     "e-1",
		Type:        "product_viewed",
		UserID:      "u-1",
		AnonymousID: "a-9",
		Timestamp:   time.Date(2026, 11, 28, 10, 0, 0, 123e6, time.UTC),
		ReceivedAt:  time.Date(2026, 11, 28, 10, 0, 0, 200e6, time.UTC),
		Context: EventContext{
			Page:    Page{URL: "https://shop/p/1"},
			Channel: "web",
			Locale:  "en-US",
		},
		Consent: map[string]bool{"analytics": true, "personalization": true, "marketing": false},
		Product: Product{ID: "p-1", Category: "apparel.outerwear", Brand: "acme", Price: 49.9, Currency: "USD", Quantity: 1},
		Order:   Order{ID: "o-1", Revenue: 99.8, Currency: "USD"},
		Search:  Search{Query: "rain jacket", Results: 12},
		Filters: []Filter{{Field: "price", Op: "lt", Value: "50"}},
	}
}

func decode(t *testing.T, data string) Event {
	t.Helper()
	var d EventDecoder
	var e Event
	if err := d.Decode([]byte(data), &e); err != nil {
		t.Fatalf("Decode(%s): %v", data, err)
	}
	return e
}

func TestDecodeEventExample(t *testing.T) {
	got := decode(t, benchEvent)
	if want := exampleEvent(); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got.Timestamp.Location() != time.UTC {
		t.Errorf("timestamp location %v, want UTC", got.Timestamp.Location())
	}
}

// minimal is the smallest valid event; tests add fields to it.
const minimal = `"event_id":"e","type":"page_viewed","user_id":"u","timestamp":"2026-11-28T10:00:00Z"`

func TestDecodeEventErrors(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	for _, tc := range []struct {
		name, in, want string
	}{
		// Not JSON.
		{"empty", ``, `not JSON: empty input at offset 0`},
		{"spaces", " \n", `not JSON: empty input at offset 2`},
		{"word", `nope`, `not JSON: invalid literal at offset 0`},
		{"truncated", `{"event_id":"e"`, `not JSON: unexpected end of input at offset 15`},
		{"unterminated string", `{"event_id":"e`, `not JSON: unexpected end of input in string at offset 14`},
		{"trailing comma", `{` + minimal + `,}`, `not JSON: invalid character '}' looking for an object key`},
		{"missing colon", `{"event_id" "e"}`, `not JSON: invalid character '"' after object key`},
		{"missing comma", `{"event_id":"e" "type":"t"}`, `not JSON: invalid character '"' after object value`},
		{"trailing data", `{` + minimal + `} {}`, `not JSON: invalid character '{' after top-level object`},
		{"bad escape", `{"event_id":"a\x"}`, `not JSON: invalid escape in string`},
		{"short unicode escape", `{"event_id":"a\u12"}`, `not JSON: invalid escape in string`},
		{"control character", "{\"event_id\":\"a\tb\"}", `not JSON: control character in string`},
		{"leading zero", `{"x":01}`, `not JSON: invalid character '1' after object value`},
		{"bare minus", `{"x":-}`, `not JSON: invalid character '}' in number`},
		{"no fraction digits", `{"x":1.}`, `not JSON: invalid character '}' after decimal point in number`},
		{"no exponent digits", `{"x":1e+}`, `not JSON: invalid character '}' in exponent of number`},
		{"NaN", `{"x":NaN}`, `not JSON: invalid character 'N' looking for a value`},
		{"bad literal", `{"x":tru}`, `not JSON: invalid literal`},
		{"bad value in unknown field", `{` + minimal + `,"x":[1,{"a":}]}`, `not JSON: invalid character '}' looking for a value`},
		{"too deep", `{"x":` + strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1) + `}`, `not JSON: nested too deep`},
		// Not an object.
		{"array", `[1,2]`, `not a JSON object: got array`},
		{"string", `"e"`, `not a JSON object: got string`},
		{"null", `null`, `not a JSON object: got null`},
		// Missing required fields.
		{"no event_id", `{"type":"page_viewed","user_id":"u","timestamp":"2026-11-28T10:00:00Z"}`, `missing required field "event_id"`},
		{"empty event_id", `{"event_id":"","type":"page_viewed","user_id":"u","timestamp":"2026-11-28T10:00:00Z"}`, `missing required field "event_id"`},
		{"null event_id", `{"event_id":null,"type":"page_viewed","user_id":"u","timestamp":"2026-11-28T10:00:00Z"}`, `missing required field "event_id"`},
		{"no type", `{"event_id":"e","user_id":"u","timestamp":"2026-11-28T10:00:00Z"}`, `missing required field "type"`},
		{"no timestamp", `{"event_id":"e","type":"page_viewed","user_id":"u"}`, `missing required field "timestamp"`},
		{"no key", `{"event_id":"e","type":"page_viewed","timestamp":"2026-11-28T10:00:00Z","user_id":"","anonymous_id":null}`, `missing required field "user_id" or "anonymous_id"`},
		// Bad times.
		{"timestamp not RFC 3339", `{` + minimal + `,"timestamp":"2026-11-28 10:00:00"}`, `field "timestamp": not an RFC 3339 time: "2026-11-28 10:00:00"`},
		{"timestamp bad day", `{` + minimal + `,"timestamp":"2026-02-30T10:00:00Z"}`, `field "timestamp": not an RFC 3339 time: "2026-02-30T10:00:00Z"`},
		{"timestamp out of range in UTC", `{` + minimal + `,"timestamp":"0000-01-01T00:00:00+01:00"}`, `field "timestamp": not an RFC 3339 time: "0000-01-01T00:00:00+01:00"`},
		{"timestamp number", `{` + minimal + `,"timestamp":1764324000}`, `field "timestamp": want string, got number`},
		{"received_at bad", `{` + minimal + `,"received_at":"yesterday"}`, `field "received_at": not an RFC 3339 time: "yesterday"`},
		// Wrong JSON types.
		{"event_id number", `{` + minimal + `,"event_id":1}`, `field "event_id": want string, got number`},
		{"type bool", `{` + minimal + `,"type":true}`, `field "type": want string, got bool`},
		{"context string", `{` + minimal + `,"context":"web"}`, `field "context": want object, got string`},
		{"page url number", `{` + minimal + `,"context":{"page":{"url":1}}}`, `field "context.page.url": want string, got number`},
		{"consent value string", `{` + minimal + `,"consent":{"analytics":"yes"}}`, `field "consent.analytics": want bool, got string`},
		{"product price string", `{` + minimal + `,"product":{"id":"p","price":"49.9"}}`, `field "product.price": want number, got string`},
		{"product quantity fraction", `{` + minimal + `,"product":{"id":"p","quantity":1.5}}`, `field "product.quantity": want integer, got 1.5`},
		{"product quantity huge", `{` + minimal + `,"product":{"id":"p","quantity":99999999999999999999}}`, `field "product.quantity": number out of range: 99999999999999999999`},
		{"price out of range", `{` + minimal + `,"product":{"id":"p","price":1e999}}`, `field "product.price": number out of range: 1e999`},
		{"products object", `{` + minimal + `,"products":{}}`, `field "products": want array, got object`},
		{"products item string", `{` + minimal + `,"products":[{"id":"p"},"q"]}`, `field "products[1]": want object, got string`},
		{"products item price", `{` + minimal + `,"products":[{"id":"p","price":true}]}`, `field "products[0].price": want number, got bool`},
		{"order revenue bool", `{` + minimal + `,"order":{"revenue":false}}`, `field "order.revenue": want number, got bool`},
		{"search results string", `{` + minimal + `,"search":{"results":"12"}}`, `field "search.results": want integer, got string`},
		{"filter value number", `{` + minimal + `,"filters":[{"field":"price","op":"lt","value":50}]}`, `field "filters[0].value": want string, got number`},
		{"properties array", `{` + minimal + `,"properties":[]}`, `field "properties": want object, got array`},
		{"properties number out of range", `{` + minimal + `,"properties":{"a":{"b":[1,-1e400]}}}`, `field "properties.a.b[1]": number out of range: -1e400`},
		// Type-specific requirements.
		{"product event without product", `{` + minimal + `,"type":"product_viewed"}`, `missing required field "product.id" for type "product_viewed"`},
		{"product event with empty product id", `{` + minimal + `,"type":"product_clicked","product":{"id":"","price":1}}`, `missing required field "product.id" for type "product_clicked"`},
		{"view with products only", `{` + minimal + `,"type":"product_viewed","products":[{"id":"p"}]}`, `missing required field "product.id" for type "product_viewed"`},
		{"cart add with item without id", `{` + minimal + `,"type":"product_added","products":[{"id":"p"},{"sku":"s"}]}`, `missing required field "products[1].id" for type "product_added"`},
		{"search without query", `{` + minimal + `,"type":"products_searched","search":{"results":3}}`, `missing required field "search.query" for type "products_searched"`},
		{"order without id", `{` + minimal + `,"type":"order_completed","order":{"revenue":10}}`, `missing required field "order.id" for type "order_completed"`},
		// Ids.
		{"NUL in event_id", `{` + minimal + `,"event_id":"a\u0000b"}`, `field "event_id": contains a NUL byte`},
		{"NUL in anonymous_id", `{` + minimal + `,"anonymous_id":"\u0000"}`, `field "anonymous_id": contains a NUL byte`},
		{"long user_id", `{` + minimal + `,"user_id":"` + long + `"}`, `field "user_id": longer than 512 bytes`},
		{"long event_id", `{` + minimal + `,"event_id":"` + long + `"}`, `field "event_id": longer than 512 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d EventDecoder
			e := exampleEvent()
			err := d.Decode([]byte(tc.in), &e)
			if err == nil {
				t.Fatalf("Decode(%s) = nil error, want %q", tc.in, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Decode(%s)\n got error %q\nwant prefix %q", tc.in, err, tc.want)
			}
			if !reflect.DeepEqual(e, Event{}) {
				t.Errorf("event after error = %+v, want zero", e)
			}
		})
	}
}

func TestDecodeEventAccepts(t *testing.T) {
	longest := strings.Repeat("x", MaxIDLen)
	for _, tc := range []struct {
		name, in string
		want     func(e *Event)
	}{
		{"anonymous only", `{"event_id":"e","type":"page_viewed","anonymous_id":"a","timestamp":"2026-11-28T10:00:00Z"}`,
			func(e *Event) { e.UserID, e.AnonymousID = "", "a" }},
		{"longest ids", `{` + minimal + `,"event_id":"` + longest + `","user_id":"` + longest + `"}`,
			func(e *Event) { e.EventID, e.UserID = longest, longest }},
		{"unknown fields at every level", `{"v":2,` + minimal + `,"extra":{"a":[1,2.5e3,"x\n",null,true,{"b":{}}]},` +
			`"context":{"page":{"url":"u","hash":"#x"},"device":{"os":"ios"}},"product":{"id":"p","variant":"red"},` +
			`"order":{"id":"o","tax":1},"search":{"query":"q","page":2},"filters":[{"field":"f","unit":"cm"}]}`,
			func(e *Event) {
				e.Context.Page.URL = "u"
				e.Product.ID = "p"
				e.Order.ID = "o"
				e.Search.Query = "q"
				e.Filters = []Filter{{Field: "f"}}
			}},
		{"white space everywhere", " \n{ \"event_id\" : \"e\" ,\t\"type\":\"page_viewed\",\"user_id\":\"u\",\r\n\"timestamp\" : \"2026-11-28T10:00:00Z\" , \"product\" : { \"price\" : 2 } , \"filters\" : [ ] } \n",
			func(e *Event) { e.Product.Price = 2 }},
		{"nulls are absent", `{` + minimal + `,"anonymous_id":null,"received_at":null,"context":null,"consent":{"analytics":null},` +
			`"product":null,"products":null,"order":{"id":null,"revenue":null},"search":{"results":null},"filters":null,"properties":null}`,
			func(e *Event) {}},
		{"empty objects and arrays are absent", `{` + minimal + `,"context":{"page":{}},"consent":{},"product":{},"products":[],"filters":[],"properties":{}}`,
			func(e *Event) {}},
		{"duplicate keys: the last wins", `{` + minimal + `,"user_id":"u2","consent":{"analytics":true,"analytics":false},"product":{"id":"p1"},"product":{"brand":"b"}}`,
			func(e *Event) {
				e.UserID = "u2"
				e.Consent = map[string]bool{"analytics": false}
				e.Product = Product{ID: "p1", Brand: "b"} // objects merge, as encoding/json does into structs
			}},
		{"cart add with products", `{` + minimal + `,"type":"product_added","products":[{"id":"p1","quantity":2},{"id":"p2","price":5}]}`,
			func(e *Event) {
				e.Type = "product_added"
				e.Products = []Product{{ID: "p1", Quantity: 2}, {ID: "p2", Price: 5}}
			}},
		{"custom type", `{` + minimal + `,"type":"store_visited"}`, func(e *Event) { e.Type = "store_visited" }},
		{"integers written as floats", `{` + minimal + `,"product":{"id":"p","quantity":2.0},"search":{"query":"q","results":1e2}}`,
			func(e *Event) {
				e.Product = Product{ID: "p", Quantity: 2}
				e.Search = Search{Query: "q", Results: 100}
			}},
		{"numbers", `{` + minimal + `,"product":{"price":-0.5e-3},"order":{"revenue":12345678901234567890}}`,
			func(e *Event) {
				e.Product.Price = -0.0005
				e.Order.Revenue = 12345678901234567890
			}},
		{"time offsets become UTC", `{` + minimal + `,"timestamp":"2026-11-28T12:30:00.5+02:30","received_at":"2026-11-28T10:00:00.123456789-00:00"}`,
			func(e *Event) {
				e.Timestamp = time.Date(2026, 11, 28, 10, 0, 0, 5e8, time.UTC)
				e.ReceivedAt = time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC)
			}},
		{"escapes", `{` + minimal + `,"context":{"page":{"title":"\"q\" \\ \/ \b\f\n\r\t \u00e9\u65E5 \ud83d\ude00"}},"event\u005fid":"e\u0301"}`,
			func(e *Event) {
				e.Context.Page.Title = "\"q\" \\ / \b\f\n\r\t é日 😀"
				e.EventID = "e\u0301"
			}},
		{"lone surrogates become U+FFFD", `{` + minimal + `,"context":{"ip":"\ud800x\udc00\ud800\u0041"}}`,
			func(e *Event) { e.Context.IP = "\uFFFDx\uFFFD\uFFFDA" }},
		{"invalid UTF-8 becomes U+FFFD", "{" + minimal + ",\"context\":{\"locale\":\"a\xffb\xc3\"},\"consent\":{\"x\xfe\":true}}",
			func(e *Event) {
				e.Context.Locale = "a\uFFFDb\uFFFD"
				e.Consent = map[string]bool{"x\uFFFD": true}
			}},
		{"properties", `{` + minimal + `,"properties":{"s":"v","n":1.5,"b":false,"z":null,"o":{"a":[1,"x",{}]},"e":[]}}`,
			func(e *Event) {
				e.Properties = map[string]any{
					"s": "v", "n": 1.5, "b": false, "z": nil,
					"o": map[string]any{"a": []any{1.0, "x", map[string]any{}}}, "e": []any{},
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := Event{EventID: "e", Type: "page_viewed", UserID: "u", Timestamp: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
			tc.want(&want)
			if got := decode(t, tc.in); !reflect.DeepEqual(got, want) {
				t.Errorf("got  %#v\nwant %#v", got, want)
			}
		})
	}
}

// TestDecodeCopiesStrings checks that a decoded event shares no memory with
// the input or with the decoder, which both get reused.
func TestDecodeCopiesStrings(t *testing.T) {
	var d EventDecoder
	buf := []byte(benchEvent)
	var first Event
	if err := d.Decode(buf, &first); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		if buf[i] >= 'a' && buf[i] <= 'z' {
			buf[i] = 'z'
		}
	}
	other := `{"event_id":"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","type":"XXXX","user_id":"XXXXXXXXXXXXXX",` +
		`"timestamp":"2026-11-28T10:00:00Z","context":{"page":{"url":"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}},` +
		`"consent":{"XXXXXXXXXXXX":true},"product":{"id":"XXXXXXXXXXXXXXXXXXX","category":"XXXXXXXXXXXXXXXXXXXXXXXXXX"},` +
		`"order":{"id":"XXXXXXXXXXXX"},"search":{"query":"XXXXXXXXXXXXXXXXXXXXXXXX"},"filters":[{"field":"XXXXXXXXXXXXXXXXXXXXXXXX"}]}`
	var second Event
	if err := d.Decode([]byte(other), &second); err != nil {
		t.Fatal(err)
	}
	if want := exampleEvent(); !reflect.DeepEqual(first, want) {
		t.Errorf("first event changed by reuse:\n got %+v\nwant %+v", first, want)
	}
}

func TestAppendEventJSON(t *testing.T) {
	e := exampleEvent()
	got := string(AppendEventJSON(nil, &e))
	want := `{"event_id":"e-1","type":"product_viewed","user_id":"u-1","anonymous_id":"a-9",` +
		`"timestamp":"2026-11-28T10:00:00.123Z","received_at":"2026-11-28T10:00:00.200Z",` +
		`"context":{"page":{"url":"https://shop/p/1"},"channel":"web","locale":"en-US"},` +
		`"consent":{"analytics":true,"marketing":false,"personalization":true},` +
		`"product":{"id":"p-1","category":"apparel.outerwear","brand":"acme","price":49.9,"currency":"USD","quantity":1},` +
		`"order":{"id":"o-1","revenue":99.8,"currency":"USD"},"search":{"query":"rain jacket","results":12},` +
		`"filters":[{"field":"price","op":"lt","value":"50"}]}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	minimal := Event{EventID: "e", Type: "t", AnonymousID: "a", Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))}
	got = string(AppendEventJSON([]byte("prefix "), &minimal))
	want = `prefix {"event_id":"e","type":"t","anonymous_id":"a","timestamp":"2026-01-02T02:04:05.000Z"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestAppendEventTime(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), "2026-11-28T10:00:00.000Z"},
		{time.Date(2026, 11, 28, 10, 0, 0, 5e6, time.UTC), "2026-11-28T10:00:00.005Z"},
		{time.Date(2026, 11, 28, 10, 0, 0, 123456000, time.UTC), "2026-11-28T10:00:00.123456Z"},
		{time.Date(2026, 11, 28, 10, 0, 0, 1, time.UTC), "2026-11-28T10:00:00.000000001Z"},
		{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), "0001-01-01T00:00:00.000Z"},
		{time.Date(2026, 11, 28, 1, 0, 0, 0, time.FixedZone("", -5*3600)), "2026-11-28T06:00:00.000Z"},
	} {
		if got := string(appendEventTime(nil, tc.t)); got != tc.want {
			t.Errorf("appendEventTime(%v) = %s, want %s", tc.t, got, tc.want)
		}
	}
}

func TestAppendJSONFloat(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 49.9, 1e20, 1e21, 1.5e-6, 1e-7, 123456789.125, -2.5e-300, 1.7976931348623157e308} {
		want, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendJSONFloat(nil, f); !bytes.Equal(got, want) {
			t.Errorf("AppendJSONFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

func TestEventRoundTrip(t *testing.T) {
	full := exampleEvent()
	full.Context = EventContext{
		Page:    Page{URL: "https://shop/p/1?q=\"x\"&y=<z>", Referrer: "https://search/", Title: "Rain jacket — Acme"},
		Channel: "app", UserAgent: "Mozilla/5.0\t(X11)", Locale: "fr-FR", IP: "2001:db8::1",
	}
	full.Products = []Product{{ID: "p-2", SKU: "s", Price: 0.1, Quantity: -1}, {ID: "p-3", Currency: "EUR"}}
	full.Filters = append(full.Filters, Filter{Field: "size", Op: "in", Value: "M,L"})
	full.Consent["custom purpose"] = true
	full.Properties = map[string]any{
		"s": "v\u2028", "n": 1e-9, "big": 1e300, "b": true, "z": nil,
		"o": map[string]any{"a": []any{1.0, "x", map[string]any{}, []any{}}},
	}
	full.Timestamp = time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC)

	for _, e := range []Event{
		exampleEvent(),
		full,
		{EventID: "e", Type: "identify", AnonymousID: "a", Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{EventID: "\x01\"\\", Type: "t", UserID: "ü", Timestamp: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		data := AppendEventJSON(nil, &e)
		if !json.Valid(data) {
			t.Fatalf("invalid JSON: %s", data)
		}
		got := decode(t, string(data))
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip of %s\n got %#v\nwant %#v", data, got, e)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(benchEvent))
	f.Add([]byte(benchEventSmall))
	f.Add([]byte(`{` + minimal + `,"type":"product_added","products":[{"id":"p","quantity":2e0}],"properties":{"a":[1,"\u00e9",{"b":null}]}}`))
	f.Add([]byte(`{` + minimal + `,"timestamp":"2026-11-28T10:00:00.123456+05:45","context":{"page":{"title":"\ud83d\ude00\ud800"}}}`))
	f.Add([]byte(`{` + minimal + `,"consent":{"a":true,"a":false},"x":{"y":[]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d EventDecoder
		var e1 Event
		err := d.Decode(data, &e1)
		if err != nil {
			if !reflect.DeepEqual(e1, Event{}) {
				t.Fatalf("event not reset after error %v", err)
			}
			return
		}
		// The decoder only accepts valid JSON, and reads strings as
		// encoding/json does.
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("encoding/json rejects accepted %q: %v", data, err)
		}
		for field, got := range map[string]string{"event_id": e1.EventID, "type": e1.Type, "user_id": e1.UserID, "anonymous_id": e1.AnonymousID} {
			if want, ok := m[field].(string); ok && want != got {
				t.Fatalf("%s = %q, encoding/json says %q", field, got, want)
			}
		}
		// Encoding is stable: decode(encode(e)) == e and encodes the same.
		enc := AppendEventJSON(nil, &e1)
		var e2 Event
		if err := d.Decode(enc, &e2); err != nil {
			t.Fatalf("decoding %s: %v", enc, err)
		}
		if !reflect.DeepEqual(e1, e2) {
			t.Fatalf("round trip differs for %s\n got %#v\nwant %#v", enc, e2, e1)
		}
		if enc2 := AppendEventJSON(nil, &e2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}
