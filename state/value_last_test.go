package state

import "testing"

// The entry a Value looked up last is forgotten with the key: an erasure
// or an eviction right after a read or write of the key does not leave it
// reachable.
func TestValueLastEntryFollowsEraseAndEvict(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(0)
	v := NewValue(p, "v", StringCodec)

	v.Put("k", "one")
	if got, ok := mustGet(t, v, "k"); !ok || got != "one" {
		t.Fatalf("k = %q, %v; want one", got, ok)
	}
	if err := p.EraseKey("k"); err != nil {
		t.Fatal(err)
	}
	if got, ok := mustGet(t, v, "k"); ok {
		t.Fatalf("k after erasure = %q, want absent", got)
	}
	v.Put("k", "two")
	v.Put("other", "x")
	v.Put("k", "three") // back to k after another key
	checkpoint(t, db, p)
	if got, ok := mustGet(t, v, "k"); !ok || got != "three" {
		t.Fatalf("k = %q, %v; want three", got, ok)
	}
	p.Evict()
	if n := p.CachedEntries(); n != 0 {
		t.Fatalf("CachedEntries after Evict = %d, want 0", n)
	}
	// Read back from Pebble, then changed: the change must reach the
	// entry in the cache, which the next flush writes.
	if got, ok := mustGet(t, v, "k"); !ok || got != "three" {
		t.Fatalf("k after eviction = %q, %v; want three", got, ok)
	}
	v.Put("k", "four")
	checkpoint(t, db, p)
	p.Evict()
	if got, ok := mustGet(t, v, "k"); !ok || got != "four" {
		t.Fatalf("k after flush and eviction = %q, %v; want four", got, ok)
	}
	v.Delete("k")
	if _, ok := mustGet(t, v, "k"); ok {
		t.Fatal("k after Delete is present")
	}
}
