package operators

import (
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/pipeline/pipelinetest"
)

func TestConsentFilter(t *testing.T) { pipelinetest.RunScripts(t, "testdata/consent_filter*.txt") }

func TestAbandonmentDetector(t *testing.T) {
	pipelinetest.RunScripts(t, "testdata/abandonment_detector*.txt")
}

func TestConsentCodec(t *testing.T) {
	for _, s := range []consentState{
		{},
		{known: 1, granted: 1, at: [maxConsentPurposes]int64{1795860000000000000}},
		{known: 0b101, granted: 0b100, at: [maxConsentPurposes]int64{-5, 0, math.MaxInt64}},
		{known: 0xff, granted: 0x7f, at: [maxConsentPurposes]int64{1, 2, 3, 4, 5, 6, 7, math.MinInt64}},
	} {
		enc := consentCodec{}.Append(nil, &s)
		got, err := consentCodec{}.Decode(enc)
		if err != nil || *got != s {
			t.Errorf("Decode(Append(%+v)) = %+v, %v", s, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {1, 1}, {1, 3, 2}, {0, 0, 7}, {1, 1, 0x80}} {
		if _, err := (consentCodec{}).Decode(bad); err == nil {
			t.Errorf("Decode(%x) succeeded", bad)
		}
	}
}

func TestAbandonCodec(t *testing.T) {
	states := []*abandonState{
		{hasLastCart: true, lastCart: 1795860000000000000},
		{
			cartArmed: true, checkout: true, cartAt: 1795860000000000000,
			items:      []cartItem{{"p1", 2, 19.99}, {"p-ü", 1, 0}},
			browseOpen: true, browseAt: 1795860001000000000, viewCount: 4,
			views:       []productViews{{"p1", 3}, {"p2", 1}},
			hasLastCart: true, lastCart: -1, hasLastBrowse: true, lastBrowse: 42,
		},
		{items: []cartItem{{"p1", 1, 5}}, browseOpen: true, browseAdded: true, browseAt: 7},
	}
	for _, s := range states {
		enc := abandonCodec{}.Append(nil, s)
		got, err := abandonCodec{}.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Append(%+v)): %v", s, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("Decode(Append(%+v)) = %+v", s, got)
		}
		for n := range enc {
			if _, err := (abandonCodec{}).Decode(enc[:n]); err == nil {
				t.Errorf("Decode of %d of %d bytes of %+v succeeded", n, len(enc), s)
			}
		}
	}
	if _, err := (abandonCodec{}).Decode([]byte{0x80}); err == nil {
		t.Error("Decode of unknown flags succeeded")
	}
}

// A browse_abandoned record owns the views it lists: the key's next browse
// session, on the same products, leaves a record kept from the first one
// as it was.
func TestBrowseAbandonedKeepsItsViews(t *testing.T) {
	h := harnessOf(t, "op", "abandonment_detector", "{browse_timeout: 30m, browse_min_views: 3, cooldown: 0}")
	at := pipelinetest.BaseDay.Add(10 * time.Hour)
	browse := func(start time.Time, products ...string) {
		events := make([]pipeline.Event, len(products))
		for i, p := range products {
			events[i] = pipeline.Event{
				EventID: fmt.Sprintf("e%d-%d", start.Unix(), i), Type: "product_viewed", UserID: "u1",
				Timestamp: start.Add(time.Duration(i) * time.Minute), Product: pipeline.Product{ID: p},
			}
		}
		h.Process(events...)
		h.AdvanceWatermark(start.Add(2 * time.Hour))
	}
	browse(at, "p1", "p2", "p2", "p3")
	first := h.Records()
	if len(first) != 1 || first[0].Type != "browse_abandoned" {
		t.Fatalf("first session: %+v, want one browse_abandoned", first)
	}
	want := `{"products":[{"product_id":"p2","views":2},{"product_id":"p1","views":1},{"product_id":"p3","views":1}],"view_count":4}`
	enc := func() string { return string(first[0].Data.(pipeline.JSONAppender).AppendJSON(nil)) }
	if got := enc(); got != want {
		t.Fatalf("first record: %s, want %s", got, want)
	}
	browse(at.Add(3*time.Hour), "p3", "p3", "p3", "p1", "p4")
	if second := h.Records(); len(second) != 1 || second[0].Type != "browse_abandoned" {
		t.Fatalf("second session: %+v, want one browse_abandoned", second)
	}
	if got := enc(); got != want {
		t.Errorf("first record after the second session: %s, want %s", got, want)
	}
}

