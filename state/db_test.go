package state

import (
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
)

func openTest(tb testing.TB, dir string, opts ...Option) *DB {
	tb.Helper()
	opts = append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	db, err := Open(dir, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

func closeTest(tb testing.TB, db *DB) {
	tb.Helper()
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

// checkpoint flushes the partitions into one batch and commits it.
func checkpoint(tb testing.TB, db *DB, parts ...*Partition) {
	tb.Helper()
	b := db.NewBatch()
	defer b.Close()
	for _, p := range parts {
		if err := p.Flush(b); err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		tb.Fatal(err)
	}
}

func mustGet[T any](tb testing.TB, v *Value[T], key string) (T, bool) {
	tb.Helper()
	val, ok, err := v.Get(key)
	if err != nil {
		tb.Fatal(err)
	}
	return val, ok
}

func mustTimers(tb testing.TB, p *Partition, name string) *Timers {
	tb.Helper()
	t, err := NewTimers(p, name)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

type profile struct {
	Name   string   `json:"name"`
	Visits int      `json:"visits"`
	Tags   []string `json:"tags"`
}

// fieldsOf returns every field of key in m, in Range order.
func fieldsOf[V any](tb testing.TB, m *Map[V], key string) ([]string, []V) {
	tb.Helper()
	var fs []string
	var vs []V
	if err := m.Range(key, func(f string, v V) bool {
		fs = append(fs, f)
		vs = append(vs, v)
		return true
	}); err != nil {
		tb.Fatal(err)
	}
	return fs, vs
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	p := db.Partition(3)
	v := NewValue(p, "op/profile", JSONCodec[profile]())
	m := NewMap(p, "op/views", Int64Codec)
	c := NewCounter(p, "op/count")
	tm := mustTimers(t, p, "op/timers")

	v.Put("u1", profile{Name: "Ann", Visits: 2, Tags: []string{"vip"}})
	v.Put("u2", profile{Name: "Bo"})
	v.Put("gone", profile{Name: "Deleted"})
	v.Delete("gone")
	m.Put("u1", "p1", 3)
	m.Put("u1", "p2", 5)
	for range 3 {
		if _, err := c.Add("u1", 2); err != nil {
			t.Fatal(err)
		}
	}
	tm.Set("u1", "gap", 100, 0)
	tm.Set("u2", "gap", 50, 0)
	tm.Set("u2", "poll", 70, 1)

	b := db.NewBatch()
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	b.SetOffset(0, 41)
	b.SetOffset(2, 7)
	b.SetWatermark(3, 1234)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Changes after the checkpoint are lost with the process.
	v.Put("u1", profile{Name: "Changed"})
	v.Put("u3", profile{Name: "New"})
	m.Put("u1", "p3", 1)
	m.Delete("u1", "p1")
	if _, err := c.Add("u1", 100); err != nil {
		t.Fatal(err)
	}
	tm.Set("u3", "gap", 10, 0)
	tm.Delete("u1", "gap")
	closeTest(t, db)

	db = openTest(t, dir)
	defer closeTest(t, db)
	p = db.Partition(3)
	v = NewValue(p, "op/profile", JSONCodec[profile]())
	m = NewMap(p, "op/views", Int64Codec)
	c = NewCounter(p, "op/count")
	tm = mustTimers(t, p, "op/timers")

	if got, ok := mustGet(t, v, "u1"); !ok || got.Name != "Ann" || got.Visits != 2 || !slices.Equal(got.Tags, []string{"vip"}) {
		t.Errorf("u1 = %+v, %v; want Ann", got, ok)
	}
	if got, ok := mustGet(t, v, "u2"); !ok || got.Name != "Bo" {
		t.Errorf("u2 = %+v, %v; want Bo", got, ok)
	}
	for _, k := range []string{"u3", "gone"} {
		if got, ok := mustGet(t, v, k); ok {
			t.Errorf("%s = %+v; want absent", k, got)
		}
	}
	if fs, vs := fieldsOf(t, m, "u1"); !slices.Equal(fs, []string{"p1", "p2"}) || !slices.Equal(vs, []int64{3, 5}) {
		t.Errorf("map u1 = %v %v; want [p1 p2] [3 5]", fs, vs)
	}
	if n, err := c.Get("u1"); err != nil || n != 6 {
		t.Errorf("counter u1 = %d, %v; want 6", n, err)
	}
	if tm.Len() != 3 {
		t.Errorf("timers: %d, want 3", tm.Len())
	}
	if at, d, ok := tm.Get("u1", "gap"); !ok || at != 100 || d != 0 {
		t.Errorf("timer u1/gap = %d %d %v; want 100 0", at, d, ok)
	}
	if at, d, ok := tm.Get("u2", "poll"); !ok || at != 70 || d != 1 {
		t.Errorf("timer u2/poll = %d %d %v; want 70 1", at, d, ok)
	}
	if _, _, ok := tm.Get("u3", "gap"); ok {
		t.Error("unflushed timer u3/gap survived the restart")
	}
	offs, err := db.Offsets()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 41, 2: 7}; !maps.Equal(offs, want) {
		t.Errorf("offsets = %v, want %v", offs, want)
	}
	wms, err := db.Watermarks()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]int64{3: 1234}; !maps.Equal(wms, want) {
		t.Errorf("watermarks = %v, want %v", wms, want)
	}
}

func TestBatchAtomic(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, WithSync(SyncNever))
	p0, p1 := db.Partition(0), db.Partition(1)
	v0 := NewValue(p0, "v", StringCodec)
	v1 := NewValue(p1, "v", StringCodec)

	// An abandoned batch leaves neither state nor offsets.
	v0.Put("k", "first")
	v1.Put("k", "first")
	b := db.NewBatch()
	for _, p := range []*Partition{p0, p1} {
		if err := p.Flush(b); err != nil {
			t.Fatal(err)
		}
	}
	b.SetOffset(0, 10)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if offs, err := db.Offsets(); err != nil || len(offs) != 0 {
		t.Fatalf("offsets after abandoned batch = %v, %v; want none", offs, err)
	}

	// A committed batch carries both partitions and the offsets.
	v0.Put("k", "second")
	v1.Put("k", "second")
	b = db.NewBatch()
	for _, p := range []*Partition{p0, p1} {
		if err := p.Flush(b); err != nil {
			t.Fatal(err)
		}
	}
	b.SetOffset(0, 20)
	if b.Count() != 3 || b.Len() == 0 {
		t.Errorf("batch: %d ops, %d bytes; want 3 ops", b.Count(), b.Len())
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	closeTest(t, db)

	db = openTest(t, dir)
	defer closeTest(t, db)
	for id := range 2 {
		v := NewValue(db.Partition(id), "v", StringCodec)
		if got, ok := mustGet(t, v, "k"); !ok || got != "second" {
			t.Errorf("partition %d: k = %q, %v; want second", id, got, ok)
		}
	}
	if offs, err := db.Offsets(); err != nil || !maps.Equal(offs, map[int32]int64{0: 20}) {
		t.Errorf("offsets = %v, %v; want 0:20", offs, err)
	}
}

func TestFlushWritesEachKeyOnce(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(0)
	v := NewValue(p, "v", Int64Codec)
	m := NewMap(p, "m", Int64Codec)
	tm := mustTimers(t, p, "t")
	for i := range 100 {
		v.Put("a", int64(i))
		v.Put("b", int64(i))
		m.Put("a", "f", int64(i))
		tm.Set("a", "x", int64(i), 0)
	}
	v.Delete("b")
	v.Put("b", 7)
	b := db.NewBatch()
	defer b.Close()
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	if b.Count() != 4 {
		t.Errorf("flush wrote %d ops, want 4 (a, b, a/f, timer)", b.Count())
	}
	// Nothing is dirty any more.
	b2 := db.NewBatch()
	defer b2.Close()
	if err := p.Flush(b2); err != nil {
		t.Fatal(err)
	}
	if b2.Count() != 0 {
		t.Errorf("second flush wrote %d ops, want 0", b2.Count())
	}
}

func TestNoWriteForNeverStoredDeletes(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(0)
	v := NewValue(p, "v", Int64Codec)
	tm := mustTimers(t, p, "t")
	if _, ok := mustGet(t, v, "a"); ok {
		t.Fatal("a present in an empty store")
	}
	v.Put("a", 1)
	v.Delete("a")
	tm.Set("a", "x", 5, 0)
	if _, ok := tm.PopDue(0, 5); !ok {
		t.Fatal("timer a/x not due")
	}
	b := db.NewBatch()
	defer b.Close()
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	if b.Count() != 0 {
		t.Errorf("flush wrote %d ops for entries never stored, want 0", b.Count())
	}
}

func TestDropPartition(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	var parts []*Partition
	for id := range 3 {
		p := db.Partition(id)
		NewValue(p, "v", StringCodec).Put("k", "val")
		NewMap(p, "m", StringCodec).Put("k", "f", "val")
		mustTimers(t, p, "t").Set("k", "x", 10, 0)
		parts = append(parts, p)
	}
	b := db.NewBatch()
	for _, p := range parts {
		if err := p.Flush(b); err != nil {
			t.Fatal(err)
		}
		b.SetWatermark(p.ID(), int64(100+p.ID()))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()

	if err := db.DropPartition(1); err != nil {
		t.Fatal(err)
	}
	if db.Partition(1) == parts[1] {
		t.Error("Partition(1) returned the dropped handle")
	}
	closeTest(t, db)

	db = openTest(t, dir)
	defer closeTest(t, db)
	for id := range 3 {
		p := db.Partition(id)
		_, okV := mustGet(t, NewValue(p, "v", StringCodec), "k")
		fs, _ := fieldsOf(t, NewMap(p, "m", StringCodec), "k")
		n := mustTimers(t, p, "t").Len()
		want := id != 1
		if okV != want || (len(fs) == 1) != want || (n == 1) != want {
			t.Errorf("partition %d: value %v, fields %v, timers %d; want present=%v", id, okV, fs, n, want)
		}
	}
	wms, err := db.Watermarks()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]int64{0: 100, 2: 102}; !maps.Equal(wms, want) {
		t.Errorf("watermarks = %v, want %v", wms, want)
	}
}

func TestPartitionHandle(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	const n = 8
	got := make([]*Partition, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i] = db.Partition(5) })
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] || got[i].ID() != 5 {
			t.Fatalf("Partition(5) call %d returned a different handle", i)
		}
	}
	if db.Partition(6) == got[0] {
		t.Error("partitions 5 and 6 share a handle")
	}
}

