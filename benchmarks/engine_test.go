package benchmarks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestEventIndex(t *testing.T) {
	for _, c := range []struct {
		id   string
		want int
		ok   bool
	}{
		{"g1-1", 1, true},
		{"g1-123/count/1", 123, true},
		{"g42-1000000/count/7", 1000000, true},
		{"g1-0/count/1", 0, false},
		{"g1-/count/1", 0, false},
		{"123/count/1", 0, false},
		{"timer:u-1/gap@17/sessions/1", 0, false},
		{"g1-12x/count/1", 0, false},
		{"", 0, false},
		{"g1-99999999999999999999/count/1", 0, false},
	} {
		got, ok := eventIndex(c.id)
		if got != c.want || ok != c.ok {
			t.Errorf("eventIndex(%q) = %d, %v; want %d, %v", c.id, got, ok, c.want, c.ok)
		}
	}
}

func records(ids ...string) []pipeline.SinkRecord {
	rs := make([]pipeline.SinkRecord, len(ids))
	for i, id := range ids {
		rs[i] = pipeline.SinkRecord{ID: id}
	}
	return rs
}

func TestLatencyRecorder(t *testing.T) {
	l := newLatencyRecorder(4096, 1024)
	l.stamp(0, 1024, 1_000)    // events 1..1024
	l.stamp(1024, 1024, 5_000) // events 1025..2048
	l.stamp(4096, 1024, 9_000) // the pool again: events 1..1024, second round
	// Two records of the second batch and one of the first, output at 11 µs.
	l.observe(records("g1-1025/count/1", "g1-2048/count/1", "g1-7/count/1", "other/1"), 11_000)
	// A record stamped after its output: the pool came round too soon.
	l.observe(records("g1-8/count/1"), 8_000)
	got := l.result()
	if got.Count != 3 || got.Stale != 1 || got.Unmatched != 1 {
		t.Fatalf("count %d, stale %d, unmatched %d; want 3, 1, 1", got.Count, got.Stale, got.Unmatched)
	}
	// 6 µs twice (events 1025, 2048), 2 µs once (event 7, second round).
	if got.P50 < 5990 || got.P50 > 6010 || got.Max < 5990 || got.Max > 6010 {
		t.Errorf("p50 %v, max %v; want 6µs", got.P50, got.Max)
	}
}

func TestEngineRunCountsEveryEvent(t *testing.T) {
	e, err := NewEngine(EngineConfig{Users: 200, Pool: 2 * BatchSize, Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		events int
		rate   float64
	}{
		{1500, 0},      // part of the pool, a partial last batch
		{5 * 1024, 0},  // round the pool, twice and a half
		{3000, 100000}, // paced
	} {
		t.Run(fmt.Sprintf("%d@%g", c.events, c.rate), func(t *testing.T) {
			res, err := e.Run(context.Background(), c.events, c.rate)
			if err != nil {
				t.Fatal(err)
			}
			n := int64(c.events)
			if res.Events != n || res.Records != n {
				t.Errorf("events %d, records %d; want %d", res.Events, res.Records, n)
			}
			if got := res.Latency.Count + res.Latency.Stale; got != n || res.Latency.Unmatched != 0 {
				t.Errorf("latency measured for %d records (%d unmatched), want %d", got, res.Latency.Unmatched, n)
			}
			if res.Checkpoints < 1 {
				t.Errorf("%d checkpoints, want the final one at least", res.Checkpoints)
			}
		})
	}
}

func TestEndToEndAndLimitProcessEveryLine(t *testing.T) {
	e, err := NewEndToEnd(EndToEndConfig{Events: 3000, Users: 200, Workers: 3, Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, err := e.RunPipeline(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 3000 || res.Records != 3000 || res.Latency.Count != 3000 || res.Latency.Unmatched != 0 {
		t.Errorf("pipeline: events %d, records %d, latencies %d (%d unmatched); want 3000",
			res.Events, res.Records, res.Latency.Count, res.Latency.Unmatched)
	}
	lim, err := e.RunLimit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if lim.Events != 3000 {
		t.Errorf("limit: %d events, want 3000", lim.Events)
	}
}

func TestLineBoundsSplitAtLineEnds(t *testing.T) {
	path := t.TempDir() + "/lines"
	data := "a\nbb\nccc\ndddd\n\neeeee"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 8; n++ {
		b, err := lineBounds(path, int64(len(data)), n)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != n+1 || b[0] != 0 || b[n] != int64(len(data)) {
			t.Fatalf("n=%d: bounds %v", n, b)
		}
		for _, off := range b[1:n] {
			if off != int64(len(data)) && data[off-1] != '\n' {
				t.Errorf("n=%d: bound %d is not at a line start (bounds %v)", n, off, b)
			}
		}
	}
}

// The benchmarks report per event: ns/op is the run's wall time per event
// (without the set-up of the pipeline and its data), plus events/s,
// allocs/event and the latency quantiles. Fix the event count with
// -benchtime, e.g. -benchtime 2000000x.

var engine struct {
	once sync.Once
	e    *Engine
	err  error
}

func BenchmarkEngine(b *testing.B) {
	engine.once.Do(func() { engine.e, engine.err = NewEngine(EngineConfig{Logger: quiet}) })
	if engine.err != nil {
		b.Fatal(engine.err)
	}
	res, err := engine.e.Run(context.Background(), b.N, 0)
	if err != nil {
		b.Fatal(err)
	}
	report(b, res)
}

// inputs holds the end-to-end inputs made so far, by event count, for
// BenchmarkEndToEnd and BenchmarkLimit to share.
var inputs struct {
	sync.Mutex
	byN map[int]*EndToEnd
}

func input(b *testing.B) *EndToEnd {
	b.StopTimer()
	defer b.StartTimer()
	inputs.Lock()
	defer inputs.Unlock()
	if e := inputs.byN[b.N]; e != nil {
		return e
	}
	e, err := NewEndToEnd(EndToEndConfig{Events: b.N, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	if inputs.byN == nil {
		inputs.byN = make(map[int]*EndToEnd)
	}
	inputs.byN[b.N] = e
	return e
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, e := range inputs.byN {
		e.Close()
	}
	os.Exit(code)
}

func BenchmarkEndToEnd(b *testing.B) {
	e := input(b)
	res, err := e.RunPipeline(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	report(b, res)
}

func BenchmarkLimit(b *testing.B) {
	e := input(b)
	res, err := e.RunLimit(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	report(b, res)
}

func report(b *testing.B, res Result) {
	b.ReportMetric(float64(res.Elapsed.Nanoseconds())/float64(res.Events), "ns/op")
	b.ReportMetric(res.EventsPerSec, "events/s")
	b.ReportMetric(res.AllocsPerEvent, "allocs/event")
	b.ReportMetric(float64(res.CPUPerEvent.Nanoseconds()), "cpu-ns/event")
	if res.Latency.Count > 0 {
		b.ReportMetric(float64(res.Latency.P50)/float64(time.Microsecond), "p50-µs")
		b.ReportMetric(float64(res.Latency.P99)/float64(time.Microsecond), "p99-µs")
	}
}
