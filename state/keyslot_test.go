package state

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkSlots checks the invariants of p's key slots: each counts its
// entries, lists only its own timers, bounds their times from below, and
// holds something (or is absent).
func checkSlots(tb testing.TB, p *Partition) {
	tb.Helper()
	for key, s := range p.slots {
		if s.key != key {
			tb.Fatalf("slot %q under key %q", s.key, key)
		}
		n := 0
		for _, x := range s.tables {
			if x != nil {
				n++
			}
		}
		if int(s.n) != n {
			tb.Fatalf("slot %q counts %d entries, holds %d", key, s.n, n)
		}
		for _, tm := range s.timers {
			if tm.slot != s {
				tb.Fatalf("slot %q lists a timer of slot %q", key, tm.slot.key)
			}
			if tm.scheduled && tm.at < s.nextAt {
				tb.Fatalf("slot %q: timer %s at %d before the bound %d", key, tm.name, tm.at, s.nextAt)
			}
		}
		if n == 0 && len(s.timers) == 0 && !s.absent {
			tb.Fatalf("slot %q is empty", key)
		}
	}
	if s := p.last; s != nil && p.slots[s.key] != s {
		tb.Fatalf("last slot %q is not in the partition", s.key)
	}
}

// TestKeySlotTablesAndTimersOfOneKey keeps two tables, a map and timers of
// two namespaces on one key, and a key that only one table holds, through
// an erasure, evictions and a restart.
func TestKeySlotTablesAndTimersOfOneKey(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	p := db.Partition(0)
	a := NewValue(p, "a", StringCodec)
	c := NewCounter(p, "c")
	m := NewMap(p, "m", StringCodec)
	ta := mustTimers(t, p, "ta")
	tb := mustTimers(t, p, "tb")

	for _, k := range []string{"k", "gone"} {
		a.Put(k, "a of "+k)
		if _, err := c.Add(k, 2); err != nil {
			t.Fatal(err)
		}
		m.Put(k, "f", "f of "+k)
		ta.Set(k, "x", 10, 0)
		tb.Set(k, "x", 20, 0) // same timer name, other namespace
	}
	c.Add("only-c", 5) // a key of one table only
	checkSlots(t, p)
	if len(p.slots) != 3 {
		t.Fatalf("%d slots, want 3 (one per key)", len(p.slots))
	}
	checkpoint(t, db, p)
	p.Evict()
	checkSlots(t, p)
	// Timers keep their keys' slots; only-c has none left.
	if _, ok := p.slots["only-c"]; ok || len(p.slots) != 2 {
		t.Fatalf("after Evict: %d slots, only-c kept %v; want 2, false", len(p.slots), ok)
	}
	if p.CachedEntries() != 0 {
		t.Fatalf("CachedEntries after Evict = %d, want 0", p.CachedEntries())
	}

	// The timers of a namespace fire alone.
	if ft, ok := ta.PopDueForKey("k", 0, 15); !ok || ft != (FiredTimer{"k", "x", 10, 0}) {
		t.Fatalf("PopDueForKey(ta, k, 15) = %v %v", ft, ok)
	}
	if _, ok := tb.PopDueForKey("k", 0, 15); ok {
		t.Fatal("tb fired before its time")
	}
	if at, _, ok := tb.Get("k", "x"); !ok || at != 20 {
		t.Fatalf("tb k/x = %d %v, want 20", at, ok)
	}

	if err := p.EraseKey("gone"); err != nil {
		t.Fatal(err)
	}
	checkSlots(t, p)
	if _, ok := mustGet(t, a, "gone"); ok {
		t.Error("a: erased key present")
	}
	if _, _, ok := tb.Get("gone", "x"); ok || ta.Len() != 0 || tb.Len() != 1 {
		t.Errorf("erased timer present %v, Len %d %d; want false, 0, 1", ok, ta.Len(), tb.Len())
	}
	p.Evict() // before the erasure is flushed: it must hold
	if n, _ := c.Get("gone"); n != 0 {
		t.Errorf("c of the erased key after Evict = %d, want 0", n)
	}
	if _, ok, _ := m.Get("gone", "f"); ok {
		t.Error("m of the erased key present after Evict")
	}
	c.Add("gone", 1) // written after the erasure
	checkpoint(t, db, p)
	// Until the next Evict, the erased key reads from the cache (the batch
	// is committed here, but a caller could read before its commit).
	if v, ok := mustGet(t, a, "gone"); ok {
		t.Errorf("a of the erased key after the flush = %q", v)
	}
	p.Evict()
	checkSlots(t, p)
	if _, ok := p.slots["gone"]; ok {
		t.Error("the erased key's slot survives its flush and an Evict")
	}
	closeTest(t, db)

	db = openTest(t, dir)
	defer closeTest(t, db)
	p = db.Partition(0)
	a = NewValue(p, "a", StringCodec)
	c = NewCounter(p, "c")
	m = NewMap(p, "m", StringCodec)
	tb = mustTimers(t, p, "tb")
	ta = mustTimers(t, p, "ta")
	checkSlots(t, p)
	if v, ok := mustGet(t, a, "k"); !ok || v != "a of k" {
		t.Errorf("a k = %q %v", v, ok)
	}
	for k, want := range map[string]int64{"k": 2, "gone": 1, "only-c": 5} {
		if n, err := c.Get(k); err != nil || n != want {
			t.Errorf("c %s = %d %v, want %d", k, n, err, want)
		}
	}
	if fs, vs := fieldsOf(t, m, "k"); !slices.Equal(fs, []string{"f"}) || vs[0] != "f of k" {
		t.Errorf("m k = %v %v", fs, vs)
	}
	if fs, _ := fieldsOf(t, m, "gone"); len(fs) != 0 {
		t.Errorf("m gone = %v, want none", fs)
	}
	if _, ok := mustGet(t, a, "only-c"); ok {
		t.Error("a holds only-c")
	}
	if ta.Len() != 0 || tb.Len() != 1 {
		t.Errorf("after restart: Len %d %d, want 0 1", ta.Len(), tb.Len())
	}
	if ft, ok := tb.PopDueForKey("k", 0, 20); !ok || ft != (FiredTimer{"k", "x", 20, 0}) {
		t.Errorf("tb PopDueForKey(k, 20) = %v %v", ft, ok)
	}
	checkSlots(t, p)
}

