package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// defaultCacheSize is the size of Pebble's block cache unless WithCacheSize
// says otherwise: with bloom filters it makes a Get about 8 times faster than
// Pebble's default 8 MiB (DESIGN.md §5b).
const defaultCacheSize = 64 << 20

// memTableSize is the size of Pebble's memtables (Pebble's default is
// 4 MiB). Every checkpoint rewrites the entries of the keys that changed,
// mostly the same keys as the checkpoint before: a memtable that holds
// several checkpoints drops the overwritten versions when it is flushed
// instead of writing each one to L0 and compacting it away later (as
// Flink's RocksDB backend, whose write buffers are 64 MiB too).
const memTableSize = 64 << 20

// maxPartition is the largest partition id.
const maxPartition = math.MaxInt32

// Option configures Open.
type Option func(*options)

type options struct {
	logger    *slog.Logger
	sync      SyncMode
	cacheSize int64
}

// WithLogger sets the logger of the store and of Pebble. The default is
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithSync sets how durable a commit is. The default is SyncCheckpoint.
func WithSync(m SyncMode) Option {
	return func(o *options) { o.sync = m }
}

// WithCacheSize sets the size in bytes of Pebble's block cache (default
// 64 MiB). It does not bound the write-back cache of decoded values: see
// Partition.Evict.
func WithCacheSize(bytes int64) Option {
	return func(o *options) {
		if bytes > 0 {
			o.cacheSize = bytes
		}
	}
}

// String returns the name ParseSyncMode accepts for m.
func (m SyncMode) String() string {
	switch m {
	case SyncCheckpoint:
		return "checkpoint"
	case SyncAlways:
		return "always"
	case SyncNever:
		return "never"
	default:
		return fmt.Sprintf("SyncMode(%d)", uint8(m))
	}
}

// ParseSyncMode parses the `state.sync` setting: "always", "checkpoint" or
// "never"; the empty string means "checkpoint".
func ParseSyncMode(s string) (SyncMode, error) {
	switch s {
	case "", "checkpoint":
		return SyncCheckpoint, nil
	case "always":
		return SyncAlways, nil
	case "never":
		return SyncNever, nil
	default:
		return 0, fmt.Errorf("state: unknown sync mode %q (valid: always, checkpoint, never)", s)
	}
}

// DB is a state store in one directory: one Pebble instance shared by all
// the partitions of a process. Its methods are safe for concurrent use; the
// Partitions it hands out are not (each belongs to one goroutine).
type DB struct {
	pdb    *pebble.DB
	dir    string
	sync   SyncMode
	logger *slog.Logger

	mu     sync.Mutex
	parts  map[int]*Partition
	closed atomic.Bool
	// lastBatch is the size in bytes of the last batch committed.
	lastBatch atomic.Int64
	// spare is a closed batch kept, with its buffer, for the next
	// NewBatch: a checkpoint's batch takes megabytes, which would
	// otherwise be allocated and zeroed anew at every checkpoint.
	spare atomic.Pointer[pebble.Batch]
}

// maxSpareBatchBytes is the largest batch buffer kept for reuse.
const maxSpareBatchBytes = 64 << 20

// Open opens (creating if needed) the state store in dir.
func Open(dir string, opts ...Option) (*DB, error) {
	o := options{logger: slog.Default(), sync: SyncCheckpoint, cacheSize: defaultCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.sync > SyncNever {
		return nil, fmt.Errorf("state: open %s: invalid sync mode %d", dir, o.sync)
	}
	cache := pebble.NewCache(o.cacheSize)
	defer cache.Unref()
	popts := &pebble.Options{
		Cache:              cache,
		Logger:             pebbleLogger{l: o.logger.With("component", "pebble")},
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       memTableSize,
	}
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	pdb, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	o.logger.Info("state store opened", "dir", dir, "sync", o.sync.String())
	return &DB{pdb: pdb, dir: dir, sync: o.sync, logger: o.logger, parts: make(map[int]*Partition)}, nil
}

// Close closes the store. Partitions and tables of the DB must not be used
// afterwards; a second Close returns an error.
func (db *DB) Close() error {
	if !db.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("state: close %s: already closed", db.dir)
	}
	if pb := db.spare.Swap(nil); pb != nil {
		_ = pb.Close() // a reset batch: nothing to discard
	}
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("state: close %s: %w", db.dir, err)
	}
	return nil
}

// writeOptions returns the write options of a commit under the DB's SyncMode.
func (db *DB) writeOptions() *pebble.WriteOptions {
	if db.sync == SyncNever {
		return pebble.NoSync
	}
	return pebble.Sync
}

