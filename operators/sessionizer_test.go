package operators

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

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
	parsed, err := pipeline.ParseSpec([]byte(spec), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	plan, err := pipeline.NewPlan(parsed)
	if err != nil {
		b.Fatal(err)
	}
	h, err := pipeline.NewHarness(plan)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
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