// TestPopDueForKeyBound moves a key's timers later and earlier across
// namespaces: the bound that spares looking at a key's timers must never
// hide a due one.
func TestPopDueForKeyBound(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(0)
	t1 := mustTimers(t, p, "t1")
	t2 := mustTimers(t, p, "t2")
	t1.Set("other", "x", 0, 0) // keeps the heaps' tops due
	t2.Set("other", "x", 0, 0)

	t1.Set("k", "x", 100, 0)
	if _, ok := t1.PopDueForKey("k", 0, 50); ok {
		t.Fatal("fired at 50 a timer of 100")
	}
	if s := p.slots["k"]; s.nextAt != 100 {
		t.Fatalf("bound %d, want 100", s.nextAt)
	}
	t2.Set("k", "y", 10, 0) // earlier, in another namespace
	if _, ok := t1.PopDueForKey("k", 0, 20); ok {
		t.Fatal("t1 fired t2's timer")
	}
	if ft, ok := t2.PopDueForKey("k", 0, 20); !ok || ft != (FiredTimer{"k", "y", 10, 0}) {
		t.Fatalf("t2 PopDueForKey(k, 20) = %v %v", ft, ok)
	}
	t1.Set("k", "x", 200, 0) // later: the bound stays behind
	t1.Set("k", "x", 30, 0)  // earlier again
	if ft, ok := t1.PopDueForKey("k", 0, 40); !ok || ft != (FiredTimer{"k", "x", 30, 0}) {
		t.Fatalf("t1 PopDueForKey(k, 40) = %v %v", ft, ok)
	}
	t1.Set("k", "x", 50, 0)
	t1.Set("k", "x", 100, 0) // later: its heap entry stays at 50
	if _, ok := t1.PopDueForKey("k", 0, 60); ok {
		t.Fatal("fired at 60 a timer of 100")
	}
	t1.Set("k", "x", 70, 0) // earlier, still after its heap entry
	if ft, ok := t1.PopDueForKey("k", 0, 75); !ok || ft != (FiredTimer{"k", "x", 70, 0}) {
		t.Fatalf("t1 PopDueForKey(k, 75) = %v %v", ft, ok)
	}
	t1.Set("k", "p", 5, 1) // processing time
	if _, ok := t1.PopDueForKey("k", 0, 40); ok {
		t.Fatal("PopDueForKey of event time fired a processing-time timer")
	}
	if ft, ok := t1.PopDueForKey("k", 1, 40); !ok || ft != (FiredTimer{"k", "p", 5, 1}) {
		t.Fatalf("t1 PopDueForKey(k, 1, 40) = %v %v", ft, ok)
	}
	if err := p.EraseKey("k"); err != nil {
		t.Fatal(err)
	}
	t1.Set("k", "z", 60, 0)
	if ft, ok := t1.PopDueForKey("k", 0, 60); !ok || ft != (FiredTimer{"k", "z", 60, 0}) {
		t.Fatalf("after erasure: PopDueForKey(k, 60) = %v %v", ft, ok)
	}
	checkSlots(t, p)
}

