package state

import (
	"slices"
	"testing"
)

func TestMapRangeMerges(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	p := db.Partition(0)
	m := NewMap(p, "m", StringCodec)
	for _, f := range []string{"a", "b", "c", "d"} {
		m.Put("k", f, f+"0")
	}
	m.Put("other", "a", "x")
	checkpoint(t, db, p)
	closeTest(t, db)

	db = openTest(t, dir)
	defer closeTest(t, db)
	p = db.Partition(0)
	m = NewMap(p, "m", StringCodec)
	// Partial changes over what Pebble holds: an update, a deletion, a new
	// field, a clean cached field.
	m.Put("k", "b", "b1")
	m.Delete("k", "c")
	m.Put("k", "e", "e1")
	m.Put("k", "0", "first")
	if got, ok, err := m.Get("k", "a"); err != nil || !ok || got != "a0" {
		t.Fatalf("a = %q, %v, %v; want a0", got, ok, err)
	}
	wantF := []string{"0", "a", "b", "d", "e"}
	wantV := []string{"first", "a0", "b1", "d0", "e1"}
	check := func(stage string) {
		t.Helper()
		fs, vs := fieldsOf(t, m, "k")
		if !slices.Equal(fs, wantF) || !slices.Equal(vs, wantV) {
			t.Errorf("%s: Range = %v %v; want %v %v", stage, fs, vs, wantF, wantV)
		}
	}
	check("cache over Pebble")
	check("after a full load")
	if _, ok, _ := m.Get("k", "c"); ok {
		t.Error("deleted field c readable")
	}
	checkpoint(t, db, p)
	p.Evict()
	check("from Pebble")

	// Deletion of a field that is only in Pebble, then Range.
	m.Delete("k", "d")
	wantF, wantV = []string{"0", "a", "b", "e"}, []string{"first", "a0", "b1", "e1"}
	check("after deleting an uncached field")
	checkpoint(t, db, p)
	p.Evict()
	check("after deleting an uncached field, from Pebble")

	if fs, vs := fieldsOf(t, m, "other"); len(fs) != 1 || vs[0] != "x" {
		t.Errorf("other key: %v %v; want [a] [x]", fs, vs)
	}
}

func TestMapClear(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(0)
	m := NewMap(p, "m", Int64Codec)
	m.Put("k", "a", 1)
	m.Put("k", "b", 2)
	m.Put("kk", "a", 3) // shares a prefix with k
	checkpoint(t, db, p)
	p.Evict()

	m.Clear("k")
	m.Put("k", "c", 4)
	if _, ok, _ := m.Get("k", "a"); ok {
		t.Error("a readable after Clear")
	}
	check := func(stage string) {
		t.Helper()
		if fs, vs := fieldsOf(t, m, "k"); !slices.Equal(fs, []string{"c"}) || vs[0] != 4 {
			t.Errorf("%s: k = %v %v; want [c] [4]", stage, fs, vs)
		}
		if fs, _ := fieldsOf(t, m, "kk"); !slices.Equal(fs, []string{"a"}) {
			t.Errorf("%s: kk = %v; want [a]", stage, fs)
		}
	}
	check("in cache")
	p.Evict() // a cleared key stays in memory until flushed
	check("after Evict")
	checkpoint(t, db, p)
	p.Evict()
	check("from Pebble")
}

func TestMapRangeStopsAndToleratesChanges(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(0)
	m := NewMap(p, "m", Int64Codec)
	for i, f := range []string{"a", "b", "c", "d"} {
		m.Put("k", f, int64(i))
	}
	var seen []string
	if err := m.Range("k", func(f string, _ int64) bool {
		seen = append(seen, f)
		if f == "a" {
			m.Delete("k", "b")
			// A nested Range sees the deletion.
			inner, _ := fieldsOf(t, m, "k")
			if !slices.Equal(inner, []string{"a", "c", "d"}) {
				t.Errorf("nested Range = %v", inner)
			}
		}
		return f != "c"
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []string{"a", "c"}) {
		t.Errorf("Range visited %v, want [a c]", seen)
	}
}
