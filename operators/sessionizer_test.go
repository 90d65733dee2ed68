package operators

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/pipeline/pipelinetest"
)

func TestSessionizer(t *testing.T) { pipelinetest.RunScripts(t, "testdata/sessionizer*.txt") }

// A populated session goes through the codec unchanged, and every
// truncation of its encoding is an error, never a wrong session.
func TestSessionCodec(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	full := &Session{
		ID:             "u1:1795860000000",
		Start:          at,
		End:            at.Add(90 * time.Second),
		EventCount:     7,
		Counts:         []SessionNameCount{{"order_completed", 1}, {"product_viewed", 5}, {"custom é", 1}},
		ProductsViewed: []string{"p1", "p2"},
		CategoryViews:  []SessionNameCount{{"shoes", 4}},
		Searches:       []SessionSearch{{At: at.Add(time.Second), Query: "rain jacket"}},
		CartAdds:       3,
		CartRemoves:    1,
		CartValue:      -12.5,
		Purchased:      true,
		Revenue:        99.99,
		LandingPage:    "/home",
		LandingAt:      at,
		ExitPage:       "/thanks",
		ExitAt:         at.Add(90 * time.Second),
	}
	for _, s := range []*Session{full, {ID: "u2:0", Start: at, End: at, EventCount: 1}} {
		enc := SessionCodec.Append(nil, s)
		got, err := SessionCodec.Decode(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, s)
		}
		for n := range len(enc) {
			if _, err := SessionCodec.Decode(enc[:n]); err == nil {
				t.Errorf("%d of %d bytes decoded without error", n, len(enc))
			}
		}
		if _, err := SessionCodec.Decode(append(enc, 0)); err == nil {
			t.Error("trailing byte decoded without error")
		}
	}
	enc := SessionCodec.Append(nil, full)
	enc[0] = 2
	if _, err := SessionCodec.Decode(enc); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("unknown version: got %v", err)
	}
	// The live session also reads as JSON through its tags (for a query
	// API).
	js, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	var back Session
	if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(&back, full) {
		t.Errorf("JSON round trip: %v\n%s", err, js)
	}
}

