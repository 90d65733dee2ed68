package pipeline

import (
	"testing"
	"time"
)

// A record crossing a repartition stream encodes back to the same JSON.
func TestRepartitionRecordRoundTrip(t *testing.T) {
	recs := []*Record{
		{ID: "views_1h/p-1/1795824000000/0", Type: "window_result", Key: "p-1", Time: time.Date(2026, 11, 28, 1, 0, 0, 5, time.UTC), Operator: "views_1h",
			Data: map[string]any{"count": 27, "group": "p-1", "note": "a \"quoted\" é"}},
		{ID: "s/u-1/0", Type: "session_started", Key: "u-1", Time: time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC), Operator: "s"},
	}
	for _, r := range recs {
		enc := AppendRecordJSON(nil, r)
		got, err := decodeRecordJSON(enc)
		if err != nil {
			t.Fatalf("decode %s: %v", enc, err)
		}
		if again := AppendRecordJSON(nil, got); string(again) != string(enc) {
			t.Fatalf("round trip:\n got %s\nwant %s", again, enc)
		}
		if got.ID != r.ID || got.Key != r.Key || !got.Time.Equal(r.Time) {
			t.Fatalf("decoded %+v from %+v", got, r)
		}
	}
}

// Origin positions order by offset, then index.
func TestExchangePositionOrder(t *testing.T) {
	a := ExchangePosition{Offset: 10, Index: 2}
	for _, c := range []struct {
		b     ExchangePosition
		after bool
	}{
		{ExchangePosition{Offset: 10, Index: 1}, true},
		{ExchangePosition{Offset: 10, Index: 2}, false},
		{ExchangePosition{Offset: 10, Index: 3}, false},
		{ExchangePosition{Offset: 9, Index: 7}, true},
		{ExchangePosition{Offset: 11}, false},
	} {
		if got := a.after(c.b); got != c.after {
			t.Errorf("%+v after %+v = %v, want %v", a, c.b, got, c.after)
		}
	}
}
