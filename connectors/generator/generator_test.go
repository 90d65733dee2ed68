package generator

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// generate returns the decoded events of cfg, checking that each encodes
// to JSON that EventDecoder accepts.
func generate(t testing.TB, cfg Config) []pipeline.Event {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var (
		e   pipeline.Event
		dec pipeline.EventDecoder
		buf []byte
		out []pipeline.Event
	)
	for g.Next(&e) {
		buf = pipeline.AppendEventJSON(buf[:0], &e)
		var d pipeline.Event
		if err := dec.Decode(buf, &d); err != nil {
			t.Fatalf("event %d does not decode: %v\n%s", len(out)+1, err, buf)
		}
		out = append(out, d)
	}
	return out
}

func jsonl(t *testing.T, cfg Config) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteJSONL(&b, cfg); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDeterministic(t *testing.T) {
	a := jsonl(t, Config{Count: 5000})
	b := jsonl(t, Config{Count: 5000, Seed: 1})
	if !bytes.Equal(a, b) {
		t.Fatal("two runs with seed 1 differ")
	}
	if n := bytes.Count(a, []byte("\n")); n != 5000 {
		t.Fatalf("got %d lines, want 5000", n)
	}
	c := jsonl(t, Config{Count: 5000, Seed: 2})
	if bytes.Equal(a, c) {
		t.Fatal("seeds 1 and 2 give the same events")
	}
	// A shorter run is a prefix of a longer one.
	d := jsonl(t, Config{Count: 100})
	if !bytes.HasPrefix(a, d) {
		t.Fatal("the first 100 events depend on count")
	}
}

func TestEventIDsAndStart(t *testing.T) {
	evs := generate(t, Config{Count: 3000, Seed: 7})
	seen := map[string]bool{}
	for i, e := range evs {
		if seen[e.EventID] {
			t.Fatalf("event %d: duplicate id %s", i+1, e.EventID)
		}
		seen[e.EventID] = true
	}
	if evs[0].EventID != "g7-1" || evs[2999].EventID != "g7-3000" {
		t.Fatalf("ids %s..%s, want g7-1..g7-3000", evs[0].EventID, evs[2999].EventID)
	}
	// The first event is at Start, and none is earlier.
	for _, start := range []time.Time{{}, time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} {
		evs = generate(t, Config{Count: 2000, Start: start})
		if start.IsZero() {
			start = DefaultStart
		}
		if !evs[0].Timestamp.Equal(start) {
			t.Fatalf("first event at %v, want %v", evs[0].Timestamp, start)
		}
		for _, e := range evs {
			if e.Timestamp.Before(start) {
				t.Fatalf("%s at %v, before start %v", e.EventID, e.Timestamp, start)
			}
		}
	}
}

