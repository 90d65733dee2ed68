package state

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Batch collects writes that commit atomically: the flushed state of one or
// more partitions together with the source offsets and watermarks it
// reflects. A Batch is not safe for concurrent use: partitions flushing into
// the same Batch must take turns.
type Batch struct {
	db  *DB
	b   *pebble.Batch
	buf []byte
	err error
}

// setErr keeps the first error, which Commit returns.
func (b *Batch) setErr(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

// SetOffset records that split's input up to and including offset is
// reflected in the state of this commit.
func (b *Batch) SetOffset(split int32, offset int64) {
	b.buf = appendTagged(b.buf[:0], tagOffset, uint32(split))
	b.buf = putInt64(b.buf, offset)
	b.setErr(b.b.Set(b.buf[:5], b.buf[5:], nil))
}

// SetWatermark records the watermark (unix nanos) of partition.
func (b *Batch) SetWatermark(partition int, wm int64) {
	b.buf = appendTagged(b.buf[:0], tagWatermark, uint32(partition))
	b.buf = putInt64(b.buf, wm)
	b.setErr(b.b.Set(b.buf[:5], b.buf[5:], nil))
}

// Commit applies the batch atomically. It waits for the disk (fsync) unless
// the DB's SyncMode is SyncNever. The batch cannot be reused; Close it.
func (b *Batch) Commit() error {
	if b.err != nil {
		return fmt.Errorf("state: commit: %w", b.err)
	}
	if err := b.b.Commit(b.db.writeOptions()); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	b.db.lastBatch.Store(int64(b.b.Len()))
	return nil
}

// Close releases the batch; uncommitted writes are discarded. Its buffer
// serves the DB's next batch. Closing it again does nothing.
func (b *Batch) Close() error {
	pb := b.b
	if pb == nil {
		return nil
	}
	b.b = nil // the DB's next batch may be this one
	pb.Reset()
	if b.db.spare.CompareAndSwap(nil, pb) {
		return nil
	}
	if err := pb.Close(); err != nil {
		return fmt.Errorf("state: close batch: %w", err)
	}
	return nil
}

// Count returns the number of operations in the batch.
func (b *Batch) Count() uint32 { return b.b.Count() }

// Len returns the size of the batch in bytes.
func (b *Batch) Len() int { return b.b.Len() }
