package state

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
)

// field is a cached map field.
type field[V any] struct {
	name    string
	val     V
	wtime   int64
	present bool
	dirty   bool
	stored  stored
}

// mapKey holds the cached fields of one key of a Map.
type mapKey[V any] struct {
	slot   *keySlot // of the key
	fields map[string]*field[V]
	// complete: fields holds every field of the key (absent ones may be
	// left out), so a field not in it is absent.
	complete bool
	// cleared: Clear was called since the last flush; the flush deletes the
	// key's fields in Pebble before writing the dirty ones.
	cleared bool
	dirty   bool // in the table's dirty list
	// dirtyFields lists the dirty fields; a field is listed once.
	dirtyFields []*field[V]
}

// Map is a table holding, per key, a map from field to V; each field is its
// own Pebble entry, so changing one field writes only that field. It belongs
// to its Partition's goroutine.
//
// As with Value, Get returns the cached value itself: Put it again after
// mutating it through a pointer.
type Map[V any] struct {
	p     *Partition
	idx   int // table number in p
	name  string
	codec Codec[V]
	ttl   int64
	clock func() time.Time
	mid   []byte // 00 m name 00: between key and field in raw keys

	dirty   []*mapKey[V]
	nfields int

	sorted  []*field[V] // Range's scratch
	ranging bool
}

// NewMap opens the map table name of partition p. Names are unique among the
// tables of a partition: opening one twice panics. codec.Decode must not keep
// its input, which Pebble reuses.
func NewMap[V any](p *Partition, name string, codec Codec[V], opts ...TableOption) *Map[V] {
	var to tableOptions
	for _, o := range opts {
		o(&to)
	}
	m := &Map[V]{
		p:     p,
		name:  name,
		codec: codec,
		mid:   append(append([]byte{0, kindMap}, name...), 0),
	}
	if to.ttl > 0 {
		m.ttl, m.clock = int64(to.ttl), to.clock
		if m.clock == nil {
			m.clock = time.Now
		}
	}
	m.idx = p.register(name, m)
	return m
}

func (m *Map[V]) now() int64 { return m.clock().UnixNano() }

func (m *Map[V]) expired(f *field[V]) bool {
	return m.ttl > 0 && m.now()-f.wtime >= m.ttl
}

// cached returns the table's mapKey in s, or nil.
func (m *Map[V]) cached(s *keySlot) *mapKey[V] {
	return (*mapKey[V])(s.entry(m.idx))
}

// keyFor returns the cached mapKey of key, creating it if needed.
func (m *Map[V]) keyFor(key string) *mapKey[V] {
	s := m.p.slotFor(key)
	if mk := m.cached(s); mk != nil {
		return mk
	}
	// The fields of an absent key are all cached: none.
	mk := &mapKey[V]{slot: s, fields: make(map[string]*field[V]), complete: s.absent}
	m.p.setEntry(s, m.idx, unsafe.Pointer(mk))
	return mk
}

// addField adds an uncached field to mk.
func (m *Map[V]) addField(mk *mapKey[V], name string) *field[V] {
	f := &field[V]{name: strings.Clone(name)}
	if mk.complete {
		f.stored = storedNo
	}
	mk.fields[f.name] = f
	m.nfields++
	return f
}

func (m *Map[V]) markDirty(mk *mapKey[V], f *field[V]) {
	if !f.dirty {
		f.dirty = true
		mk.dirtyFields = append(mk.dirtyFields, f)
	}
	m.markKeyDirty(mk)
}

func (m *Map[V]) markKeyDirty(mk *mapKey[V]) {
	if !mk.dirty {
		mk.dirty = true
		m.dirty = append(m.dirty, mk)
	}
}

func (m *Map[V]) setAbsent(mk *mapKey[V], f *field[V]) {
	var zero V
	f.val, f.present = zero, false
	m.markDirty(mk, f)
}

// appendFieldKey appends the raw key of (key, field).
func (m *Map[V]) appendFieldKey(dst []byte, key, field string) []byte {
	dst = append(m.p.appendKeyed(dst, key), m.mid...)
	return append(dst, field...)
}

