// Package state is Sluice's state store: Pebble-backed keyed state behind a
// write-back cache, typed tables (value, map, counter), durable timers,
// source offsets, atomic checkpoints, erase-by-key and TTL.
//
// State is organised by pipeline partition. A Partition is owned by one
// goroutine (its worker) and needs no locks; its tables keep decoded values
// in memory and write only what changed, once per checkpoint, into one
// Batch that commits atomically with the source offsets.
package state

// This file fixes the API; the implementation lives beside it.

import "time"

// SyncMode chooses how durable a checkpoint commit is.
type SyncMode uint8

const (
	// SyncCheckpoint (default) fsyncs every checkpoint commit.
	SyncCheckpoint SyncMode = iota
	// SyncAlways fsyncs every commit, including those outside checkpoints.
	SyncAlways
	// SyncNever never waits for the disk: a machine crash may lose the last
	// checkpoints (a process crash loses nothing).
	SyncNever
)

// Codec encodes and decodes the values of a table.
type Codec[T any] interface {
	// Append appends the encoding of v to dst.
	Append(dst []byte, v T) []byte
	// Decode decodes a value that Append encoded.
	Decode(src []byte) (T, error)
}

// TableOption configures a table.
type TableOption func(*tableOptions)

type tableOptions struct {
	ttl   time.Duration
	clock func() time.Time
}

// WithTTL expires an entry ttl after it was last written: an expired entry
// reads as absent and is deleted at the next flush after it is seen.
// clock gives the current time (processing time); nil means time.Now.
func WithTTL(ttl time.Duration, clock func() time.Time) TableOption {
	return func(o *tableOptions) { o.ttl, o.clock = ttl, clock }
}
