package state

import (
	"bytes"
	"testing"
)

func TestEraseKey(t *testing.T) {
	const victim, other = "alice-7Q2", "bob-3Z9"
	dir := t.TempDir()
	db := openTest(t, dir)
	p := db.Partition(0)
	v := NewValue(p, "op/profile", JSONCodec[profile]())
	c := NewCounter(p, "op/count")
	m := NewMap(p, "op/views", StringCodec)
	old := NewValue(p, "old/seen", StringCodec) // not opened after the restart
	t1 := mustTimers(t, p, "op/timers")
	t2 := mustTimers(t, p, "old/timers") // opened only after the erasure
	for _, k := range []string{victim, other} {
		v.Put(k, profile{Name: "name of " + k})
		if _, err := c.Add(k, 3); err != nil {
			t.Fatal(err)
		}
		m.Put(k, "p1", "viewed by "+k)
		m.Put(k, "p2", "viewed by "+k)
		old.Put(k, k)
		t1.Set(k, "gap", 10, 0)
		t2.Set(k, "poll", 20, 1)
	}
	checkpoint(t, db, p)
	closeTest(t, db)

	db = openTest(t, dir)
	defer closeTest(t, db)
	p = db.Partition(0)
	v = NewValue(p, "op/profile", JSONCodec[profile]())
	c = NewCounter(p, "op/count")
	m = NewMap(p, "op/views", StringCodec)
	t1 = mustTimers(t, p, "op/timers")
	if _, ok := mustGet(t, v, victim); !ok { // cached before the erasure
		t.Fatal("victim missing before the erasure")
	}
	m.Put(victim, "p3", "dirty")

	if err := p.EraseKey(victim); err != nil {
		t.Fatal(err)
	}
	checkErased := func(stage string) {
		t.Helper()
		if got, ok := mustGet(t, v, victim); ok {
			t.Errorf("%s: value = %+v, want absent", stage, got)
		}
		if n, err := c.Get(victim); err != nil || n != 0 {
			t.Errorf("%s: counter = %d, %v; want 0", stage, n, err)
		}
		if _, ok, err := m.Get(victim, "p1"); err != nil || ok {
			t.Errorf("%s: map field p1 present=%v, %v; want absent", stage, ok, err)
		}
		if fs, _ := fieldsOf(t, m, victim); len(fs) != 0 {
			t.Errorf("%s: map fields %v, want none", stage, fs)
		}
		if _, _, ok := t1.Get(victim, "gap"); ok || t1.Len() != 1 {
			t.Errorf("%s: victim timer present=%v, %d timers; want absent, 1", stage, ok, t1.Len())
		}
	}
	checkErased("after EraseKey")
	p.Evict()
	checkErased("after Evict")

	// Tables and timers opened after the erasure do not see the key either.
	old = NewValue(p, "old/seen", StringCodec)
	if got, ok := mustGet(t, old, victim); ok {
		t.Errorf("unopened table: value %q, want absent", got)
	}
	t2 = mustTimers(t, p, "old/timers")
	if _, _, ok := t2.Get(victim, "poll"); ok || t2.Len() != 1 {
		t.Errorf("unopened timers: victim timer present=%v, %d timers; want absent, 1", ok, t2.Len())
	}
	if got, ok := mustGet(t, old, other); !ok || got != other {
		t.Errorf("other key: %q, %v; want kept", got, ok)
	}

	checkpoint(t, db, p)
	checkErased("after checkpoint")
	if err := db.Compact(); err != nil {
		t.Fatal(err)
	}
	var otherKeys int
	if err := db.ScanRaw(func(key, value []byte) bool {
		if bytes.Contains(key, []byte(victim)) || bytes.Contains(value, []byte(victim)) {
			t.Errorf("raw entry %q = %q holds the erased key", key, value)
		}
		if bytes.Contains(key, []byte(other)) {
			otherKeys++
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	// other: value, counter, 2 map fields, old/seen, 2 timers.
	if otherKeys != 7 {
		t.Errorf("found %d raw keys of the other key, want 7", otherKeys)
	}
	if n := db.pdb.Metrics().Keys.TombstoneCount; n != 0 {
		t.Errorf("%d tombstones left after compaction, want 0", n)
	}
}

func TestEraseThenWrite(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	p := db.Partition(0)
	v := NewValue(p, "v", StringCodec)
	m := NewMap(p, "m", StringCodec)
	tm := mustTimers(t, p, "t")
	v.Put("k", "before")
	m.Put("k", "a", "before")
	m.Put("k", "b", "before")
	tm.Set("k", "x", 1, 0)
	checkpoint(t, db, p)

	if err := p.EraseKey("k"); err != nil {
		t.Fatal(err)
	}
	v.Put("k", "after")
	m.Put("k", "b", "after")
	tm.Set("k", "y", 2, 0)
	checkpoint(t, db, p)
	p.Evict()
	if got, _ := mustGet(t, v, "k"); got != "after" {
		t.Errorf("value = %q, want after", got)
	}
	closeTest(t, db)

	db = openTest(t, dir)
	defer closeTest(t, db)
	p = db.Partition(0)
	v = NewValue(p, "v", StringCodec)
	m = NewMap(p, "m", StringCodec)
	tm = mustTimers(t, p, "t")
	if got, ok := mustGet(t, v, "k"); !ok || got != "after" {
		t.Errorf("value = %q, %v; want after", got, ok)
	}
	if fs, vs := fieldsOf(t, m, "k"); len(fs) != 1 || fs[0] != "b" || vs[0] != "after" {
		t.Errorf("map = %v %v; want [b] [after]", fs, vs)
	}
	if _, _, ok := tm.Get("k", "x"); ok || tm.Len() != 1 {
		t.Errorf("timer x present=%v, %d timers; want only y", ok, tm.Len())
	}
}

func TestEraseKeyRejectsNUL(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	if err := db.Partition(0).EraseKey("a\x00b"); err == nil {
		t.Error("EraseKey with 0x00: no error")
	}
}