func TestFunnel(t *testing.T) {
	cfg := Config{Count: 20000}
	evs := generate(t, cfg)
	types := map[string]int{}
	for _, e := range evs {
		types[e.Type]++
		if pipeline.CategoryOf(e.Type) == pipeline.CategoryCustom {
			t.Errorf("type %q is outside the vocabulary", e.Type)
		}
	}
	t.Logf("types: %v", types)
	for _, typ := range []string{
		"page_viewed", "product_list_viewed", "product_list_filtered", "products_searched",
		"product_viewed", "product_added", "product_removed", "cart_viewed",
		"checkout_started", "checkout_step_completed", "payment_info_entered",
		"order_completed", "consent_updated", "identify", "erasure_requested",
	} {
		if types[typ] == 0 {
			t.Errorf("no %s event", typ)
		}
	}
	for typ, n := range types {
		if typ != "product_viewed" && n >= types["product_viewed"] {
			t.Errorf("%d %s events, not fewer than %d product_viewed", n, typ, types["product_viewed"])
		}
	}
	if types["order_completed"] >= types["checkout_started"] || types["checkout_started"] >= types["product_added"] {
		t.Errorf("funnel does not narrow: added %d, checkout %d, orders %d",
			types["product_added"], types["checkout_started"], types["order_completed"])
	}

	orders := map[string]bool{}
	for _, e := range evs {
		switch e.Type {
		case "order_completed":
			if len(e.Products) == 0 {
				t.Fatalf("%s: order without products", e.EventID)
			}
			var sum float64
			for _, p := range e.Products {
				sum += p.Price * float64(p.Quantity)
			}
			if math.Abs(sum-e.Order.Revenue) > 0.005 {
				t.Fatalf("%s: revenue %v, products sum to %v", e.EventID, e.Order.Revenue, sum)
			}
			if e.UserID == "" {
				t.Fatalf("%s: anonymous order", e.EventID)
			}
			orders[e.Order.ID] = true
		case "products_searched":
			if e.Search.Query == "" {
				t.Fatalf("%s: search without query", e.EventID)
			}
		case "product_list_filtered":
			if len(e.Filters) == 0 {
				t.Fatalf("%s: no filters", e.EventID)
			}
			for _, p := range e.Products {
				for _, f := range e.Filters {
					if f.Field == "brand" && p.Brand != f.Value {
						t.Fatalf("%s: product of %s listed with filter brand = %s", e.EventID, p.Brand, f.Value)
					}
				}
			}
		case "identify":
			if e.UserID == "" || e.AnonymousID == "" {
				t.Fatalf("%s: identify without both ids", e.EventID)
			}
		case "page_viewed":
			if e.Context.Page.URL == "" {
				t.Fatalf("%s: page_viewed without url", e.EventID)
			}
		}
		if e.Consent == nil {
			t.Fatalf("%s: no consent", e.EventID)
		}
	}
	if len(orders) != types["order_completed"] {
		t.Errorf("%d distinct order ids for %d orders", len(orders), types["order_completed"])
	}

	// Shoppers (devices) that never state analytics consent.
	analytics := map[string]bool{}
	for _, e := range evs {
		if e.AnonymousID != "" {
			analytics[e.AnonymousID] = analytics[e.AnonymousID] || e.Consent["analytics"]
		}
	}
	without := 0
	for _, ok := range analytics {
		if !ok {
			without++
		}
	}
	share := float64(without) / float64(len(analytics))
	t.Logf("%d shoppers, %.3f without analytics consent", len(analytics), share)
	if math.Abs(share-DefaultNoConsentShare) > 0.03 {
		t.Errorf("share without consent %.3f, want %.3f ± 0.03", share, DefaultNoConsentShare)
	}
}

// sessions splits each device's events into sessions at gaps over 30m.
func sessions(evs []pipeline.Event) map[string][][]pipeline.Event {
	by := map[string][][]pipeline.Event{}
	for _, e := range evs {
		if e.AnonymousID == "" {
			continue // server-side events
		}
		ss := by[e.AnonymousID]
		if n := len(ss); n > 0 && e.Timestamp.Sub(ss[n-1][len(ss[n-1])-1].Timestamp) <= 30*time.Minute {
			ss[n-1] = append(ss[n-1], e)
		} else {
			ss = append(ss, []pipeline.Event{e})
		}
		by[e.AnonymousID] = ss
	}
	return by
}

func TestSessions(t *testing.T) {
	evs := generate(t, Config{Count: 20000, Users: 300})
	var (
		multi, total, abandonedCart, abandonedBrowse, ordered, anonymousStart int
	)
	for _, ss := range sessions(evs) {
		if len(ss) > 1 {
			multi++
		}
		for _, s := range ss {
			total++
			if s[0].Type != "page_viewed" {
				t.Fatalf("session of %s starts with %s", s[0].AnonymousID, s[0].Type)
			}
			if s[0].UserID == "" {
				anonymousStart++
			}
			var added, order, viewed bool
			for i, e := range s {
				if i > 0 {
					// Within a session, think times stay far below the gap
					// (a few events may be up to MaxDisorder late).
					if d := e.Timestamp.Sub(s[i-1].Timestamp); d > 5*time.Minute+DefaultMaxDisorder {
						t.Fatalf("%s: %v since the previous event of its session", e.EventID, d)
					}
				}
				added = added || e.Type == "product_added"
				order = order || e.Type == "order_completed"
				viewed = viewed || e.Type == "product_viewed"
			}
			switch {
			case order:
				ordered++
			case added:
				abandonedCart++
			case viewed:
				abandonedBrowse++
			}
		}
	}
	t.Logf("%d sessions, %d devices with several; ordered %d, abandoned carts %d, abandoned browsing %d, anonymous %d",
		total, multi, ordered, abandonedCart, abandonedBrowse, anonymousStart)
	if multi == 0 {
		t.Error("no shopper has more than one session")
	}
	if abandonedCart <= ordered || abandonedBrowse <= abandonedCart {
		t.Errorf("want more abandoned browsing than abandoned carts than orders: %d, %d, %d",
			abandonedBrowse, abandonedCart, ordered)
	}
	if share := float64(anonymousStart) / float64(total); math.Abs(share-DefaultAnonymousShare) > 0.05 {
		t.Errorf("%.3f of sessions start anonymous, want %.2f ± 0.05", share, DefaultAnonymousShare)
	}
}

