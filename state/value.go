package state

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
)

// entry is a cached table entry.
type entry[T any] struct {
	slot    *keySlot // of the entry's key
	val     T
	wtime   int64 // write time (unix nanos) in tables with a TTL
	present bool  // false: the key is known to be absent
	dirty   bool  // changed since the last flush (and in the dirty list)
	stored  stored
}

// Value is a table holding one value of type T per key. It belongs to its
// Partition's goroutine.
//
// Get returns the cached value itself, not a copy: a caller that mutates a
// value through a pointer, slice or map it holds must Put it again, or the
// change is not marked dirty and never reaches Pebble.
type Value[T any] struct {
	p      *Partition
	idx    int // table number in p
	name   string
	codec  Codec[T]
	ttl    int64 // nanos; 0 means none
	clock  func() time.Time
	suffix []byte // 00 kind name: follows the key in raw keys

	dirty []*entry[T]
	n     int // cached entries
}

// NewValue opens the value table name of partition p. Names are unique among
// the tables of a partition: opening one twice panics. codec.Decode must not
// keep its input, which Pebble reuses.
func NewValue[T any](p *Partition, name string, codec Codec[T], opts ...TableOption) *Value[T] {
	return newValue(p, name, kindValue, codec, opts)
}

func newValue[T any](p *Partition, name string, kind byte, codec Codec[T], opts []TableOption) *Value[T] {
	var to tableOptions
	for _, o := range opts {
		o(&to)
	}
	v := &Value[T]{
		p:      p,
		name:   name,
		codec:  codec,
		suffix: append([]byte{0, kind}, name...),
	}
	if to.ttl > 0 {
		v.ttl, v.clock = int64(to.ttl), to.clock
		if v.clock == nil {
			v.clock = time.Now
		}
	}
	v.idx = p.register(name, v)
	return v
}

// now returns the current time for TTLs.
func (v *Value[T]) now() int64 { return v.clock().UnixNano() }

// cached returns the table's entry in s, or nil.
func (v *Value[T]) cached(s *keySlot) *entry[T] {
	return (*entry[T])(s.entry(v.idx))
}

// Get returns the value of key: from the cache, else from Pebble (then
// cached). An absent or expired key reads as the zero value and false.
func (v *Value[T]) Get(key string) (T, bool, error) {
	e, err := v.lookup(key)
	if err != nil {
		var zero T
		return zero, false, err
	}
	return e.val, e.present, nil
}

// lookup returns the cached entry of key, loading it on a miss.
func (v *Value[T]) lookup(key string) (*entry[T], error) {
	s := v.p.slot(key)
	if s == nil {
		s = v.p.newSlot(key)
	} else if e := v.cached(s); e != nil {
		if e.present && v.ttl > 0 && v.now()-e.wtime >= v.ttl {
			v.setAbsent(e)
		}
		return e, nil
	}
	return v.load(s)
}

// load reads the entry of s's key from Pebble into the cache.
func (v *Value[T]) load(s *keySlot) (*entry[T], error) {
	e := &entry[T]{slot: s, stored: storedNo}
	if !s.absent {
		v.p.kbuf = append(v.p.appendKeyed(v.p.kbuf[:0], s.key), v.suffix...)
		err := v.p.get(v.p.kbuf, func(raw []byte, ok bool) error {
			if !ok {
				return nil
			}
			e.stored = storedYes
			if v.ttl > 0 {
				if len(raw) < 8 {
					return fmt.Errorf("value of %d bytes lacks its write time", len(raw))
				}
				e.wtime, raw = getInt64(raw), raw[8:]
				if v.now()-e.wtime >= v.ttl {
					// Expired: absent now, deleted at the next flush.
					e.dirty = true
					return nil
				}
			}
			val, err := v.codec.Decode(raw)
			if err != nil {
				return err
			}
			e.val, e.present = val, true
			return nil
		})
		if err != nil {
			v.p.dropIfEmpty(s)
			return nil, fmt.Errorf("state: table %q: get: %w", v.name, err)
		}
	}
	v.p.setEntry(s, v.idx, unsafe.Pointer(e))
	v.n++
	if e.dirty {
		v.dirty = append(v.dirty, e)
	}
	return e, nil
}