// Offsets returns the committed source offsets by split.
func (db *DB) Offsets() (map[int32]int64, error) {
	out := make(map[int32]int64)
	err := db.scanTag(tagOffset, func(id uint32, v int64) { out[int32(id)] = v })
	if err != nil {
		return nil, fmt.Errorf("state: read offsets: %w", err)
	}
	return out, nil
}

// Watermarks returns the committed watermark (unix nanos) by partition.
func (db *DB) Watermarks() (map[int]int64, error) {
	out := make(map[int]int64)
	err := db.scanTag(tagWatermark, func(id uint32, v int64) { out[int(id)] = v })
	if err != nil {
		return nil, fmt.Errorf("state: read watermarks: %w", err)
	}
	return out, nil
}

// scanTag calls fn for every key tag <id> with an 8-byte value.
func (db *DB) scanTag(tag byte, fn func(id uint32, v int64)) error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{tag}, UpperBound: []byte{tag + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			break
		}
		if len(k) != 5 || len(v) != 8 {
			_ = it.Close()
			return fmt.Errorf("malformed entry (key %d bytes, value %d bytes)", len(k), len(v))
		}
		fn(uint32(k[1])<<24|uint32(k[2])<<16|uint32(k[3])<<8|uint32(k[4]), getInt64(v))
	}
	return errors.Join(it.Error(), it.Close())
}

// NewBatch starts an atomic commit. The batch reuses the buffer of the
// last one closed, or starts at the size of the last one committed, so
// that a checkpoint's batch does not grow by doubling, copying itself each
// time.
func (db *DB) NewBatch() *Batch {
	if pb := db.spare.Swap(nil); pb != nil {
		return &Batch{db: db, b: pb}
	}
	return &Batch{db: db, b: db.pdb.NewBatch(
		pebble.WithInitialSizeBytes(int(db.lastBatch.Load())),
		pebble.WithMaxRetainedSizeBytes(maxSpareBatchBytes))}
}

// Partition returns the handle of partition id, creating it on the first
// call; later calls return the same handle until DropPartition. id must be in
// [0, math.MaxInt32]. Partition is safe for concurrent use; the handle it
// returns belongs to one goroutine.
func (db *DB) Partition(id int) *Partition {
	if id < 0 || id > maxPartition {
		panic(fmt.Sprintf("state: partition id %d out of range [0, %d]", id, maxPartition))
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	p := db.parts[id]
	if p == nil {
		p = newPartition(db, id)
		db.parts[id] = p
	}
	return p
}

// DropPartition forgets the handle of partition id and deletes, in one
// commit, all it holds: table entries, map fields, timers, watermark and
// metadata. The old handle and its tables must not be used afterwards.
func (db *DB) DropPartition(id int) error {
	if id < 0 || id > maxPartition {
		return fmt.Errorf("state: drop partition %d: id out of range [0, %d]", id, maxPartition)
	}
	db.mu.Lock()
	delete(db.parts, id)
	db.mu.Unlock()

	part := uint32(id)
	b := db.pdb.NewBatch()
	defer b.Close()
	for _, tag := range []byte{tagKeyed, tagTimer, tagMeta} {
		start, end := partitionRange(tag, part)
		if err := b.DeleteRange(start, end, nil); err != nil {
			return fmt.Errorf("state: drop partition %d: %w", id, err)
		}
	}
	if err := b.Delete(appendTagged(nil, tagWatermark, part), nil); err != nil {
		return fmt.Errorf("state: drop partition %d: %w", id, err)
	}
	if err := b.Commit(db.writeOptions()); err != nil {
		return fmt.Errorf("state: drop partition %d: %w", id, err)
	}
	return nil
}

// Compact compacts the whole store. After a commit that deleted a key's
// entries, Compact removes their bytes from the live tables, which ScanRaw
// can then confirm.
func (db *DB) Compact() error {
	if err := db.pdb.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		return fmt.Errorf("state: compact %s: %w", db.dir, err)
	}
	return nil
}

// ScanRaw calls fn for every raw key and value in the store, in key order,
// until fn returns false. key and value are only valid during the call.
func (db *DB) ScanRaw(fn func(key, value []byte) bool) error {
	it, err := db.pdb.NewIter(nil)
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

// DiskSize returns the bytes the store occupies on disk (tables, WAL and
// manifest, as Pebble's metrics count them).
func (db *DB) DiskSize() uint64 {
	return db.pdb.Metrics().DiskSpaceUsage()
}

// pebbleLogger adapts slog to pebble.Logger. Pebble's informational messages
// (WAL recovery, compactions) are logged at debug level.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...))
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}

// Fatalf logs and panics: Pebble calls it on broken invariants and does not
// expect it to return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg)
	panic("pebble: " + msg)
}
