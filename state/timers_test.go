package state

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

func popAll(t *Timers, domain uint8, upTo int64) []FiredTimer {
	var out []FiredTimer
	for {
		ft, ok := t.PopDue(domain, upTo)
		if !ok {
			return out
		}
		out = append(out, ft)
	}
}

func TestTimersOrder(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	tm := mustTimers(t, db.Partition(0), "t")
	tm.Set("b", "x", 10, 0)
	tm.Set("a", "y", 10, 0)
	tm.Set("a", "x", 10, 0)
	tm.Set("c", "x", 5, 0)
	tm.Set("d", "x", 7, 1) // other domain
	tm.Set("e", "x", 30, 0)
	tm.Set("e", "x", 1, 0) // moved earlier
	tm.Set("f", "x", 2, 0)
	tm.Set("f", "x", 40, 1) // moved to the other domain
	tm.Set("g", "x", 3, 0)
	tm.Delete("g", "x")
	tm.Delete("g", "nope")

	if tm.Len() != 7 {
		t.Errorf("Len = %d, want 7", tm.Len())
	}
	if at, ok := tm.Next(0); !ok || at != 1 {
		t.Errorf("Next(0) = %d, %v; want 1", at, ok)
	}
	if at, ok := tm.Next(1); !ok || at != 7 {
		t.Errorf("Next(1) = %d, %v; want 7", at, ok)
	}
	if _, ok := tm.Next(9); ok {
		t.Error("Next of an unused domain reported a timer")
	}
	got := popAll(tm, 0, 10)
	want := []FiredTimer{
		{"e", "x", 1, 0}, {"c", "x", 5, 0},
		{"a", "x", 10, 0}, {"a", "y", 10, 0}, {"b", "x", 10, 0},
	}
	if !slices.Equal(got, want) {
		t.Errorf("PopDue(0, 10) = %v, want %v", got, want)
	}
	if got := popAll(tm, 1, 39); !slices.Equal(got, []FiredTimer{{"d", "x", 7, 1}}) {
		t.Errorf("PopDue(1, 39) = %v", got)
	}
	if tm.Len() != 1 {
		t.Errorf("Len = %d, want 1 (f/x at 40)", tm.Len())
	}
	if at, d, ok := tm.Get("f", "x"); !ok || at != 40 || d != 1 {
		t.Errorf("Get(f, x) = %d %d %v; want 40 1", at, d, ok)
	}
}

func TestTimersPopDueForKey(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	tm := mustTimers(t, db.Partition(0), "t")
	tm.Set("a", "late", 20, 0)
	tm.Set("a", "z", 5, 0)
	tm.Set("a", "m", 5, 0)
	tm.Set("a", "proc", 1, 1)
	tm.Set("b", "x", 1, 0)

	var got []FiredTimer
	for {
		ft, ok := tm.PopDueForKey("a", 0, 10)
		if !ok {
			break
		}
		got = append(got, ft)
	}
	if want := []FiredTimer{{"a", "m", 5, 0}, {"a", "z", 5, 0}}; !slices.Equal(got, want) {
		t.Errorf("PopDueForKey(a, 0, 10) = %v, want %v", got, want)
	}
	if _, ok := tm.PopDueForKey("c", 0, 100); ok {
		t.Error("PopDueForKey of a key without timers fired")
	}
	// The heap agrees: b/x is next in domain 0, then a/late.
	if got := popAll(tm, 0, 100); !slices.Equal(got, []FiredTimer{{"b", "x", 1, 0}, {"a", "late", 20, 0}}) {
		t.Errorf("PopDue after PopDueForKey = %v", got)
	}
	if tm.Len() != 1 {
		t.Errorf("Len = %d, want 1", tm.Len())
	}
}

func TestTimersPersistPops(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	p := db.Partition(0)
	tm := mustTimers(t, p, "t")
	other := mustTimers(t, p, "u")
	for i := range 10 {
		tm.Set(fmt.Sprint("k", i), "x", int64(i), 0)
	}
	other.Set("k1", "x", 99, 0) // same key and name in another namespace
	checkpoint(t, db, p)
	if got := popAll(tm, 0, 4); len(got) != 5 {
		t.Fatalf("popped %d timers, want 5", len(got))
	}
	tm.Set("k0", "x", 50, 0) // fired, then set again before the flush
	tm.Delete("k9", "x")
	checkpoint(t, db, p)
	closeTest(t, db)

	db = openTest(t, dir)
	defer closeTest(t, db)
	p = db.Partition(0)
	tm = mustTimers(t, p, "t")
	other = mustTimers(t, p, "u")
	got := popAll(tm, 0, 100)
	want := []FiredTimer{{"k5", "x", 5, 0}, {"k6", "x", 6, 0}, {"k7", "x", 7, 0}, {"k8", "x", 8, 0}, {"k0", "x", 50, 0}}
	if !slices.Equal(got, want) {
		t.Errorf("after restart: %v, want %v", got, want)
	}
	if at, _, ok := other.Get("k1", "x"); !ok || at != 99 || other.Len() != 1 {
		t.Errorf("namespace u: k1/x at %d, %v, %d timers; want 99, 1 timer", at, ok, other.Len())
	}
}

