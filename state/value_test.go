package state

import (
	"math"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func TestValueTTL(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	ttl := WithTTL(10*time.Second, clk.Now)
	db := openTest(t, dir)
	p := db.Partition(0)
	v := NewValue(p, "v", StringCodec, ttl)
	c := NewCounter(p, "c", ttl)
	m := NewMap(p, "m", Int64Codec, ttl)

	v.Put("a", "x")
	v.Put("b", "y")
	if _, err := c.Add("a", 5); err != nil {
		t.Fatal(err)
	}
	m.Put("a", "f1", 1)
	m.Put("a", "f2", 2)
	clk.Advance(9 * time.Second)
	if got, ok := mustGet(t, v, "a"); !ok || got != "x" {
		t.Fatalf("a at 9s = %q, %v; want x", got, ok)
	}
	v.Put("b", "y2") // rewriting restarts the TTL
	m.Put("a", "f2", 20)
	checkpoint(t, db, p)

	clk.Advance(time.Second) // a, c/a and m/a/f1 are 10s old, b and f2 1s
	if got, ok := mustGet(t, v, "a"); ok {
		t.Errorf("a at 10s = %q, want expired", got)
	}
	if got, ok := mustGet(t, v, "b"); !ok || got != "y2" {
		t.Errorf("b = %q, %v; want y2", got, ok)
	}
	if n, err := c.Add("a", 1); err != nil || n != 1 {
		t.Errorf("counter after expiry = %d, %v; want 1 (restarted)", n, err)
	}
	if fs, vs := fieldsOf(t, m, "a"); len(fs) != 1 || fs[0] != "f2" || vs[0] != 20 {
		t.Errorf("map fields = %v %v; want [f2] [20]", fs, vs)
	}
	b := db.NewBatch()
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	// Deletions of v/a and m/a/f1, the new count of c/a.
	if b.Count() != 3 {
		t.Errorf("flush after expiry wrote %d ops, want 3", b.Count())
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	closeTest(t, db)

	// Entries that expire while on disk read as absent and are deleted.
	clk.Advance(9 * time.Second) // b and f2 are 10s old, c/a 9s
	db = openTest(t, dir)
	defer closeTest(t, db)
	p = db.Partition(0)
	v = NewValue(p, "v", StringCodec, ttl)
	c = NewCounter(p, "c", ttl)
	m = NewMap(p, "m", Int64Codec, ttl)
	for _, k := range []string{"a", "b"} {
		if got, ok := mustGet(t, v, k); ok {
			t.Errorf("%s after restart = %q, want expired", k, got)
		}
	}
	if _, ok, err := m.Get("a", "f2"); err != nil || ok {
		t.Errorf("m/a/f2 after restart present=%v, %v; want expired", ok, err)
	}
	if n, err := c.Get("a"); err != nil || n != 1 {
		t.Errorf("counter after restart = %d, %v; want 1", n, err)
	}
	b = db.NewBatch()
	defer b.Close()
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	if b.Count() != 2 { // deletions of v/b and m/a/f2
		t.Errorf("flush after expiry on disk wrote %d ops, want 2", b.Count())
	}
}

func TestEvictKeepsDirty(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	defer closeTest(t, db)
	p := db.Partition(0)
	v := NewValue(p, "v", StringCodec)
	m := NewMap(p, "m", StringCodec)
	v.Put("clean", "c")
	m.Put("k", "clean", "c")
	checkpoint(t, db, p)
	v.Put("dirty", "d")
	m.Put("k", "dirty", "d")
	if n := p.CachedEntries(); n != 4 {
		t.Fatalf("CachedEntries = %d, want 4", n)
	}

	p.Evict()
	if n := p.CachedEntries(); n != 2 {
		t.Errorf("CachedEntries after Evict = %d, want 2 (the dirty ones)", n)
	}
	// Evicted entries come back from Pebble; dirty ones are still there.
	if got, ok := mustGet(t, v, "clean"); !ok || got != "c" {
		t.Errorf("clean = %q, %v; want c", got, ok)
	}
	if fs, vs := fieldsOf(t, m, "k"); len(fs) != 2 || vs[0] != "c" || vs[1] != "d" {
		t.Errorf("map = %v %v; want [clean dirty] [c d]", fs, vs)
	}
	b := db.NewBatch()
	defer b.Close()
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	if b.Count() != 2 {
		t.Errorf("flush after Evict wrote %d ops, want the 2 dirty entries", b.Count())
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	p.Evict()
	if n := p.CachedEntries(); n != 0 {
		t.Errorf("CachedEntries after commit and Evict = %d, want 0", n)
	}
	if got, ok := mustGet(t, v, "dirty"); !ok || got != "d" {
		t.Errorf("dirty after eviction = %q, %v; want d", got, ok)
	}
}

func TestGetReturnsCachedObject(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(0)
	v := NewValue(p, "v", JSONCodec[*profile]())
	v.Put("k", &profile{Name: "a"})
	checkpoint(t, db, p)
	got, _ := mustGet(t, v, "k")
	got.Visits = 9 // mutated in place, not Put again: not dirty
	b := db.NewBatch()
	defer b.Close()
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	if b.Count() != 0 {
		t.Errorf("flush wrote %d ops without a Put, want 0", b.Count())
	}
	v.Put("k", got)
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	if b.Count() != 1 {
		t.Errorf("flush wrote %d ops after Put, want 1", b.Count())
	}
}

func TestCodecs(t *testing.T) {
	roundTrip(t, Int64Codec, 0, -1, math.MaxInt64, math.MinInt64)
	roundTrip(t, Float64Codec, 0, -1.5, math.Inf(1), math.MaxFloat64)
	roundTrip(t, StringCodec, "", "héllo")
	roundTrip(t, JSONCodec[point](), point{}, point{X: -1, Y: 2})
	src := []byte("abc")
	got, err := BytesCodec.Decode(src)
	if err != nil || string(got) != "abc" {
		t.Fatalf("bytes = %q, %v", got, err)
	}
	src[0] = 'X'
	if string(got) != "abc" {
		t.Error("BytesCodec.Decode kept its input")
	}
	if _, err := Int64Codec.Decode([]byte{0x80}); err == nil {
		t.Error("truncated varint: no error")
	}
	if _, err := Float64Codec.Decode([]byte{1}); err == nil {
		t.Error("short float: no error")
	}
}

type point struct{ X, Y int }

func roundTrip[T comparable](t *testing.T, c Codec[T], vals ...T) {
	t.Helper()
	for _, v := range vals {
		enc := c.Append([]byte("pre"), v)
		got, err := c.Decode(enc[3:])
		if err != nil || got != v || string(enc[:3]) != "pre" {
			t.Errorf("round trip of %v = %v, %v", v, got, err)
		}
	}
}

func TestFlushReturnsCodecError(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(0)
	v := NewValue(p, "v", JSONCodec[float64]())
	v.Put("k", math.NaN())
	b := db.NewBatch()
	defer b.Close()
	if err := p.Flush(b); err == nil || !strings.Contains(err.Error(), "json codec") {
		t.Errorf("Flush of NaN as JSON = %v, want the codec's error", err)
	}
}