// TestConsentFilterConfig checks the config's validation through the
// planner.
func TestConsentFilterConfig(t *testing.T) {
	for _, with := range []string{"{}", "{purposes: []}", "{purposes: [a, a]}", `{purposes: [""]}`,
		"{purposes: [a, b, c, d, e, f, g, h, i]}"} {
		if _, err := planOf(t, "op", "consent_filter", with); err == nil {
			t.Errorf("consent_filter with %s: no error", with)
		}
	}
	if _, err := planOf(t, "op", "consent_filter", "{purposes: [a, b, c, d, e, f, g, h]}"); err != nil {
		t.Errorf("8 purposes: %v", err)
	}
}

func TestAbandonmentDetectorConfig(t *testing.T) {
	for _, with := range []string{"{cart_timeout: -1m}", "{browse_timeout: -1s}", "{browse_min_views: -1}",
		"{cooldown: -1h}", "{cart_timeout: soon}", "{cooldown_: 1h}"} {
		if _, err := planOf(t, "op", "abandonment_detector", with); err == nil {
			t.Errorf("abandonment_detector with %s: no error", with)
		}
	}
	if _, err := planOf(t, "op", "abandonment_detector", "{cart_timeout: 1h, browse_min_views: 5, browse_timeout: 10m, cooldown: 0}"); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// benchHarness runs b.N of events through a Harness holding one operator,
// in batches of 1,024 whose timestamps it sets so that time moves forward
// by step per event, moving the watermark after each batch and checkpointing
// every 64 batches. It reports ns/event and allocs/event (unrounded: most
// allocations are the Harness's per-batch copies of the events).
func benchHarness(b *testing.B, typ, with string, events []pipeline.Event, step time.Duration) {
	h := harnessOf(b, "op", typ, with)
	const batch = 1024
	base := pipelinetest.BaseDay
	batches := 0
	evs := make([]pipeline.Event, 0, batch)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		evs = evs[:0]
		for j := range n {
			e := events[(i+j)%len(events)]
			e.Timestamp = base.Add(time.Duration(i+j) * step)
			evs = append(evs, e)
		}
		benchBatch(b, h, evs, batches)
		batches++
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "allocs/event")
}

// BenchmarkConsentFilter runs 10,000 users' events through a consent filter:
// one event in ten states consent (granted, but for one user in twenty
// denied).
func BenchmarkConsentFilter(b *testing.B) {
	const users = 10000
	granted := map[string]bool{"analytics": true, "personalization": true, "marketing": false}
	denied := map[string]bool{"analytics": false, "personalization": true}
	events := make([]pipeline.Event, 1<<16)
	for i := range events {
		u := (i * 7919) % users
		e := pipeline.Event{
			EventID: "e" + strconv.Itoa(i),
			Type:    "product_viewed",
			UserID:  "u" + strconv.Itoa(u),
			Product: pipeline.Product{ID: "p" + strconv.Itoa(i%500), Price: 10},
		}
		if i%10 < 1 || i < users {
			e.Consent = granted
			if u%20 == 0 {
				e.Consent = denied
			}
		}
		events[i] = e
	}
	benchHarness(b, "consent_filter", "{purposes: [analytics, personalization]}", events, 10*time.Millisecond)
}

// BenchmarkAbandonment runs 10,000 users' shopping events through an
// abandonment detector: about half product views, a fifth page views, the
// rest cart activity and orders; each user has an event every 100s of event
// time, so carts are abandoned and sessions end as the watermark moves.
func BenchmarkAbandonment(b *testing.B) {
	const users = 10000
	mix := []string{
		"product_viewed", "product_viewed", "product_viewed", "product_viewed", "product_viewed",
		"product_viewed", "product_viewed", "product_viewed", "product_viewed", "product_viewed",
		"page_viewed", "page_viewed", "page_viewed", "page_viewed",
		"product_added", "product_added", "cart_viewed", "product_removed", "checkout_started", "order_completed",
	}
	events := make([]pipeline.Event, 1<<16)
	for i := range events {
		u := i % users
		typ := mix[(i/users*7+u*3)%len(mix)]
		events[i] = pipeline.Event{
			EventID: "e" + strconv.Itoa(i),
			Type:    typ,
			UserID:  "u" + strconv.Itoa(u),
			Product: pipeline.Product{ID: "p" + strconv.Itoa((i*31)%200), Price: 9.5, Quantity: 1},
			Order:   pipeline.Order{ID: "o" + strconv.Itoa(i)},
		}
	}
	benchHarness(b, "abandonment_detector", "{}", events, 10*time.Millisecond)
}
