package pipeline

import (
	"math/rand/v2"
	"testing"
	"time"
)

// appendRFC3339Nano writes what time.RFC3339Nano does, in UTC.
func TestAppendRFC3339NanoMatchesTheLayout(t *testing.T) {
	times := []time.Time{
		{},
		time.Unix(0, 0),
		time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 1, 12, 0, 0, 100_000_000, time.UTC),
		time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC),
		time.Date(2026, 3, 1, 12, 0, 0, 123_450_000, time.UTC),
		time.Date(2026, 3, 1, 12, 0, 0, 1, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999_999_999, time.FixedZone("x", 5*3600+1800)),
		time.Date(9999, 12, 31, 23, 59, 59, 10, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 5, time.UTC),
		TimeFromNanos(maxTime),
		TimeFromNanos(minTime),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		ns := r.Int64N(4_000_000_000) * 1e9
		switch r.IntN(4) {
		case 0:
		case 1:
			ns += r.Int64N(1000) * 1e6
		case 2:
			ns += r.Int64N(1e6) * 1e3
		default:
			ns += r.Int64N(1e9)
		}
		times = append(times, time.Unix(0, ns))
	}
	for _, tm := range times {
		want := tm.UTC().AppendFormat([]byte("x"), time.RFC3339Nano)
		if got := appendRFC3339Nano([]byte("x"), tm); string(got) != string(want) {
			t.Errorf("appendRFC3339Nano(%v) = %s, want %s", tm, got, want)
		}
	}
}
