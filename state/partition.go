package state

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unsafe"

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

// table is what a Partition needs from each of its tables. A table caches
// at most one entry per key, in the key's slot (keySlot.tables), as an
// unsafe.Pointer to its own entry type (*entry[T] of a Value, *mapKey[V] of
// a Map): only the table that stored an entry converts it back.
type table interface {
	// flush writes the dirty entries into b and marks them clean.
	flush(b *pebble.Batch) error
	// drop forgets x, the table's entry of a key being erased: its changes
	// are not written (the key's Pebble entries go by range deletion at the
	// next flush).
	drop(x unsafe.Pointer)
	// evict reports whether x, an entry of the table, must stay cached
	// (it is dirty); for one that stays, it drops what it can of it. An
	// entry it reports false for is forgotten.
	evict(x unsafe.Pointer) (keep bool)
	// cachedEntries returns the number of cached entries.
	cachedEntries() int
}

// keySlot holds what a partition caches of one key: the entry of each table
// and the key's timers in every namespace. Operators of a partition usually
// share their key, so one map lookup (or none: see Partition.last) serves
// every table and timer namespace the event touches.
//
// A slot stays in Partition.slots while it holds a table entry or a timer,
// or while it is absent; it leaves at the latest at the next Evict after it
// became empty.
type keySlot struct {
	key string
	// tables holds the cached entry of each table, by table number (see
	// table); nil, or shorter than the partition's tables, for none.
	tables []unsafe.Pointer
	// timers lists the key's timers of every namespace (see Timers).
	timers []*timer
	// nextAt is at most the time of every scheduled timer of the key, in
	// every namespace and domain: PopDueForKey before it is one compare.
	nextAt int64
	n      int32 // non-nil entries of tables
	// erased: EraseKey was called since the last Flush, which deletes the
	// key's Pebble entries (the slot is in Partition.erased).
	erased bool
	// absent: Pebble holds nothing of the key that the cache lacks (or
	// will not once the batch of the last Flush is committed): the key was
	// erased since the last Evict. Entries are then created absent rather
	// than read.
	absent bool
}

// entry returns the cached entry of table i, or nil.
func (s *keySlot) entry(i int) unsafe.Pointer {
	if i < len(s.tables) {
		return s.tables[i]
	}
	return nil
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

	tables     []table // by table number
	tableNames map[string]struct{}
	timers     []*Timers
	timerNames map[string]struct{}

	// slots holds the cache of every key, by key (the slot's own copy).
	slots map[string]*keySlot
	// last is the slot looked up last, or nil; it is always in slots.
	last *keySlot

	// pendingTimers holds the persisted timers of namespaces not opened yet,
	// by namespace; nil until the first NewTimers loads them.
	pendingTimers map[string][]timerRecord
	timersLoaded  bool

	// erased lists the slots of the keys erased since the last Flush.
	erased []*keySlot

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
		slots:      make(map[string]*keySlot),
	}
}

// ID returns the partition id.
func (p *Partition) ID() int { return p.id }

// register adds a table and returns its number; names are unique among a
// partition's tables.
func (p *Partition) register(name string, t table) int {
	if strings.IndexByte(name, 0) >= 0 {
		panic(fmt.Sprintf("state: table name %q contains 0x00", name))
	}
	if _, dup := p.tableNames[name]; dup {
		panic(fmt.Sprintf("state: table %q opened twice in partition %d", name, p.id))
	}
	p.tableNames[name] = struct{}{}
	p.tables = append(p.tables, t)
	return len(p.tables) - 1
}

// slot returns the slot of key, or nil.
func (p *Partition) slot(key string) *keySlot {
	if s := p.last; s != nil && s.key == key {
		return s
	}
	s := p.slots[key]
	if s != nil {
		p.last = s
	}
	return s
}

// slotFor returns the slot of key, creating it if needed.
func (p *Partition) slotFor(key string) *keySlot {
	if s := p.slot(key); s != nil {
		return s
	}
	return p.newSlot(key)
}

