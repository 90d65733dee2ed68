package state

import (
	"runtime"
	"testing"
)

// retailTables opens what the retail pipeline's shopper-keyed operators
// open in a partition: five value tables and three timer namespaces.
type retailTables struct {
	consent, sessions, ended, segments, abandon *Value[int64]
	sessT, segT, abT                            *Timers
}

func openRetailTables(tb testing.TB, p *Partition) *retailTables {
	return &retailTables{
		consent:  NewValue(p, "consent/consent", Int64Codec),
		sessions: NewValue(p, "sessions/sessions", Int64Codec),
		ended:    NewValue(p, "sessions/ended", Int64Codec),
		segments: NewValue(p, "segments/state", Int64Codec),
		abandon:  NewValue(p, "abandonment/state", Int64Codec),
		sessT:    mustTimers(tb, p, "sessions/timers"),
		segT:     mustTimers(tb, p, "segments/timers"),
		abT:      mustTimers(tb, p, "abandonment/timers"),
	}
}

// fill gives every key an entry in every table but ended, and a timer in
// every namespace, all due after far.
func (r *retailTables) fill(keys []string, far int64) {
	for i, k := range keys {
		r.consent.Put(k, 1)
		r.sessions.Put(k, int64(i))
		r.segments.Put(k, int64(i))
		r.abandon.Put(k, int64(i))
		r.sessT.Set(k, "end", far+int64(i), 0)
		r.segT.Set(k, "eval", far+int64(i), 0)
		r.abT.Set(k, "cart", far+int64(i), 0)
	}
}

// BenchmarkRetailEvent is the state work of one retail event over 10,000
// cached shoppers: the runtime's due-timer check of each of three timer
// namespaces, then four operators reading and writing their entry of the
// key and moving their timer. No timer is due.
func BenchmarkRetailEvent(b *testing.B) {
	db := openTest(b, b.TempDir())
	defer closeTest(b, db)
	p := db.Partition(0)
	r := openRetailTables(b, p)
	const n = 10_000
	keys := benchKeys(n)
	const far = int64(1) << 40
	r.fill(keys, far)
	checkpoint(b, db, p)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := keys[(i*7919)%n]
		at := int64(i)
		for _, t := range []*Timers{r.sessT, r.segT, r.abT} {
			if _, ok := t.PopDueForKey(k, 0, at); ok {
				b.Fatal("timer due early")
			}
		}
		if _, ok, err := r.consent.Get(k); err != nil || !ok {
			b.Fatal(err, ok)
		}
		for _, v := range []*Value[int64]{r.sessions, r.segments, r.abandon} {
			x, _, err := v.Get(k)
			if err != nil {
				b.Fatal(err)
			}
			v.Put(k, x+1)
		}
		r.sessT.Set(k, "end", far+at, 0)
		r.segT.Set(k, "eval", far+at, 0)
		r.abT.Set(k, "cart", far+at, 0)
	}
}

// BenchmarkRetailHeapPerKey reports the Go heap that the cache and timers
// of one retail shopper take (five tables, four of them holding the key,
// and three timers), clean after a flush.
func BenchmarkRetailHeapPerKey(b *testing.B) {
	const n = 10_000
	keys := benchKeys(n)
	var perKey float64
	for range b.N {
		db := openTest(b, b.TempDir())
		p := db.Partition(0)
		r := openRetailTables(b, p)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		r.fill(keys, 1<<40)
		batch := db.NewBatch()
		if err := p.Flush(batch); err != nil {
			b.Fatal(err)
		}
		if err := batch.Close(); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(r)
		runtime.KeepAlive(keys)
		closeTest(b, db)
	}
	b.ReportMetric(perKey, "heapB/key")
}