// fieldRange returns the bounds [lower, upper) of the raw keys of the
// fields of key.
func (m *Map[V]) fieldRange(key string) (lower, upper []byte) {
	lower = m.appendFieldKey(nil, key, "")
	upper = append([]byte(nil), lower...)
	upper[len(upper)-1] = 1
	return lower, upper
}

// decode splits a raw value into write time and value.
func (m *Map[V]) decode(raw []byte) (wtime int64, v V, err error) {
	if m.ttl > 0 {
		if len(raw) < 8 {
			return 0, v, fmt.Errorf("value of %d bytes lacks its write time", len(raw))
		}
		wtime, raw = getInt64(raw), raw[8:]
	}
	v, err = m.codec.Decode(raw)
	return wtime, v, err
}

// Get returns field of key: from the cache, else from Pebble (then cached).
// An absent or expired field reads as the zero value and false.
func (m *Map[V]) Get(key, field string) (V, bool, error) {
	var zero V
	var mk *mapKey[V]
	if s := m.p.slot(key); s != nil {
		mk = m.cached(s)
	}
	if mk != nil {
		if f := mk.fields[field]; f != nil {
			if f.present && m.expired(f) {
				m.setAbsent(mk, f)
			}
			return f.val, f.present, nil
		}
	} else {
		mk = m.keyFor(key)
	}
	if mk.complete || mk.slot.absent {
		return zero, false, nil
	}
	f := &fieldLoad[V]{}
	m.p.kbuf = m.appendFieldKey(m.p.kbuf[:0], key, field)
	err := m.p.get(m.p.kbuf, func(raw []byte, ok bool) error {
		if !ok {
			return nil
		}
		f.found = true
		var err error
		f.wtime, f.val, err = m.decode(raw)
		return err
	})
	if err != nil {
		return zero, false, fmt.Errorf("state: map %q: get: %w", m.name, err)
	}
	nf := m.addField(mk, field)
	if !f.found {
		nf.stored = storedNo
		return zero, false, nil
	}
	nf.stored = storedYes
	nf.wtime = f.wtime
	if m.ttl > 0 && m.now()-f.wtime >= m.ttl {
		m.markDirty(mk, nf) // expired: deleted at the next flush
		return zero, false, nil
	}
	nf.val, nf.present = f.val, true
	return nf.val, true, nil
}

type fieldLoad[V any] struct {
	found bool
	wtime int64
	val   V
}

// Put sets field of key to v in the cache and marks it dirty.
func (m *Map[V]) Put(key, field string, v V) {
	mk := m.keyFor(key)
	f := mk.fields[field]
	if f == nil {
		f = m.addField(mk, field)
	}
	f.val, f.present = v, true
	if m.ttl > 0 {
		f.wtime = m.now()
	}
	m.markDirty(mk, f)
}

// Delete deletes field of key.
func (m *Map[V]) Delete(key, field string) {
	mk := m.keyFor(key)
	f := mk.fields[field]
	if f == nil {
		if mk.complete {
			return
		}
		f = m.addField(mk, field)
	} else if !f.present && f.stored == storedNo {
		return
	}
	m.setAbsent(mk, f)
}

// Clear deletes every field of key.
func (m *Map[V]) Clear(key string) {
	mk := m.keyFor(key)
	m.nfields -= len(mk.fields)
	clear(mk.fields)
	clear(mk.dirtyFields)
	mk.dirtyFields = mk.dirtyFields[:0]
	mk.complete, mk.cleared = true, true
	m.markKeyDirty(mk)
}

