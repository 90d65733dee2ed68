package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

type session struct {
	Start, Last int64
	Events      int
	Products    int
}

// sessionCodec is a hand-written Codec, as a hot table would use.
type sessionCodec struct{}

func (sessionCodec) Append(dst []byte, s session) []byte {
	dst = binary.AppendVarint(dst, s.Start)
	dst = binary.AppendVarint(dst, s.Last)
	dst = binary.AppendVarint(dst, int64(s.Events))
	return binary.AppendVarint(dst, int64(s.Products))
}

func (sessionCodec) Decode(src []byte) (session, error) {
	var f [4]int64
	for i := range f {
		v, n := binary.Varint(src)
		if n <= 0 {
			return session{}, errors.New("session codec: malformed")
		}
		f[i], src = v, src[n:]
	}
	return session{Start: f[0], Last: f[1], Events: int(f[2]), Products: int(f[3])}, nil
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%08d", i)
	}
	return keys
}

// BenchmarkValueGetPutHit is the per-event cost of reading and writing a
// cached key.
func BenchmarkValueGetPutHit(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  []TableOption
	}{{"plain", nil}, {"ttl", []TableOption{WithTTL(1<<40, nil)}}} {
		b.Run(bc.name, func(b *testing.B) {
			db := openTest(b, b.TempDir())
			defer closeTest(b, db)
			v := NewValue(db.Partition(0), "bench/v", JSONCodec[session](), bc.ttl...)
			keys := benchKeys(1024)
			for _, k := range keys {
				v.Put(k, session{})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := keys[i&1023]
				s, _, err := v.Get(k)
				if err != nil {
					b.Fatal(err)
				}
				s.Events++
				s.Last = int64(i)
				v.Put(k, s)
			}
		})
	}
}

// BenchmarkCounterAddHit is the per-event cost of a cached counter.
func BenchmarkCounterAddHit(b *testing.B) {
	db := openTest(b, b.TempDir())
	defer closeTest(b, db)
	c := NewCounter(db.Partition(0), "bench/c")
	keys := benchKeys(1024)
	b.ReportAllocs()
	for i := range b.N {
		if _, err := c.Add(keys[i&1023], 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlush1000Keys measures a checkpoint of 1,000 dirty keys: Flush
// alone (encoding into the batch) with encoding/json and with a hand-written
// codec, and Flush plus Commit without and with fsync. ns/key excludes the
// Puts that dirty the keys. The same keys are rewritten at every iteration,
// so Pebble's memtable holds many versions of each.
func BenchmarkFlush1000Keys(b *testing.B) {
	const n = 1000
	for _, bc := range []struct {
		name   string
		codec  Codec[session]
		commit bool
		sync   SyncMode
	}{
		{"flush-json", JSONCodec[session](), false, SyncNever},
		{"flush-binary", sessionCodec{}, false, SyncNever},
		{"commit-nosync-binary", sessionCodec{}, true, SyncNever},
		{"commit-sync-binary", sessionCodec{}, true, SyncCheckpoint},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := openTest(b, b.TempDir(), WithSync(bc.sync))
			defer closeTest(b, db)
			p := db.Partition(0)
			v := NewValue(p, "bench/v", bc.codec)
			keys := benchKeys(n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				for j, k := range keys {
					v.Put(k, session{Start: int64(i), Last: int64(j), Events: j})
				}
				b.StartTimer()
				batch := db.NewBatch()
				if err := p.Flush(batch); err != nil {
					b.Fatal(err)
				}
				if batch.Count() != n {
					b.Fatalf("flush wrote %d ops, want %d", batch.Count(), n)
				}
				if bc.commit {
					if err := batch.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
		})
	}
}

// BenchmarkValueGetMiss is the cost of reading a key that is not cached.
func BenchmarkValueGetMiss(b *testing.B) {
	db := openTest(b, b.TempDir(), WithSync(SyncNever))
	defer closeTest(b, db)
	p := db.Partition(0)
	v := NewValue(p, "bench/v", JSONCodec[session]())
	keys := benchKeys(100_000)
	for i, k := range keys {
		v.Put(k, session{Events: i})
	}
	checkpoint(b, db, p)
	p.Evict()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%len(keys) == 0 {
			p.Evict()
		}
		if _, ok, err := v.Get(keys[(i*7919)%len(keys)]); err != nil || !ok {
			b.Fatal(err, ok)
		}
	}
}

// BenchmarkMapGetPutHit is the per-event cost of reading and writing a
// cached map field.
func BenchmarkMapGetPutHit(b *testing.B) {
	db := openTest(b, b.TempDir())
	defer closeTest(b, db)
	m := NewMap(db.Partition(0), "bench/m", Int64Codec)
	keys := benchKeys(1024)
	fields := []string{"p1", "p2", "p3", "p4"}
	for _, k := range keys {
		for _, f := range fields {
			m.Put(k, f, 0)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k, f := keys[i&1023], fields[i&3]
		n, _, err := m.Get(k, f)
		if err != nil {
			b.Fatal(err)
		}
		m.Put(k, f, n+1)
	}
}

// BenchmarkTimersSetPop is a sessionizer's per-event timer work over 100,000
// scheduled timers: move the key's gap timer, then check the key's and the
// partition's due timers (none are due).
func BenchmarkTimersSetPop(b *testing.B) {
	db := openTest(b, b.TempDir())
	defer closeTest(b, db)
	tm := mustTimers(b, db.Partition(0), "bench/t")
	const n = 100_000
	keys := benchKeys(n)
	for i, k := range keys {
		tm.Set(k, "gap", int64(i+1), 0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Every timer is due after i.
		tm.Set(keys[i%n], "gap", int64(i+n+1), 0)
		if _, ok := tm.PopDueForKey(keys[(i+1)%n], 0, int64(i)); ok {
			b.Fatal("timer due early")
		}
		if _, ok := tm.PopDue(0, int64(i)); ok {
			b.Fatal("timer due early")
		}
	}
}