func TestPopularityAndBursts(t *testing.T) {
	evs := generate(t, Config{Count: 50000})
	views := map[string]int{}
	const bucket = 10 * time.Minute
	perBucket := map[string]map[int64]int{}
	var first, last time.Time
	for _, e := range evs {
		if e.Type != "product_viewed" {
			continue
		}
		if first.IsZero() {
			first = e.Timestamp
		}
		last = e.Timestamp
		views[e.Product.ID]++
		b := perBucket[e.Product.ID]
		if b == nil {
			b = map[int64]int{}
			perBucket[e.Product.ID] = b
		}
		b[e.Timestamp.UnixNano()/int64(bucket)]++
	}
	counts := make([]int, 0, len(views))
	for _, n := range views {
		counts = append(counts, n)
	}
	slices.Sort(counts)
	top, median := counts[len(counts)-1], counts[len(counts)/2]
	t.Logf("%d products viewed; top %d views, median %d", len(counts), top, median)
	if top < 10*median {
		t.Errorf("popularity is flat: top %d, median %d", top, median)
	}
	// A burst: one product's views in one 10-minute bucket are many times
	// its average per bucket.
	buckets := float64(last.Sub(first)/bucket + 1)
	spikes := 0
	for id, b := range perBucket {
		mean := float64(views[id]) / buckets
		for _, n := range b {
			if n >= 20 && float64(n) >= 5*mean {
				spikes++
			}
		}
	}
	t.Logf("%.0f buckets, %d product spikes", buckets, spikes)
	if spikes == 0 {
		t.Error("no demand burst")
	}
}

func TestDisorderBounded(t *testing.T) {
	for _, tc := range []struct {
		disorder pipeline.Duration
		bound    time.Duration
	}{
		{0, DefaultMaxDisorder},
		{pipeline.Duration(300 * time.Millisecond), 300 * time.Millisecond},
		{-1, 0},
	} {
		evs := generate(t, Config{Count: 20000, MaxDisorder: tc.disorder})
		var maxSeen time.Time
		late := 0
		for _, e := range evs {
			if e.Timestamp.Before(maxSeen.Add(-tc.bound)) {
				t.Fatalf("max_disorder %v: %s at %v, newest before it %v", tc.disorder, e.EventID, e.Timestamp, maxSeen)
			}
			if e.ReceivedAt.Before(e.Timestamp) {
				t.Fatalf("%s received before it happened", e.EventID)
			}
			if e.Timestamp.Before(maxSeen) {
				late++
			}
			if e.Timestamp.After(maxSeen) {
				maxSeen = e.Timestamp
			}
		}
		if (late > 0) != (tc.bound > 0) {
			t.Errorf("max_disorder %v: %d events out of order", tc.disorder, late)
		}
	}
}

func TestPostPurchaseAndErasure(t *testing.T) {
	evs := generate(t, Config{Count: 100000, ErasureShare: 0.01})
	orders := map[string]string{} // order id -> user
	erased := map[string]bool{}
	var returns, refunds, erasures int
	for _, e := range evs {
		if erased[e.Key()] || erased[e.AnonymousID] {
			t.Fatalf("%s: %s sent an event after its erasure", e.EventID, e.Key())
		}
		switch e.Type {
		case "order_completed":
			orders[e.Order.ID] = e.UserID
		case "product_returned", "order_refunded":
			if u, ok := orders[e.Order.ID]; !ok || u != e.UserID {
				t.Fatalf("%s: %s for order %s of %q by %q", e.EventID, e.Type, e.Order.ID, u, e.UserID)
			}
			if e.Type == "product_returned" {
				returns++
			} else {
				refunds++
			}
		case "erasure_requested":
			erasures++
			erased[e.UserID] = true
			erased[e.AnonymousID] = true
		}
	}
	t.Logf("%d orders, %d returns, %d refunds, %d erasures", len(orders), returns, refunds, erasures)
	if returns == 0 || refunds == 0 || erasures == 0 {
		t.Error("missing returns, refunds or erasures")
	}
	if returns+refunds > len(orders)/5 {
		t.Errorf("too many returns and refunds for %d orders", len(orders))
	}
}