// entryFor returns the cached entry of key without reading Pebble, creating
// it if needed.
func (v *Value[T]) entryFor(key string) *entry[T] {
	s := v.p.slotFor(key)
	if e := v.cached(s); e != nil {
		return e
	}
	e := &entry[T]{slot: s}
	if s.absent {
		e.stored = storedNo
	}
	v.p.setEntry(s, v.idx, unsafe.Pointer(e))
	v.n++
	return e
}

func (v *Value[T]) markDirty(e *entry[T]) {
	if !e.dirty {
		e.dirty = true
		v.dirty = append(v.dirty, e)
	}
}

func (v *Value[T]) setAbsent(e *entry[T]) {
	var zero T
	e.val, e.present = zero, false
	v.markDirty(e)
}

// Put sets the value of key in the cache and marks it dirty; it is encoded
// only at the next Flush.
func (v *Value[T]) Put(key string, val T) {
	e := v.entryFor(key)
	e.val, e.present = val, true
	if v.ttl > 0 {
		e.wtime = v.now()
	}
	v.markDirty(e)
}

// Delete deletes key.
func (v *Value[T]) Delete(key string) {
	e := v.entryFor(key)
	if !e.present && e.stored == storedNo {
		return
	}
	v.setAbsent(e)
}

func (v *Value[T]) flush(b *pebble.Batch) error {
	p := v.p
	for i, e := range v.dirty {
		v.dirty[i] = nil
		if !e.dirty {
			continue // erased since
		}
		e.dirty = false
		p.kbuf = append(p.appendKeyed(p.kbuf[:0], e.slot.key), v.suffix...)
		if e.present {
			p.vbuf = p.vbuf[:0]
			if v.ttl > 0 {
				p.vbuf = putInt64(p.vbuf, e.wtime)
			}
			p.vbuf = v.codec.Append(p.vbuf, e.val)
			if err := b.Set(p.kbuf, p.vbuf, nil); err != nil {
				return fmt.Errorf("table %q: %w", v.name, err)
			}
			e.stored = storedYes
		} else if e.stored != storedNo {
			if err := b.Delete(p.kbuf, nil); err != nil {
				return fmt.Errorf("table %q: %w", v.name, err)
			}
			e.stored = storedNo
		}
	}
	v.dirty = v.dirty[:0]
	return nil
}

func (v *Value[T]) drop(x unsafe.Pointer) {
	(*entry[T])(x).dirty = false
	v.n--
}

func (v *Value[T]) evict(x unsafe.Pointer) bool {
	if (*entry[T])(x).dirty {
		return true
	}
	v.n--
	return false
}

func (v *Value[T]) cachedEntries() int { return v.n }

// Counter is a table holding an int64 per key; an absent key counts 0. It
// belongs to its Partition's goroutine.
type Counter struct {
	v *Value[int64]
}

// NewCounter opens the counter table name of partition p. Names are unique
// among the tables of a partition: opening one twice panics.
func NewCounter(p *Partition, name string, opts ...TableOption) *Counter {
	return &Counter{v: newValue(p, name, kindCounter, Int64Codec, opts)}
}

// Get returns the count of key.
func (c *Counter) Get(key string) (int64, error) {
	n, _, err := c.v.Get(key)
	return n, err
}

// Add adds n to the count of key and returns the new count.
func (c *Counter) Add(key string, n int64) (int64, error) {
	e, err := c.v.lookup(key)
	if err != nil {
		return 0, err
	}
	e.val += n
	e.present = true
	if c.v.ttl > 0 {
		e.wtime = c.v.now()
	}
	c.v.markDirty(e)
	return e.val, nil
}

// Delete deletes the count of key (it counts 0 again).
func (c *Counter) Delete(key string) { c.v.Delete(key) }
