package benchmarks

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sluicehq/sluice/pipeline"
)

// Latency is a distribution of event-to-output latencies.
type Latency struct {
	// Count is the number of outputs measured.
	Count int64
	// P50, P99 and P999 are quantiles; Max is the largest latency seen.
	P50, P99, P999, Max time.Duration
	// Stale counts outputs whose ingest stamp was newer than the output
	// itself: the in-memory source had already delivered the same pool
	// event again. It should be 0; when it is not, the pool is too small
	// for the latencies seen and the quantiles are too low.
	Stale int64
	// Unmatched counts outputs whose id names no generated event; they are
	// not in the distribution.
	Unmatched int64
}

// latencyRecorder measures event-to-output latency without touching the
// runtime: the source stamps each batch of events with the (monotonic)
// time at which it delivered it, and the sink maps each record back to the
// stamp through the record id, whose prefix is the id of the event that
// caused it ("g1-123/count/1" comes from the 123rd generated event).
//
// The cost stays off the workers' per-event path as far as it can: one
// clock read per sink Write (all the records of one Write are output at
// the same moment), an id parse and a table load per record, and one
// histogram update and one lock per run of records of the same source
// batch, which is the whole Write here.
type latencyRecorder struct {
	base time.Time
	// stamps[i] is the delivery time (ns since base) of the source batch
	// holding event index i*per (0-based); the event of id index n (1-based)
	// is at event index (n-1) % mod.
	stamps []atomic.Int64
	per    int
	mod    int

	mu    sync.Mutex
	hist  *hdrhistogram.Histogram
	stale int64
	bad   int64
}

// newLatencyRecorder makes a recorder for events whose id indexes, minus
// one and modulo mod, fall in batches of per events.
func newLatencyRecorder(mod, per int) *latencyRecorder {
	return &latencyRecorder{
		base:   time.Now(),
		stamps: make([]atomic.Int64, (mod+per-1)/per),
		per:    per,
		mod:    mod,
		// 1 ns to 10 minutes, 3 significant digits.
		hist: hdrhistogram.New(1, int64(10*time.Minute), 3),
	}
}

// now returns the monotonic time in ns since the recorder was made.
func (l *latencyRecorder) now() int64 { return int64(time.Since(l.base)) }

// stamp records that the events from event index first (0-based, modulo
// mod) to first+n were delivered at t.
func (l *latencyRecorder) stamp(first, n int, t int64) {
	first %= l.mod
	for i := first / l.per; i <= (first+n-1)/l.per && i < len(l.stamps); i++ {
		l.stamps[i].Store(t)
	}
}

// observe records the latency of records output at time now.
func (l *latencyRecorder) observe(records []pipeline.SinkRecord, now int64) {
	var (
		run      int64 // stamp of the current run of records
		runN     int64
		stale    int64
		bad      int64
		localBuf [8]struct{ v, n int64 }
		local    = localBuf[:0]
	)
	for i := range records {
		n, ok := eventIndex(records[i].ID)
		if !ok {
			bad++
			continue
		}
		s := l.stamps[((n-1)%l.mod)/l.per].Load()
		if s == run && runN > 0 {
			runN++
			continue
		}
		if runN > 0 {
			local = append(local, struct{ v, n int64 }{now - run, runN})
		}
		run, runN = s, 1
	}
	if runN > 0 {
		local = append(local, struct{ v, n int64 }{now - run, runN})
	}
	l.mu.Lock()
	for _, r := range local {
		if r.v < 0 {
			stale += r.n
			continue
		}
		_ = l.hist.RecordValues(max(r.v, 1), r.n)
	}
	l.stale += stale
	l.bad += bad
	l.mu.Unlock()
}

// result returns the distribution so far.
func (l *latencyRecorder) result() Latency {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hist
	return Latency{
		Count:     h.TotalCount(),
		P50:       time.Duration(h.ValueAtQuantile(50)),
		P99:       time.Duration(h.ValueAtQuantile(99)),
		P999:      time.Duration(h.ValueAtQuantile(99.9)),
		Max:       time.Duration(h.Max()),
		Stale:     l.stale,
		Unmatched: l.bad,
	}
}

// eventIndex returns n for a record id that starts with a generated event
// id "g<seed>-<n>" followed by "/" (or the end of the id).
func eventIndex(id string) (int, bool) {
	if len(id) < 4 || id[0] != 'g' {
		return 0, false
	}
	i := 1
	for i < len(id) && id[i] >= '0' && id[i] <= '9' {
		i++
	}
	if i == 1 || i == len(id) || id[i] != '-' {
		return 0, false
	}
	i++
	start, n := i, 0
	for ; i < len(id) && id[i] >= '0' && id[i] <= '9'; i++ {
		if i-start >= 18 {
			return 0, false
		}
		n = n*10 + int(id[i]-'0')
	}
	if i == start || (i < len(id) && id[i] != '/') || n < 1 {
		return 0, false
	}
	return n, true
}