// Range calls fn for every field of key in field order until fn returns
// false. It sees the cached changes merged over Pebble and leaves every field
// of key cached. fn may change the map: a field deleted during Range is not
// visited afterwards, a field added is not visited.
func (m *Map[V]) Range(key string, fn func(field string, v V) bool) error {
	mk := m.keyFor(key)
	if !mk.complete && mk.slot.absent {
		mk.complete = true // Pebble's fields are stale, or will be when committed
	}
	if !mk.complete {
		if err := m.loadAll(mk); err != nil {
			return fmt.Errorf("state: map %q: range: %w", m.name, err)
		}
	}
	var fields []*field[V]
	if !m.ranging {
		fields = m.sorted[:0]
	}
	for _, f := range mk.fields {
		if f.present && m.expired(f) {
			m.setAbsent(mk, f)
		}
		if f.present {
			fields = append(fields, f)
		}
	}
	slices.SortFunc(fields, func(a, b *field[V]) int { return strings.Compare(a.name, b.name) })
	outer := !m.ranging
	m.ranging = true
	for _, f := range fields {
		if !f.present || mk.fields[f.name] != f {
			continue // deleted or cleared by fn
		}
		if !fn(f.name, f.val) {
			break
		}
	}
	if outer {
		m.ranging = false
		clear(fields)
		m.sorted = fields[:0]
	}
	return nil
}

// loadAll reads every field of mk from Pebble into the cache; cached fields
// win over Pebble's.
func (m *Map[V]) loadAll(mk *mapKey[V]) error {
	lower, upper := m.fieldRange(mk.slot.key)
	it, err := m.p.db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		name := it.Key()[len(lower):]
		if mk.fields[string(name)] != nil {
			continue
		}
		raw, err := it.ValueAndErr()
		if err != nil {
			break
		}
		wtime, v, err := m.decode(raw)
		if err != nil {
			_ = it.Close()
			return err
		}
		f := &field[V]{name: string(name), stored: storedYes, wtime: wtime}
		mk.fields[f.name] = f
		m.nfields++
		if m.ttl > 0 && m.now()-wtime >= m.ttl {
			m.markDirty(mk, f) // expired: deleted at the next flush
			continue
		}
		f.val, f.present = v, true
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	mk.complete = true
	return nil
}

func (m *Map[V]) flush(b *pebble.Batch) error {
	p := m.p
	for i, mk := range m.dirty {
		m.dirty[i] = nil
		if !mk.dirty {
			continue // erased since
		}
		mk.dirty = false
		if mk.cleared {
			mk.cleared = false
			lower, upper := m.fieldRange(mk.slot.key)
			if err := b.DeleteRange(lower, upper, nil); err != nil {
				return fmt.Errorf("map %q: %w", m.name, err)
			}
		}
		for j, f := range mk.dirtyFields {
			mk.dirtyFields[j] = nil
			f.dirty = false
			p.kbuf = m.appendFieldKey(p.kbuf[:0], mk.slot.key, f.name)
			if f.present {
				p.vbuf = p.vbuf[:0]
				if m.ttl > 0 {
					p.vbuf = putInt64(p.vbuf, f.wtime)
				}
				p.vbuf = m.codec.Append(p.vbuf, f.val)
				if err := b.Set(p.kbuf, p.vbuf, nil); err != nil {
					return fmt.Errorf("map %q: %w", m.name, err)
				}
				f.stored = storedYes
				continue
			}
			if f.stored != storedNo {
				if err := b.Delete(p.kbuf, nil); err != nil {
					return fmt.Errorf("map %q: %w", m.name, err)
				}
				f.stored = storedNo
			}
			if mk.complete && mk.fields[f.name] == f {
				delete(mk.fields, f.name)
				m.nfields--
			}
		}
		mk.dirtyFields = mk.dirtyFields[:0]
	}
	m.dirty = m.dirty[:0]
	return nil
}

func (m *Map[V]) drop(x unsafe.Pointer) {
	mk := (*mapKey[V])(x)
	mk.dirty = false
	m.nfields -= len(mk.fields)
}

func (m *Map[V]) evict(x unsafe.Pointer) bool {
	mk := (*mapKey[V])(x)
	if !mk.dirty {
		m.nfields -= len(mk.fields)
		return false
	}
	if mk.cleared {
		return true // Pebble still holds the fields Clear removed
	}
	for name, f := range mk.fields {
		if !f.dirty {
			delete(mk.fields, name)
			m.nfields--
		}
	}
	mk.complete = false
	return true
}

func (m *Map[V]) cachedEntries() int { return m.nfields }
