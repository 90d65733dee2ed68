package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// This file gives raw access to the store for whoever replicates it (a
// changelog that lets a partition's state follow the partition to another
// process): the key-by-key effect of a Batch, raw writes, per-partition
// metadata, and what a raw key belongs to.

// KeyScope says what a raw key belongs to.
type KeyScope uint8

const (
	// ScopeNone is a key of no partition or split (none exists today).
	ScopeNone KeyScope = iota
	// ScopePartition is a key of one partition: a table entry, a timer or
	// the partition's watermark.
	ScopePartition
	// ScopeMeta is a metadata entry of one partition (see Batch.SetMeta):
	// bookkeeping about the partition's state, not the state itself.
	ScopeMeta
	// ScopeSplit is the committed offset of one source split.
	ScopeSplit
)

// RawKeyScope returns what a raw key (from Batch.Changes or DB.ScanRaw)
// belongs to, and the partition or split id.
func RawKeyScope(key []byte) (KeyScope, int32) {
	if len(key) < 5 {
		return ScopeNone, 0
	}
	id := int32(binary.BigEndian.Uint32(key[1:5]))
	switch key[0] {
	case tagKeyed, tagTimer:
		return ScopePartition, id
	case tagWatermark:
		if len(key) == 5 {
			return ScopePartition, id
		}
	case tagMeta:
		return ScopeMeta, id
	case tagOffset:
		if len(key) == 5 {
			return ScopeSplit, id
		}
	}
	return ScopeNone, 0
}

// OffsetKey returns the raw key of split's committed offset.
func OffsetKey(split int32) []byte { return appendTagged(nil, tagOffset, uint32(split)) }

// Changes calls fn with the effect of the batch, key by key, in the order in
// which the batch first touched each key: the last value written, or
// deleted. A range deletion (an erased key) becomes one deletion per key
// that the store holds in the range, or that the batch wrote before it. The
// batch must not be written to during the call; key and value are only
// valid during fn.
func (b *Batch) Changes(fn func(key, value []byte, deleted bool) error) error {
	if b.err != nil {
		return fmt.Errorf("state: changes: %w", b.err)
	}
	type change struct {
		key, value []byte
		deleted    bool
	}
	n := int(b.b.Count())
	order := make([]change, 0, n)
	byKey := make(map[string]int, n)
	put := func(key, value []byte, deleted bool) {
		if i, ok := byKey[string(key)]; ok {
			order[i].value, order[i].deleted = value, deleted
			return
		}
		byKey[string(key)] = len(order)
		order = append(order, change{key: key, value: value, deleted: deleted})
	}
	r := b.b.Reader()
	for {
		kind, ukey, value, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("state: changes: %w", err)
		}
		if !ok {
			break
		}
		switch kind {
		case pebble.InternalKeyKindSet:
			put(ukey, value, false)
		case pebble.InternalKeyKindDelete, pebble.InternalKeyKindSingleDelete, pebble.InternalKeyKindDeleteSized:
			put(ukey, nil, true)
		case pebble.InternalKeyKindRangeDelete:
			start, end := ukey, value
			for i := range order {
				if c := &order[i]; bytes.Compare(c.key, start) >= 0 && bytes.Compare(c.key, end) < 0 {
					c.value, c.deleted = nil, true
				}
			}
			var stored [][]byte
			if err := b.db.ScanRange(start, end, func(k, _ []byte) bool {
				stored = append(stored, bytes.Clone(k))
				return true
			}); err != nil {
				return fmt.Errorf("state: changes: %w", err)
			}
			for _, k := range stored {
				put(k, nil, true)
			}
		default:
			return fmt.Errorf("state: changes: unexpected operation %s in batch", kind)
		}
	}
	for i := range order {
		c := &order[i]
		if err := fn(c.key, c.value, c.deleted); err != nil {
			return err
		}
	}
	return nil
}

// SetRaw writes value under a raw key, as Changes or DB.ScanRaw reported
// it. It is for restoring replicated state into partitions that no
// Partition handle holds.
func (b *Batch) SetRaw(key, value []byte) { b.setErr(b.b.Set(key, value, nil)) }

// DeleteRaw deletes a raw key; see SetRaw.
func (b *Batch) DeleteRaw(key []byte) { b.setErr(b.b.Delete(key, nil)) }

// ClearPartition deletes, in this batch, everything partition id holds:
// table entries, timers, watermark and metadata. Unlike DB.DropPartition it
// leaves the Partition handle alone: release it first (DB.ReleasePartition).
func (b *Batch) ClearPartition(id int) {
	part := uint32(id)
	for _, tag := range []byte{tagKeyed, tagTimer, tagMeta} {
		start, end := partitionRange(tag, part)
		b.setErr(b.b.DeleteRange(start, end, nil))
	}
	b.setErr(b.b.Delete(appendTagged(nil, tagWatermark, part), nil))
}

// SetMeta records a metadata entry of partition: bookkeeping that a
// replicator keeps about the partition's state (which changelog position
// it reflects) and commits atomically with it. Changes reports it with
// ScopeMeta.
func (b *Batch) SetMeta(partition int, name string, value []byte) {
	b.setErr(b.b.Set(metaKey(partition, name), value, nil))
}

// Meta returns the committed metadata entry name of partition, if any.
func (db *DB) Meta(partition int, name string) ([]byte, bool, error) {
	return db.GetRaw(metaKey(partition, name))
}

func metaKey(partition int, name string) []byte {
	k := appendTagged(nil, tagMeta, uint32(partition))
	return append(k, name...)
}

// ScanRange calls fn for every raw key and value in [start, end), in key
// order, until fn returns false. key and value are only valid during fn.
func (db *DB) ScanRange(start, end []byte, fn func(key, value []byte) bool) error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		return fmt.Errorf("state: scan: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil || !fn(it.Key(), v) {
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("state: scan: %w", err)
	}
	return nil
}

// ScanPartition calls fn for every raw key and value of partition id
// (table entries, timers and watermark; not its metadata), until fn
// returns false. It reads committed data only.
func (db *DB) ScanPartition(id int, fn func(key, value []byte) bool) error {
	part := uint32(id)
	cont := true
	wrap := func(k, v []byte) bool { cont = fn(k, v); return cont }
	for _, tag := range []byte{tagKeyed, tagTimer} {
		start, end := partitionRange(tag, part)
		if err := db.ScanRange(start, end, wrap); err != nil {
			return err
		}
		if !cont {
			return nil
		}
	}
	wk := WatermarkKey(id)
	v, ok, err := db.GetRaw(wk)
	if err != nil || !ok {
		return err
	}
	fn(wk, v)
	return nil
}

// ReleasePartition forgets the handle of partition id, keeping what Pebble
// holds: the next Partition call makes a fresh handle with an empty cache
// that reads the committed state. The old handle and its tables must not be
// used afterwards; flush and commit them first, or their changes are lost.
func (db *DB) ReleasePartition(id int) {
	db.mu.Lock()
	delete(db.parts, id)
	db.mu.Unlock()
}

// WatermarkKey returns the raw key of partition's watermark.
func WatermarkKey(partition int) []byte { return appendTagged(nil, tagWatermark, uint32(partition)) }

// GetRaw returns the committed value of a raw key, if any.
func (db *DB) GetRaw(key []byte) ([]byte, bool, error) {
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get: %w", err)
	}
	out := bytes.Clone(v)
	return out, true, closer.Close()
}