// newSlot adds an empty slot for key, with its own copy of key. Slots of
// keys up to 16 bytes are allocated together with their key and their table
// array.
func (p *Partition) newSlot(key string) *keySlot {
	var s *keySlot
	var kb []byte
	switch n := len(p.tables); {
	case n <= 2:
		s, kb = newSlotBlock[[2]unsafe.Pointer](n)
	case n <= 4:
		s, kb = newSlotBlock[[4]unsafe.Pointer](n)
	case n <= 6:
		s, kb = newSlotBlock[[6]unsafe.Pointer](n)
	case n <= 8:
		s, kb = newSlotBlock[[8]unsafe.Pointer](n)
	default:
		s, kb = newSlotBlock[[0]unsafe.Pointer](0)
	}
	if len(key) <= len(kb) && len(key) > 0 {
		s.key = unsafe.String(&kb[0], copy(kb, key))
	} else {
		s.key = strings.Clone(key)
	}
	s.nextAt = math.MaxInt64
	p.slots[s.key] = s
	p.last = s
	return s
}

// slotBlock is a slot allocated with its table array (A is an array of
// unsafe.Pointer) and its key: one allocation instead of three, and one
// cache miss fewer on a lookup.
type slotBlock[A any] struct {
	keySlot
	tables A
	key    [16]byte
}

// newSlotBlock returns a new slot whose tables (length n, at most the length
// of A) and key (once copied into the returned buffer) lie in the slot's
// allocation.
func newSlotBlock[A any](n int) (*keySlot, []byte) {
	b := new(slotBlock[A])
	if c := int(unsafe.Sizeof(b.tables) / unsafe.Sizeof(unsafe.Pointer(nil))); c > 0 {
		b.keySlot.tables = unsafe.Slice((*unsafe.Pointer)(unsafe.Pointer(&b.tables)), c)[:n]
	}
	return &b.keySlot, b.key[:]
}

// setEntry caches x as the entry of table i in s.
func (p *Partition) setEntry(s *keySlot, i int, x unsafe.Pointer) {
	if i >= len(s.tables) {
		if len(p.tables) <= cap(s.tables) {
			s.tables = s.tables[:len(p.tables)]
		} else {
			tables := make([]unsafe.Pointer, len(p.tables))
			copy(tables, s.tables)
			s.tables = tables
		}
	}
	s.tables[i] = x
	s.n++
}

// dropIfEmpty forgets s if it holds nothing.
func (p *Partition) dropIfEmpty(s *keySlot) {
	if s.n == 0 && len(s.timers) == 0 && !s.absent {
		delete(p.slots, s.key)
		if p.last == s {
			p.last = nil
		}
	}
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
	for _, s := range p.erased {
		for _, tag := range []byte{tagKeyed, tagTimer} {
			start, end := keyRange(tag, p.part, s.key)
			if err := pb.DeleteRange(start, end, nil); err != nil {
				return fmt.Errorf("state: flush partition %d: erase: %w", p.id, err)
			}
		}
		// Still absent: until Evict, which follows the commit of b.
		s.erased = false
	}
	clear(p.erased)
	p.erased = p.erased[:0]
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
	s := p.slotFor(key)
	for i, x := range s.tables {
		if x != nil {
			p.tables[i].drop(x)
			s.tables[i] = nil
		}
	}
	s.n = 0
	for _, tm := range s.timers {
		if tm.scheduled {
			tm.ts.unschedule(tm)
		}
		tm.dirty = false
	}
	clear(s.timers)
	s.timers = s.timers[:0]
	s.nextAt = math.MaxInt64
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
	s.absent = true
	if !s.erased {
		s.erased = true
		p.erased = append(p.erased, s)
	}
	return nil
}

// Evict drops the clean entries of every table from memory, to bound it;
// dirty entries stay until Flush. Timers always stay in memory.
func (p *Partition) Evict() {
	p.last = nil
	for key, s := range p.slots {
		for i, x := range s.tables {
			if x != nil && !p.tables[i].evict(x) {
				s.tables[i] = nil
				s.n--
			}
		}
		if !s.erased {
			// Committed: Pebble holds what Flush wrote after the erasure.
			s.absent = false
		}
		if s.n == 0 && len(s.timers) == 0 && !s.absent {
			delete(p.slots, key)
		}
	}
}

// CachedKeys returns the number of keys held in memory: those with cached
// entries or timers, and those erased since the last Evict (which read as
// absent without a Pebble read until then).
func (p *Partition) CachedKeys() int { return len(p.slots) }

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