// TestTimersModel runs random operations against a plain model, with
// checkpoints and restarts, and compares every answer.
func TestTimersModel(t *testing.T) {
	type id struct{ key, name string }
	type val struct {
		at     int64
		domain uint8
	}
	dir := t.TempDir()
	db := openTest(t, dir, WithSync(SyncNever))
	defer func() { closeTest(t, db) }()
	p := db.Partition(0)
	tm := mustTimers(t, p, "t")
	model := map[id]val{}
	committed := map[id]val{}
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "b", "c", "d", "e", "f"}
	names := []string{"x", "y", "z"}

	modelPop := func(key string, domain uint8, upTo int64) (FiredTimer, bool) {
		var best *FiredTimer
		for k, v := range model {
			if v.domain != domain || v.at > upTo || (key != "" && k.key != key) {
				continue
			}
			c := FiredTimer{Key: k.key, Name: k.name, At: v.at, Domain: v.domain}
			if best == nil || cmp.Or(cmp.Compare(c.At, best.At), cmp.Compare(c.Key, best.Key), cmp.Compare(c.Name, best.Name)) < 0 {
				best = &c
			}
		}
		if best == nil {
			return FiredTimer{}, false
		}
		delete(model, id{best.Key, best.Name})
		return *best, true
	}

	for step := range 5000 {
		k, n := keys[rng.IntN(len(keys))], names[rng.IntN(len(names))]
		domain := uint8(rng.IntN(2))
		switch op := rng.IntN(100); {
		case op < 40:
			at := int64(rng.IntN(50))
			tm.Set(k, n, at, domain)
			model[id{k, n}] = val{at, domain}
		case op < 50:
			tm.Delete(k, n)
			delete(model, id{k, n})
		case op < 65:
			upTo := int64(rng.IntN(50))
			got, ok := tm.PopDue(domain, upTo)
			want, wok := modelPop("", domain, upTo)
			if got != want || ok != wok {
				t.Fatalf("step %d: PopDue(%d, %d) = %v %v, want %v %v", step, domain, upTo, got, ok, want, wok)
			}
		case op < 75:
			upTo := int64(rng.IntN(50))
			got, ok := tm.PopDueForKey(k, domain, upTo)
			want, wok := modelPop(k, domain, upTo)
			if got != want || ok != wok {
				t.Fatalf("step %d: PopDueForKey(%s, %d, %d) = %v %v, want %v %v", step, k, domain, upTo, got, ok, want, wok)
			}
		case op < 85:
			at, d, ok := tm.Get(k, n)
			w, wok := model[id{k, n}]
			if ok != wok || (ok && (at != w.at || d != w.domain)) {
				t.Fatalf("step %d: Get(%s, %s) = %d %d %v, want %v %v", step, k, n, at, d, ok, w, wok)
			}
		case op < 90:
			if err := p.EraseKey(k); err != nil {
				t.Fatal(err)
			}
			for i := range model {
				if i.key == k {
					delete(model, i)
				}
			}
		case op < 97:
			checkpoint(t, db, p)
			committed = maps.Clone(model)
		default:
			// Crash: drop what was not committed.
			closeTest(t, db)
			db = openTest(t, dir, WithSync(SyncNever))
			p = db.Partition(0)
			tm = mustTimers(t, p, "t")
			model = maps.Clone(committed)
		}
		if tm.Len() != len(model) {
			t.Fatalf("step %d: Len = %d, want %d", step, tm.Len(), len(model))
		}
		for d := range uint8(2) {
			at, ok := tm.Next(d)
			var want int64 = -1
			for _, v := range model {
				if v.domain == d && (want < 0 || v.at < want) {
					want = v.at
				}
			}
			if ok != (want >= 0) || (ok && at != want) {
				t.Fatalf("step %d: Next(%d) = %d %v, want %d", step, d, at, ok, want)
			}
		}
	}
}

// TestTimersManyMoves moves and deletes enough timers for the heap to drop
// its stale entries, and checks the firing order and the heap's size.
func TestTimersManyMoves(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	tm := mustTimers(t, db.Partition(0), "t")
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[string]int64{}
	for round := range 5 {
		for i := range 2000 {
			k := fmt.Sprint("k", i)
			if round == 4 && i%3 == 0 {
				tm.Delete(k, "x")
				delete(want, k)
				continue
			}
			at := rng.Int64N(1_000_000)
			tm.Set(k, "x", at, 0)
			want[k] = at
		}
	}
	if n := len(tm.heaps[0].es); n > 2*len(want)+minRebuild {
		t.Errorf("heap holds %d entries for %d timers", n, len(want))
	}
	var expect []FiredTimer
	for k, at := range want {
		expect = append(expect, FiredTimer{Key: k, Name: "x", At: at})
	}
	slices.SortFunc(expect, func(a, b FiredTimer) int {
		return cmp.Or(cmp.Compare(a.At, b.At), cmp.Compare(a.Key, b.Key))
	})
	if got := popAll(tm, 0, 1_000_000); !slices.Equal(got, expect) {
		t.Errorf("fired %d timers, want %d in order", len(got), len(expect))
	}
	if tm.Len() != 0 || len(tm.heaps[0].es) != 0 {
		t.Errorf("after firing all: Len %d, %d heap entries", tm.Len(), len(tm.heaps[0].es))
	}
}
