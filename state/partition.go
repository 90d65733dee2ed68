package state

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// stored says whether Pebble holds an entry once the batch being built is
// committed; it spares writing deletions of entries that were never written.
type stored uint8

const (
	storedUnknown stored = iota
	storedYes
	storedNo
)

// table is what a Partition needs from each of its tables.
type table interface {
	// flush writes the dirty entries into b and marks them clean.
	flush(b *pebble.Batch) error
	// erase drops key from the cache (its Pebble entries go by range
	// deletion at the next flush).
	erase(key string)
	// markAbsent caches key as absent, unless the cache already has it
	// (it was written after the erasure).
	markAbsent(key string)
	// evict drops clean cached entries.
	evict()
	// cachedEntries returns the number of cached entries.
	cachedEntries() int
}

// Partition holds the state of one pipeline partition: its tables and timer
// namespaces. It belongs to one goroutine (the partition's worker) and takes
// no locks. Changes stay in memory until Flush writes them into a Batch.
//
// Keys, table names, map fields and timer names must not contain the byte
// 0x00; hot-path methods do not check.
type Partition struct {
	db   *DB
	id   int
	part uint32

	tables     []table
	tableNames map[string]struct{}
	timers     []*Timers
	timerNames map[string]struct{}

	// pendingTimers holds the persisted timers of namespaces not opened yet,
	// by namespace; nil until the first NewTimers loads them.
	pendingTimers map[string][]timerRecord
	timersLoaded  bool

	// erased holds the keys erased since the last Flush.
	erased map[string]struct{}

	kbuf []byte // raw keys
	vbuf []byte // raw values
}

func newPartition(db *DB, id int) *Partition {
	return &Partition{
		db:         db,
		id:         id,
		part:       uint32(id),
		tableNames: make(map[string]struct{}),
		timerNames: make(map[string]struct{}),
		erased:     make(map[string]struct{}),
	}
}

// ID returns the partition id.
func (p *Partition) ID() int { return p.id }

// register adds a table; names are unique among a partition's tables.
func (p *Partition) register(name string, t table) {
	if strings.IndexByte(name, 0) >= 0 {
		panic(fmt.Sprintf("state: table name %q contains 0x00", name))
	}
	if _, dup := p.tableNames[name]; dup {
		panic(fmt.Sprintf("state: table %q opened twice in partition %d", name, p.id))
	}
	p.tableNames[name] = struct{}{}
	p.tables = append(p.tables, t)
}

// isErased reports whether key was erased since the last Flush, in which case
// Pebble's entries of key are stale.
func (p *Partition) isErased(key string) bool {
	if len(p.erased) == 0 {
		return false
	}
	_, ok := p.erased[key]
	return ok
}

// get reads a raw key from Pebble and calls fn with its value (nil, false if
// absent). The value is only valid during fn.
func (p *Partition) get(key []byte, fn func(v []byte, ok bool) error) error {
	v, closer, err := p.db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return fn(nil, false)
	}
	if err != nil {
		return err
	}
	err = fn(v, true)
	return errors.Join(err, closer.Close())
}

// Flush writes every change since the last Flush into b: erasures, dirty
// table entries (each key once, whatever the number of writes) and timer
// changes; then marks them clean. The caller commits b.
//
// Until b is committed, entries that leave the cache would be read back from
// Pebble as they were before: commit b before calling Evict.
func (p *Partition) Flush(b *Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			ce, ok := r.(codecError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("state: flush partition %d: %w", p.id, ce.err)
		}
	}()
	pb := b.b
	for key := range p.erased {
		for _, tag := range []byte{tagKeyed, tagTimer} {
			start, end := keyRange(tag, p.part, key)
			if err := pb.DeleteRange(start, end, nil); err != nil {
				return fmt.Errorf("state: flush partition %d: erase: %w", p.id, err)
			}
		}
		for _, t := range p.tables {
			t.markAbsent(key)
		}
	}
	clear(p.erased)
	for _, t := range p.tables {
		if err := t.flush(pb); err != nil {
			return fmt.Errorf("state: flush partition %d: %w", p.id, err)
		}
	}
	for _, t := range p.timers {
		if err := t.flush(pb); err != nil {
			return fmt.Errorf("state: flush partition %d: %w", p.id, err)
		}
	}
	return nil
}

// EraseKey deletes key from every table of the partition (values, counters,
// all map fields) and all its timers, including tables and timer namespaces
// not opened yet. Reads see the erasure at once; Pebble at the next Flush.
func (p *Partition) EraseKey(key string) error {
	if strings.IndexByte(key, 0) >= 0 {
		return fmt.Errorf("state: erase in partition %d: key contains 0x00", p.id)
	}
	for _, t := range p.tables {
		t.erase(key)
	}
	for _, t := range p.timers {
		t.erase(key)
	}
	for ns, recs := range p.pendingTimers {
		kept := recs[:0]
		for _, r := range recs {
			if r.key != key {
				kept = append(kept, r)
			}
		}
		clear(recs[len(kept):])
		p.pendingTimers[ns] = kept
	}
	p.erased[strings.Clone(key)] = struct{}{}
	return nil
}

// Evict drops the clean entries of every table from memory, to bound it;
// dirty entries stay until Flush. Timers always stay in memory.
func (p *Partition) Evict() {
	for _, t := range p.tables {
		t.evict()
	}
}

// CachedEntries returns the number of entries (values, counters, map
// fields) held in memory.
func (p *Partition) CachedEntries() int {
	n := 0
	for _, t := range p.tables {
		n += t.cachedEntries()
	}
	return n
}

// appendKeyed appends the raw key k <part> <key> to dst; the caller appends
// the rest (00 kind name …).
func (p *Partition) appendKeyed(dst []byte, key string) []byte {
	dst = appendTagged(dst, tagKeyed, p.part)
	return append(dst, key...)
}