// TestKeySlotModel runs random operations on two values, a map and two
// timer namespaces sharing few keys against a plain model, with erasures,
// evictions, checkpoints and crashes, and compares every answer.
func TestKeySlotModel(t *testing.T) {
	type tid struct {
		ns        int
		key, name string
	}
	type tval struct {
		at     int64
		domain uint8
	}
	type mid struct{ key, field string }
	type model struct {
		vals   [2]map[string]string
		fields map[mid]string
		timers map[tid]tval
	}
	clone := func(m model) model {
		return model{
			vals:   [2]map[string]string{maps.Clone(m.vals[0]), maps.Clone(m.vals[1])},
			fields: maps.Clone(m.fields),
			timers: maps.Clone(m.timers),
		}
	}
	cur := model{
		vals:   [2]map[string]string{{}, {}},
		fields: map[mid]string{},
		timers: map[tid]tval{},
	}
	committed := clone(cur)

	dir := t.TempDir()
	db := openTest(t, dir, WithSync(SyncNever))
	defer func() { closeTest(t, db) }()
	var (
		p  *Partition
		vs [2]*Value[string]
		m  *Map[string]
		ts [2]*Timers
	)
	open := func() {
		p = db.Partition(0)
		vs = [2]*Value[string]{NewValue(p, "v0", StringCodec), NewValue(p, "v1", StringCodec)}
		m = NewMap(p, "m", StringCodec)
		ts = [2]*Timers{mustTimers(t, p, "t0"), mustTimers(t, p, "t1")}
	}
	open()

	rng := rand.New(rand.NewPCG(5, 6))
	keys := []string{"a", "b", "c", "d"}
	names := []string{"x", "y"}
	modelPop := func(ns int, key string, domain uint8, upTo int64) (FiredTimer, bool) {
		var best *FiredTimer
		for id, v := range cur.timers {
			if id.ns != ns || id.key != key || v.domain != domain || v.at > upTo {
				continue
			}
			if best == nil || v.at < best.At || (v.at == best.At && id.name < best.Name) {
				best = &FiredTimer{Key: key, Name: id.name, At: v.at, Domain: domain}
			}
		}
		if best == nil {
			return FiredTimer{}, false
		}
		delete(cur.timers, tid{ns, key, best.Name})
		return *best, true
	}
	var pending *Batch // flushed, not committed yet
	var pendingModel model
	commitPending := func() {
		if pending == nil {
			return
		}
		if err := pending.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := pending.Close(); err != nil {
			t.Fatal(err)
		}
		pending, committed = nil, pendingModel
	}
	for step := range 20_000 {
		k, n := keys[rng.IntN(len(keys))], names[rng.IntN(len(names))]
		i := rng.IntN(2)
		switch op := rng.IntN(100); {
		case op < 12:
			val := string(rune('A' + rng.IntN(26)))
			vs[i].Put(k, val)
			cur.vals[i][k] = val
		case op < 16:
			vs[i].Delete(k)
			delete(cur.vals[i], k)
		case op < 26:
			got, ok := mustGet(t, vs[i], k)
			want, wok := cur.vals[i][k]
			if got != want || ok != wok {
				t.Fatalf("step %d: v%d.Get(%s) = %q %v, want %q %v", step, i, k, got, ok, want, wok)
			}
		case op < 32:
			val := string(rune('a' + rng.IntN(26)))
			m.Put(k, n, val)
			cur.fields[mid{k, n}] = val
		case op < 34:
			m.Delete(k, n)
			delete(cur.fields, mid{k, n})
		case op < 40:
			got, ok, err := m.Get(k, n)
			want, wok := cur.fields[mid{k, n}]
			if err != nil || got != want || ok != wok {
				t.Fatalf("step %d: m.Get(%s, %s) = %q %v %v, want %q %v", step, k, n, got, ok, err, want, wok)
			}
		case op < 55:
			at, domain := int64(rng.IntN(100)), uint8(rng.IntN(2))
			ts[i].Set(k, n, at, domain)
			cur.timers[tid{i, k, n}] = tval{at, domain}
		case op < 58:
			ts[i].Delete(k, n)
			delete(cur.timers, tid{i, k, n})
		case op < 70:
			upTo, domain := int64(rng.IntN(100)), uint8(rng.IntN(2))
			got, ok := ts[i].PopDueForKey(k, domain, upTo)
			want, wok := modelPop(i, k, domain, upTo)
			if got != want || ok != wok {
				t.Fatalf("step %d: t%d.PopDueForKey(%s, %d, %d) = %v %v, want %v %v", step, i, k, domain, upTo, got, ok, want, wok)
			}
		case op < 74:
			at, d, ok := ts[i].Get(k, n)
			w, wok := cur.timers[tid{i, k, n}]
			if ok != wok || (ok && (at != w.at || d != w.domain)) {
				t.Fatalf("step %d: t%d.Get(%s, %s) = %d %d %v, want %v %v", step, i, k, n, at, d, ok, w, wok)
			}
		case op < 80:
			if err := p.EraseKey(k); err != nil {
				t.Fatal(err)
			}
			delete(cur.vals[0], k)
			delete(cur.vals[1], k)
			for id := range cur.fields {
				if id.key == k {
					delete(cur.fields, id)
				}
			}
			for id := range cur.timers {
				if id.key == k {
					delete(cur.timers, id)
				}
			}
		case op < 86:
			if pending == nil { // Evict must wait for the commit of a flush
				p.Evict()
			}
		case op < 90:
			// A flush whose batch commits a few operations later.
			if pending == nil {
				pending = db.NewBatch()
				if err := p.Flush(pending); err != nil {
					t.Fatal(err)
				}
				pendingModel = clone(cur)
				break
			}
			commitPending()
		case op < 98:
			commitPending()
			checkpoint(t, db, p)
			committed = clone(cur)
		default:
			// Crash: drop what was not committed.
			if pending != nil {
				if err := pending.Close(); err != nil {
					t.Fatal(err)
				}
				pending = nil
			}
			closeTest(t, db)
			db = openTest(t, dir, WithSync(SyncNever))
			open()
			cur = clone(committed)
		}
		checkSlots(t, p)
		for j, tm := range ts {
			want := 0
			for id := range cur.timers {
				if id.ns == j {
					want++
				}
			}
			if tm.Len() != want {
				t.Fatalf("step %d: t%d.Len = %d, want %d", step, j, tm.Len(), want)
			}
		}
	}
	commitPending()
}