func TestConsentUpdates(t *testing.T) {
	evs := generate(t, Config{Count: 50000})
	state := map[string]map[string]bool{}
	var grants, withdrawals int
	for _, e := range evs {
		prev := state[e.AnonymousID]
		if e.Type == "consent_updated" && prev != nil {
			for k, v := range e.Consent {
				switch {
				case v && !prev[k]:
					grants++
				case !v && prev[k]:
					withdrawals++
				}
			}
		}
		if e.AnonymousID != "" {
			state[e.AnonymousID] = e.Consent
		}
	}
	t.Logf("%d grants, %d withdrawals", grants, withdrawals)
	if grants == 0 || withdrawals == 0 {
		t.Error("want consent grants and withdrawals")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Count: -1}, "count"},
		{Config{Rate: -1}, "rate"},
		{Config{Rate: math.NaN()}, "rate"},
		{Config{Users: -5}, "users"},
		{Config{NoConsentShare: 1.5}, "no_consent_share"},
		{Config{Products: 3}, "products 3"},
		{Config{Categories: []string{"a", "a"}}, "twice"},
		{Config{Categories: []string{""}}, "empty"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error about %s", tc.cfg, err, tc.want)
		}
		if err := tc.cfg.Validate(); err == nil {
			t.Errorf("%+v: Validate accepted it", tc.cfg)
		}
	}
	// Custom categories and tiny sizes work.
	evs := generate(t, Config{Count: 2000, Users: 3, Products: 2, Categories: []string{"garden.tools", "pets"},
		NoConsentShare: -1, AnonymousShare: -1, ErasureShare: -1})
	firstSeen := map[string]bool{}
	for _, e := range evs {
		if e.Type == "erasure_requested" {
			t.Fatal("erasure with erasure_share < 0")
		}
		if e.Product.ID != "" && e.Product.ID != "p-1" && e.Product.ID != "p-2" {
			t.Fatalf("%s: product %s outside a catalogue of 2", e.EventID, e.Product.ID)
		}
		if e.AnonymousID == "" || firstSeen[e.AnonymousID] {
			continue
		}
		firstSeen[e.AnonymousID] = true
		// Nobody starts without consent, and no session starts anonymous.
		if !e.Consent["analytics"] || e.UserID == "" {
			t.Fatalf("%s: first event of %s: consent %v, user %q", e.EventID, e.AnonymousID, e.Consent, e.UserID)
		}
	}
	if len(firstSeen) != 3 {
		t.Fatalf("%d devices, want 3", len(firstSeen))
	}
}

func BenchmarkNext(b *testing.B) {
	g, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	var e pipeline.Event
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		g.Next(&e)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkNextEncode(b *testing.B) {
	g, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	var (
		e   pipeline.Event
		buf []byte
	)
	bytes := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		g.Next(&e)
		buf = pipeline.AppendEventJSON(buf[:0], &e)
		bytes += len(buf)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(bytes)/float64(b.N), "B/event")
}

func TestNextReusesEvent(t *testing.T) {
	// Next into one reused Event gives the same events as into fresh ones,
	// whatever the Event held before.
	a, err := New(Config{Count: 3000})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(Config{Count: 3000})
	reused := pipeline.Event{
		Consent:    map[string]bool{"advertising": true},
		Products:   []pipeline.Product{{ID: "stale"}},
		Filters:    []pipeline.Filter{{Field: "stale"}},
		Properties: map[string]any{"stale": 1},
	}
	var x, y []byte
	for i := 0; ; i++ {
		var fresh pipeline.Event
		okA, okB := a.Next(&reused), b.Next(&fresh)
		if okA != okB {
			t.Fatalf("event %d: Next reports %v and %v", i+1, okA, okB)
		}
		if !okA {
			break
		}
		x, y = pipeline.AppendEventJSON(x[:0], &reused), pipeline.AppendEventJSON(y[:0], &fresh)
		if !bytes.Equal(x, y) {
			t.Fatalf("event %d differs when reused:\n%s\n%s", i+1, x, y)
		}
	}
}
