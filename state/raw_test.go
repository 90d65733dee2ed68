package state

import (
	"fmt"
	"maps"
	"testing"
)

// TestBatchChanges checks that Changes reports a batch key by key: the
// last write of each key, and one deletion per stored key of an erased
// range, including keys written earlier in the batch.
func TestBatchChanges(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	p := db.Partition(3)
	c := NewCounter(p, "op/count")
	tm := mustTimers(t, p, "op/timers")
	for _, k := range []string{"a", "b"} {
		if _, err := c.Add(k, 1); err != nil {
			t.Fatal(err)
		}
		tm.Set(k, "end", 100, 0)
	}
	checkpoint(t, db, p)

	b := db.NewBatch()
	defer b.Close()
	if _, err := c.Add("a", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add("c", 1); err != nil {
		t.Fatal(err)
	}
	if err := p.EraseKey("b"); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	b.SetOffset(3, 42)
	b.SetWatermark(3, 7)
	got := map[string]string{}
	if err := b.Changes(func(key, value []byte, deleted bool) error {
		scope, id := RawKeyScope(key)
		what := fmt.Sprintf("scope %d id %d ", scope, id)
		if deleted {
			what += "deleted"
		} else {
			what += fmt.Sprintf("%x", value)
		}
		if _, dup := got[string(key)]; dup {
			t.Errorf("key %q reported twice", key)
		}
		got[string(key)] = what
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		string(counterKey(p, "op/count", "a")): "scope 1 id 3 " + fmt.Sprintf("%x", Int64Codec.Append(nil, 2)),
		string(counterKey(p, "op/count", "c")): "scope 1 id 3 " + fmt.Sprintf("%x", Int64Codec.Append(nil, 1)),
		string(counterKey(p, "op/count", "b")): "scope 1 id 3 deleted",
		string(timerKeyOf(t, db, "b")):         "scope 1 id 3 deleted",
		string(OffsetKey(3)):                   "scope 3 id 3 " + fmt.Sprintf("%x", putInt64(nil, 42)),
		string(WatermarkKey(3)):                "scope 1 id 3 " + fmt.Sprintf("%x", putInt64(nil, 7)),
	}
	if !maps.Equal(got, want) {
		t.Errorf("changes:\n got %q\nwant %q", got, want)
	}
}

// counterKey is the raw key of a counter entry.
func counterKey(p *Partition, table, key string) []byte {
	k := p.appendKeyed(nil, key)
	k = append(k, 0, kindCounter)
	return append(k, table...)
}

// timerKeyOf finds the raw key of key's one stored timer.
func timerKeyOf(t *testing.T, db *DB, key string) []byte {
	t.Helper()
	var found []byte
	start, end := keyRange(tagTimer, 3, key)
	if err := db.ScanRange(start, end, func(k, _ []byte) bool { found = append([]byte(nil), k...); return false }); err != nil {
		t.Fatal(err)
	}
	if found == nil {
		t.Fatalf("no timer of %q", key)
	}
	return found
}

// TestClearPartitionAndMeta checks that ClearPartition removes everything
// of one partition, metadata included, and nothing of another, and that
// a released partition reads the committed state afresh.
func TestClearPartitionAndMeta(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer closeTest(t, db)
	for _, id := range []int{1, 2} {
		p := db.Partition(id)
		c := NewCounter(p, "n")
		if _, err := c.Add("k", int64(id)); err != nil {
			t.Fatal(err)
		}
		b := db.NewBatch()
		if err := p.Flush(b); err != nil {
			t.Fatal(err)
		}
		b.SetWatermark(id, 5)
		b.SetMeta(id, "changelog", []byte{byte(id)})
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	if v, ok, err := db.Meta(2, "changelog"); err != nil || !ok || v[0] != 2 {
		t.Fatalf("meta of 2: %v %v %v", v, ok, err)
	}
	db.ReleasePartition(1)
	b := db.NewBatch()
	b.ClearPartition(1)
	b.SetRaw(counterKey(db.Partition(1), "n", "k"), Int64Codec.Append(nil, 9))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, ok, _ := db.Meta(1, "changelog"); ok {
		t.Error("ClearPartition kept the metadata")
	}
	wms, err := db.Watermarks()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := wms[1]; ok || wms[2] != 5 {
		t.Errorf("watermarks after clearing partition 1: %v", wms)
	}
	db.ReleasePartition(1)
	db.ReleasePartition(2)
	for id, want := range map[int]int64{1: 9, 2: 2} {
		n, err := NewCounter(db.Partition(id), "n").Get("k")
		if err != nil || n != want {
			t.Errorf("partition %d: counter %d (%v), want %d", id, n, err, want)
		}
	}
}