func TestDuplicateNames(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(0)
	NewValue(p, "op/x", StringCodec)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("second table op/x did not panic")
			}
		}()
		NewMap(p, "op/x", StringCodec)
	}()
	mustTimers(t, p, "op/x") // timers have their own namespaces
	if _, err := NewTimers(p, "op/x"); err == nil {
		t.Error("second timer namespace op/x: no error")
	}
}

func TestCloseTwice(t *testing.T) {
	db := openTest(t, t.TempDir())
	closeTest(t, db)
	if err := db.Close(); err == nil {
		t.Error("second Close: no error")
	}
}

func TestParseSyncMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SyncMode
	}{{"", SyncCheckpoint}, {"checkpoint", SyncCheckpoint}, {"always", SyncAlways}, {"never", SyncNever}} {
		got, err := ParseSyncMode(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSyncMode(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if tc.in != "" && got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
	_, err := ParseSyncMode("sometimes")
	if err == nil {
		t.Fatal(`ParseSyncMode("sometimes"): no error`)
	}
	for _, valid := range []string{"always", "checkpoint", "never"} {
		if !strings.Contains(err.Error(), valid) {
			t.Errorf("error %q does not name %q", err, valid)
		}
	}
}

func TestDiskSize(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	if db.DiskSize() == 0 {
		t.Error("DiskSize = 0 for an open store")
	}
}

// TestBatchReuse closes batches, once committed and once abandoned, some
// twice: the next batches start empty and are never the same batch twice.
func TestBatchReuse(t *testing.T) {
	db := openTest(t, t.TempDir(), WithSync(SyncNever))
	defer closeTest(t, db)
	b1 := db.NewBatch()
	b1.SetOffset(0, 1)
	if err := b1.Commit(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := b1.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b2 := db.NewBatch() // b1's buffer
	b2.SetOffset(0, 99)
	for range 2 {
		if err := b2.Close(); err != nil { // abandoned
			t.Fatal(err)
		}
	}
	b3, b4 := db.NewBatch(), db.NewBatch()
	if b3.b == b4.b {
		t.Fatal("two open batches share one Pebble batch")
	}
	if b3.Count() != 0 || b4.Count() != 0 {
		t.Fatalf("new batches hold %d and %d writes, want none", b3.Count(), b4.Count())
	}
	b3.SetOffset(0, 3)
	if err := b3.Commit(); err != nil {
		t.Fatal(err)
	}
	if offs, err := db.Offsets(); err != nil || offs[0] != 3 {
		t.Fatalf("offsets %v, %v; want split 0 at 3 (the abandoned 99 discarded)", offs, err)
	}
	for _, b := range []*Batch{b3, b4} {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