// The summary's JSON is valid and agrees with its fields; Summary copies
// what a later event would change.
func TestSessionSummaryJSON(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	s := &Session{ID: "u\"1:0", Start: at, End: at}
	s.add(&pipeline.Event{Type: "products_searched", Search: pipeline.Search{Query: "a \"quoted\"\nquery"}}, at)
	s.add(&pipeline.Event{Type: "product_added", Product: pipeline.Product{ID: "p", Price: 0.1, Quantity: 3}}, at.Add(1500*time.Millisecond))
	sum := s.Summary()
	s.add(&pipeline.Event{Type: "products_searched", Search: pipeline.Search{Query: "later"}}, at.Add(time.Second))
	js := sum.AppendJSON(nil)
	var got map[string]any
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	want := map[string]any{
		"session_id": "u\"1:0", "start": "2026-11-28T10:00:00Z", "end": "2026-11-28T10:00:01.5Z",
		"duration_s": 1.5, "event_count": 2.0,
		"counts":          map[string]any{"product_added": 1.0, "products_searched": 1.0},
		"products_viewed": 0.0, "top_categories": []any{}, "searches": []any{"a \"quoted\"\nquery"},
		"cart_adds": 3.0, "cart_removes": 0.0, "cart_value": 0.3, "purchased": false, "revenue": 0.0,
		"landing_page": "", "exit_page": "",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if m, err := json.Marshal(&sum); err != nil || string(m) != string(js) {
		t.Errorf("MarshalJSON differs from AppendJSON: %v\n%s\n%s", err, m, js)
	}
}

// A session_ended record carries the ended session itself: it encodes as
// the session's summary, including past the room the encoder keeps on its
// stack (5 top categories, 8 searches), and a record kept after the key
// has gone on to a new session still encodes as it did when emitted.
func TestSessionEndedPayload(t *testing.T) {
	h := harnessOf(t, "op", "sessionizer", "{gap: 30m}")
	at := pipelinetest.BaseDay.Add(10 * time.Hour)
	var events []pipeline.Event
	add := func(e pipeline.Event) {
		e.EventID, e.UserID = "e"+strconv.Itoa(len(events)), "u1"
		e.Timestamp = at.Add(time.Duration(len(events)) * time.Second)
		e.Context.Page.URL = "/page/" + strconv.Itoa(len(events)%3)
		events = append(events, e)
	}
	for i := range 12 {
		add(pipeline.Event{Type: "products_searched", Search: pipeline.Search{Query: "query " + strconv.Itoa(i)}})
	}
	for i := range 14 {
		add(pipeline.Event{Type: "product_viewed", Product: pipeline.Product{ID: "p" + strconv.Itoa(i), Category: "c" + strconv.Itoa(i%7)}})
	}
	add(pipeline.Event{Type: "product_added", Product: pipeline.Product{ID: "p1", Price: 2.5, Quantity: 2}})
	add(pipeline.Event{Type: "order_completed", Order: pipeline.Order{Revenue: 5}})
	h.Process(events...)
	last := events[len(events)-1].Timestamp
	h.AdvanceWatermark(last.Add(30 * time.Minute))
	var ended *EndedSession
	for _, r := range h.Records() {
		if r.Type == RecordSessionEnded {
			ended = r.Data.(*EndedSession)
		}
	}
	if ended == nil {
		t.Fatal("no session_ended record")
	}
	sum := ended.Summary()
	want := string(sum.AppendJSON(nil))
	if got := string(ended.AppendJSON(nil)); got != want {
		t.Fatalf("session_ended data:\n got %s\nwant %s", got, want)
	}
	if len(sum.TopCategories) != topCategoriesMax || len(sum.Searches) != 12 || sum.EventCount != len(events) {
		t.Fatalf("summary %+v: want %d top categories, 12 searches, %d events", sum, topCategoriesMax, len(events))
	}

	// The key's next session changes nothing in the kept record.
	next := events[:4:4]
	for i := range next {
		next[i].Timestamp = last.Add(time.Hour + time.Duration(i)*time.Second)
	}
	h.Process(next...)
	h.AdvanceWatermark(last.Add(3 * time.Hour))
	if n := len(h.Records()); n != 2 {
		t.Fatalf("second session: %d records, want session_started and session_ended", n)
	}
	if got := string(ended.AppendJSON(nil)); got != want {
		t.Errorf("kept session_ended data changed:\n got %s\nwant %s", got, want)
	}
	if js, err := json.Marshal(ended); err != nil || string(js) != want {
		t.Errorf("MarshalJSON: %v\n%s", err, js)
	}
}

// The session keeps its own copies of an event's strings, never the
// event's (which share one allocation with the whole event), and reuses a
// copy for a page it already holds.
func TestSessionClonesEventStrings(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	s := &Session{ID: "u1:0", Start: at, End: at}
	event := func(url string) *pipeline.Event {
		e := &pipeline.Event{Type: "product_viewed", Product: pipeline.Product{ID: string([]byte("p1")), Category: string([]byte("shoes"))}}
		e.Context.Page.URL = url
		return e
	}
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	for i, url := range []string{"/p/1", "/p/1", "/p/2", "/p/1"} {
		url = string([]byte(url)) // a string of the event's own
		e := event(url)
		s.add(e, at.Add(time.Duration(i)*time.Second))
		for _, kept := range []string{s.LandingPage, s.ExitPage, s.ProductsViewed[0], s.CategoryViews[0].Name} {
			if same(kept, url) || same(kept, e.Product.ID) || same(kept, e.Product.Category) {
				t.Fatalf("event %d: the session keeps the event's string %q", i, kept)
			}
		}
	}
	if s.LandingPage != "/p/1" || s.ExitPage != "/p/1" || !same(s.LandingPage, s.ExitPage) {
		t.Errorf("landing %q, exit %q: want /p/1 once", s.LandingPage, s.ExitPage)
	}
	// A new session is one allocation of at most 512 bytes (a size class).
	if size := unsafe.Sizeof(newSession{}); unsafe.Sizeof(uintptr(0)) == 8 && size > 512 {
		t.Errorf("newSession is %d bytes, more than 512", size)
	}
}

func TestSessionizerConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  SessionizerConfig
		fail bool
	}{
		{SessionizerConfig{}, false},
		{SessionizerConfig{Gap: pipeline.Duration(time.Minute), MaxDuration: pipeline.Duration(time.Hour)}, false},
		{SessionizerConfig{Gap: -1}, true},
		{SessionizerConfig{MaxDuration: -1}, true},
	} {
		if err := tc.cfg.Validate(); (err != nil) != tc.fail {
			t.Errorf("%+v: got %v, want failure %v", tc.cfg, err, tc.fail)
		}
	}
}

// BenchmarkSessionizer measures the sessionizer in a one-partition
// Harness (so it includes the runtime's per-event work). 10,000 users visit
// in turn, 20 product views a visit, 100 ms apart; a user comes back after
// the others (5.5 hours later), so each visit is a session of 20 events
// that ends, through its timer, when the user's next visit begins.
func BenchmarkSessionizer(b *testing.B) {
	spec := "version: 1\nname: bench\nsource: {type: none}\npartitions: 1\nstate: {dir: " + strconv.Quote(b.TempDir()) + "}\n" +
		"operators:\n  - id: sessions\n    type: sessionizer\n    with: {gap: 30m}\n"
	h := harnessOfSpec(b, spec, "bench.yaml")
	const users, visit, batch = 10000, 20, 1000
	userIDs := make([]string, users)
	for i := range userIDs {
		userIDs[i] = "u" + strconv.Itoa(i)
	}
	products := make([]string, 500)
	for i := range products {
		products[i] = "p" + strconv.Itoa(i)
	}
	eventIDs := make([]string, batch)
	for i := range eventIDs {
		eventIDs[i] = "e" + strconv.Itoa(i)
	}
	categories := []string{"shoes", "outerwear", "toys", "garden", "books", "kitchen", "audio"}
	at := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	events := make([]pipeline.Event, batch)
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		for j := range events {
			n++
			events[j] = pipeline.Event{
				EventID:   eventIDs[j],
				Type:      "product_viewed",
				UserID:    userIDs[(n/visit)%users],
				Timestamp: at.Add(time.Duration(n) * 100 * time.Millisecond),
				Product:   pipeline.Product{ID: products[n%len(products)], Category: categories[n%len(categories)], Price: 10},
			}
		}
		h.Process(events...)
		h.Records()
	}
}
