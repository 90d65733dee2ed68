package importer

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// readTestdata returns the content of testdata/name, gunzipped when the
// name ends in .gz.
func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(name, ".gz") {
		return raw
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// convert runs read over data and returns the events.
func convert(t *testing.T, read func(io.Reader, func(*pipeline.Event) error) error, data []byte) []*pipeline.Event {
	t.Helper()
	var events []*pipeline.Event
	if err := read(bytes.NewReader(data), func(e *pipeline.Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return events
}

// csvColumnCounts counts the values of column col (0-based) over the lines
// of a CSV without quoted fields, skipping the first skip lines.
func csvColumnCounts(t *testing.T, data []byte, col, skip int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	for _, line := range lines[skip:] {
		f := strings.Split(strings.TrimRight(line, "\r"), ",")
		if len(f) <= col {
			t.Fatalf("line %q has %d fields", line, len(f))
		}
		counts[f[col]]++
	}
	return counts
}

// mapCounts renames the keys of counts with vocab (source value -> event
// type); a value vocab does not know fails the test.
func mapCounts(t *testing.T, counts map[string]int, vocab map[string]string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for k, n := range counts {
		typ, ok := vocab[k]
		if !ok {
			t.Fatalf("value %q is not in the mapping", k)
		}
		out[typ] += n
	}
	return out
}

func typeCounts(events []*pipeline.Event) map[string]int {
	counts := map[string]int{}
	for _, e := range events {
		counts[e.Type]++
	}
	return counts
}

// checkEvents checks what every imported event must satisfy: it encodes to
// JSON that pipeline.EventDecoder accepts and decodes to the same event
// (same encoding again), ids are unique, and it states the imported
// consent.
func checkEvents(t *testing.T, events []*pipeline.Event) {
	t.Helper()
	var dec pipeline.EventDecoder
	ids := make(map[string]bool, len(events))
	orders := map[string]bool{}
	for _, e := range events {
		enc := pipeline.AppendEventJSON(nil, e)
		var got pipeline.Event
		if err := dec.Decode(enc, &got); err != nil {
			t.Fatalf("event %s does not decode: %v\n%s", e.EventID, err, enc)
		}
		if again := pipeline.AppendEventJSON(nil, &got); !bytes.Equal(again, enc) {
			t.Fatalf("event %s changes through JSON:\n%s\n%s", e.EventID, enc, again)
		}
		if ids[e.EventID] {
			t.Fatalf("duplicate event id %s", e.EventID)
		}
		ids[e.EventID] = true
		if e.Type == "order_completed" {
			if orders[e.Order.ID] {
				t.Fatalf("duplicate order id %s", e.Order.ID)
			}
			orders[e.Order.ID] = true
			if len(e.Products) != 1 || e.Products[0].Quantity != 1 || e.Product != (pipeline.Product{}) {
				t.Fatalf("order %s: want one product of quantity 1, got product %+v products %+v", e.EventID, e.Product, e.Products)
			}
		}
		if want := map[string]bool{"analytics": true, "personalization": true}; !maps.Equal(e.Consent, want) {
			t.Fatalf("event %s: consent %v, want %v", e.EventID, e.Consent, want)
		}
	}
}

func TestREES46(t *testing.T) {
	data := readTestdata(t, "rees46-2019-oct-head5000.csv")
	events := convert(t, ReadREES46, data)
	checkEvents(t, events)

	want := mapCounts(t, csvColumnCounts(t, data, 1, 1), map[string]string{
		"view": "product_viewed", "cart": "product_added",
		"remove_from_cart": "product_removed", "purchase": "order_completed",
	})
	if got := typeCounts(events); !maps.Equal(got, want) {
		t.Errorf("types: got %v, want %v", got, want)
	}
	sessions := csvColumnCounts(t, data, 8, 1)
	got := map[string]int{}
	for _, e := range events {
		got[e.Properties["user_session"].(string)]++
	}
	if !maps.Equal(got, sessions) {
		t.Errorf("user_session: %d sessions, want %d (or their sizes differ)", len(got), len(sessions))
	}

	// The first row, field by field:
	// 2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-...
	e := events[0]
	if e.EventID != "rees46-1" || e.Type != "product_viewed" || e.UserID != "541312140" ||
		!e.Timestamp.Equal(time.Date(2019, 10, 1, 0, 0, 0, 0, time.UTC)) ||
		e.Product != (pipeline.Product{ID: "44600062", Category: "2103807459595387724", Brand: "shiseido", Price: 35.79}) ||
		e.Properties["user_session"] != "72d76fde-8bb3-4e00-8c23-a032dfed738c" {
		t.Errorf("first row: got %+v", *e)
	}
	// A category code wins over the category id.
	if e := events[1]; e.Product.Category != "appliances.environment.water_heater" || e.Properties["category_id"] != "2053013552326770905" {
		t.Errorf("second row: got product %+v properties %v", e.Product, e.Properties)
	}
	for i, e := range events {
		if i > 0 && e.Timestamp.Before(events[i-1].Timestamp) {
			t.Fatalf("event %s goes back in time", e.EventID)
		}
		switch e.Type {
		case "order_completed":
			if e.Order.Revenue != e.Products[0].Price || e.Order.Revenue <= 0 {
				t.Errorf("order %s: revenue %v, products %+v", e.EventID, e.Order.Revenue, e.Products)
			}
		case "product_added":
			if e.Product.Quantity != 1 {
				t.Errorf("cart %s: quantity %d", e.EventID, e.Product.Quantity)
			}
		}
	}
}

func TestTaobao(t *testing.T) {
	vocab := map[string]string{
		"pv": "product_viewed", "cart": "product_added",
		"fav": "product_added_to_wishlist", "buy": "order_completed",
	}
	for _, name := range []string{"taobao-userbehavior-96k.csv.gz", "taobao-userbehavior-114users.csv"} {
		t.Run(name, func(t *testing.T) {
			data := readTestdata(t, name)
			events := convert(t, ReadTaobao, data)
			checkEvents(t, events)
			want := mapCounts(t, csvColumnCounts(t, data, 3, 0), vocab)
			if got := typeCounts(events); !maps.Equal(got, want) {
				t.Errorf("types: got %v, want %v", got, want)
			}
			users := csvColumnCounts(t, data, 0, 0)
			categories := csvColumnCounts(t, data, 2, 0)
			gotUsers, gotCategories := map[string]int{}, map[string]int{}
			for _, e := range events {
				gotUsers[e.UserID]++
				if e.Type == "order_completed" {
					gotCategories[e.Products[0].Category]++
				} else {
					gotCategories[e.Product.Category]++
				}
			}
			if !maps.Equal(gotUsers, users) {
				t.Errorf("events per user differ: %d users, want %d", len(gotUsers), len(users))
			}
			if !maps.Equal(gotCategories, categories) {
				t.Errorf("events per category differ: %d categories, want %d", len(gotCategories), len(categories))
			}
		})
	}
}

// The dirty row of the 96k sample (timestamp 15) is converted faithfully:
// its event is at 1970-01-01T00:00:15Z, and the pipeline decides about it.
func TestTaobaoDirtyRow(t *testing.T) {
	data := readTestdata(t, "taobao-userbehavior-96k.csv.gz")
	events := convert(t, ReadTaobao, data)
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	var old []*pipeline.Event
	for _, e := range events {
		if e.Timestamp.Before(epoch) {
			old = append(old, e)
		}
	}
	if len(old) != 1 {
		t.Fatalf("%d events before 2000, want the one dirty row", len(old))
	}
	e := old[0]
	if e.EventID != "taobao-96169" || !e.Timestamp.Equal(time.Unix(15, 0)) || e.UserID != "301780" ||
		e.Product.ID != "543546" || e.Product.Category != "4181361" || e.Type != "product_viewed" {
		t.Errorf("dirty row: got %+v", *e)
	}
}

func TestOTTO(t *testing.T) {
	data := readTestdata(t, "otto-sample.jsonl")
	events := convert(t, ReadOTTO, data)
	checkEvents(t, events)
	// Count the types in the text, independently of any JSON decoding.
	want := map[string]int{}
	for typ, name := range map[string]string{"clicks": "product_viewed", "carts": "product_added", "orders": "order_completed"} {
		if n := bytes.Count(data, []byte(`"type":"`+typ+`"`)); n > 0 {
			want[name] = n
		}
	}
	if got := typeCounts(events); !maps.Equal(got, want) {
		t.Errorf("types: got %v, want %v", got, want)
	}
	lines := bytes.Count(bytes.TrimSpace(data), []byte("\n")) + 1
	users := map[string]bool{}
	for _, e := range events {
		users[e.UserID] = true
	}
	if len(users) != lines {
		t.Errorf("%d users, want one per session line (%d)", len(users), lines)
	}
	// The first event: {"session":0,"events":[{"aid":1517085,"ts":1659304800025,"type":"clicks"},...
	if e := events[0]; e.EventID != "otto-0-0" || e.UserID != "otto-0" || e.Product.ID != "1517085" ||
		!e.Timestamp.Equal(time.UnixMilli(1659304800025)) || e.Type != "product_viewed" {
		t.Errorf("first event: got %+v", *e)
	}
}

func TestReadErrors(t *testing.T) {
	discard := func(*pipeline.Event) error { return nil }
	for _, tc := range []struct {
		name, format, input, want string
	}{
		{"unknown format", "csv", "", `unknown format "csv"`},
		{"rees46 empty", FormatREES46, "", "empty input"},
		{"rees46 missing column", FormatREES46, "event_time,event_type\n", `no "product_id" column`},
		{"rees46 unknown type", FormatREES46,
			"event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n" +
				"2019-10-01 00:00:00 UTC,view,1,2,,b,1.5,u,s\n" +
				"2019-10-01 00:00:00 UTC,wish,1,2,,b,1.5,u,s\n",
			`line 3: unknown event_type "wish"`},
		{"rees46 bad time", FormatREES46,
			"event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n" +
				"2019-10-01T00:00:00Z,view,1,2,,b,1.5,u,s\n",
			"line 2: event_time"},
		{"taobao unknown behavior", FormatTaobao, "1,2,3,pv,15\n1,2,3,like,15\n", `line 2: unknown behavior "like"`},
		{"taobao bad timestamp", FormatTaobao, "1,2,3,pv,soon\n", "line 1: timestamp"},
		{"taobao columns", FormatTaobao, "1,2,3,pv\n", "wrong number of fields"},
		{"otto unknown type", FormatOTTO, `{"session":7,"events":[{"aid":1,"ts":2,"type":"likes"}]}`, `session 7: event 0: unknown type "likes"`},
		{"otto missing field", FormatOTTO, `{"session":7,"events":[{"aid":1,"type":"clicks"}]}`, `session 7: event 0: want`},
		{"otto not json", FormatOTTO, "{\"session\":1,\"events\":[]}\nnope\n", "session object 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Read(tc.format, strings.NewReader(tc.input), discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Read stops at the callback's first error and returns it.
func TestReadStopsOnCallbackError(t *testing.T) {
	stop := errors.New("stop")
	for _, format := range Formats() {
		var input string
		switch format {
		case FormatREES46:
			input = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n" +
				"2019-10-01 00:00:00 UTC,view,1,2,,b,1.5,u,s\n2019-10-01 00:00:01 UTC,view,1,2,,b,1.5,u,s\n"
		case FormatTaobao:
			input = "1,2,3,pv,15\n1,2,3,pv,16\n"
		case FormatOTTO:
			input = `{"session":1,"events":[{"aid":1,"ts":2,"type":"clicks"},{"aid":1,"ts":3,"type":"clicks"}]}`
		}
		calls := 0
		err := Read(format, strings.NewReader(input), func(*pipeline.Event) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("%s: got %v after %d calls, want the callback's error after 1", format, err, calls)
		}
	}
}
