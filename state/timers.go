package state

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// FiredTimer is a timer that PopDue or PopDueForKey removed.
type FiredTimer struct {
	Key, Name string
	At        int64
	Domain    uint8
}

// timer is one timer of a namespace. It stays in its key's list after it
// fired or was deleted until the flush that deletes it from Pebble, so that
// setting it again meanwhile writes one entry, not two.
type timer struct {
	key, name string
	at        int64
	domain    uint8
	idx       int // position in its domain's heap; -1 when not scheduled
	dirty     bool
	stored    bool // Pebble holds it once the batch being built commits
}

// before orders timers by time, then key, then name.
func (t *timer) before(u *timer) bool {
	if t.at != u.at {
		return t.at < u.at
	}
	if t.key != u.key {
		return t.key < u.key
	}
	return t.name < u.name
}

// timerRecord is a persisted timer read at load time.
type timerRecord struct {
	key, name string
	at        int64
	domain    uint8
}

// Timers is a namespace of durable keyed timers: at most one timer per (key,
// name), each with a time and a domain (event or processing time, as the
// caller numbers them). All timers are kept in memory, in one min-heap per
// domain and by key; changes are written at the partition's next Flush. It
// belongs to its Partition's goroutine.
type Timers struct {
	p     *Partition
	ns    string
	byKey map[string][]*timer
	heaps []timerHeap // by domain
	dirty []*timer
	n     int
}

// NewTimers opens the timer namespace name of partition p and loads its
// persisted timers. Names are unique among the timer namespaces of a
// partition.
func NewTimers(p *Partition, name string) (*Timers, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("state: timers %q in partition %d: name contains 0x00", name, p.id)
	}
	if _, dup := p.timerNames[name]; dup {
		return nil, fmt.Errorf("state: timers %q opened twice in partition %d", name, p.id)
	}
	if err := p.loadTimers(); err != nil {
		return nil, fmt.Errorf("state: timers %q in partition %d: %w", name, p.id, err)
	}
	t := &Timers{p: p, ns: name, byKey: make(map[string][]*timer)}
	for _, r := range p.pendingTimers[name] {
		tm := &timer{key: r.key, name: r.name, at: r.at, domain: r.domain, idx: -1, stored: true}
		t.byKey[r.key] = append(t.byKey[r.key], tm)
		t.schedule(tm)
	}
	delete(p.pendingTimers, name)
	p.timerNames[name] = struct{}{}
	p.timers = append(p.timers, t)
	return t, nil
}

// loadTimers reads every persisted timer of the partition into
// pendingTimers, once.
func (p *Partition) loadTimers() error {
	if p.timersLoaded {
		return nil
	}
	lower, upper := partitionRange(tagTimer, p.part)
	it, err := p.db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	pending := make(map[string][]timerRecord)
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[5:]
		i := bytes.IndexByte(k, 0)
		j := bytes.IndexByte(k[i+1:], 0) + i + 1
		v, err := it.ValueAndErr()
		if err != nil {
			break
		}
		if i < 0 || j <= i || len(v) != 9 {
			_ = it.Close()
			return fmt.Errorf("malformed timer entry (key %d bytes, value %d bytes)", len(k), len(v))
		}
		key := string(k[:i])
		if p.isErased(key) {
			continue
		}
		ns := string(k[i+1 : j])
		pending[ns] = append(pending[ns], timerRecord{key: key, name: string(k[j+1:]), at: getInt64(v), domain: v[8]})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	p.pendingTimers = pending
	p.timersLoaded = true
	return nil
}

// find returns the timer (key, name), scheduled or not, or nil.
func (t *Timers) find(key, name string) *timer {
	for _, tm := range t.byKey[key] {
		if tm.name == name {
			return tm
		}
	}
	return nil
}

func (t *Timers) heap(domain uint8) *timerHeap {
	for int(domain) >= len(t.heaps) {
		t.heaps = append(t.heaps, nil)
	}
	return &t.heaps[domain]
}

func (t *Timers) schedule(tm *timer) {
	t.heap(tm.domain).push(tm)
	t.n++
}

func (t *Timers) markDirty(tm *timer) {
	if !tm.dirty {
		tm.dirty = true
		t.dirty = append(t.dirty, tm)
	}
}

// forget removes tm from its key's list.
func (t *Timers) forget(tm *timer) {
	list := t.byKey[tm.key]
	for i, x := range list {
		if x == tm {
			list = append(list[:i], list[i+1:]...)
			list[len(list):cap(list)][0] = nil
			break
		}
	}
	if len(list) == 0 {
		delete(t.byKey, tm.key)
	} else {
		t.byKey[tm.key] = list
	}
}

// unschedule takes a scheduled timer off its heap; its deletion is written
// at the next flush if Pebble holds it.
func (t *Timers) unschedule(tm *timer) {
	t.heaps[tm.domain].remove(tm.idx)
	t.n--
	if tm.stored {
		t.markDirty(tm)
	} else {
		t.forget(tm)
	}
}

// Set sets the timer (key, name) to fire at at in domain; setting it again
// moves it.
func (t *Timers) Set(key, name string, at int64, domain uint8) {
	tm := t.find(key, name)
	switch {
	case tm == nil:
		tm = &timer{name: strings.Clone(name), at: at, domain: domain, idx: -1}
		if list, ok := t.byKey[key]; ok {
			tm.key = list[0].key
			t.byKey[tm.key] = append(list, tm)
		} else {
			tm.key = strings.Clone(key)
			t.byKey[tm.key] = []*timer{tm}
		}
		t.schedule(tm)
	case tm.idx < 0:
		tm.at, tm.domain = at, domain
		t.schedule(tm)
	case tm.at == at && tm.domain == domain:
		return
	case tm.domain == domain:
		tm.at = at
		t.heaps[domain].fix(tm.idx)
	default:
		t.heaps[tm.domain].remove(tm.idx)
		tm.at, tm.domain = at, domain
		t.heap(domain).push(tm)
	}
	t.markDirty(tm)
}

// Delete deletes the timer (key, name) if it exists.
func (t *Timers) Delete(key, name string) {
	if tm := t.find(key, name); tm != nil && tm.idx >= 0 {
		t.unschedule(tm)
	}
}

// Get returns the time and domain of the timer (key, name).
func (t *Timers) Get(key, name string) (at int64, domain uint8, ok bool) {
	if tm := t.find(key, name); tm != nil && tm.idx >= 0 {
		return tm.at, tm.domain, true
	}
	return 0, 0, false
}

// Next returns the time of the earliest timer of domain.
func (t *Timers) Next(domain uint8) (at int64, ok bool) {
	if int(domain) >= len(t.heaps) || len(t.heaps[domain]) == 0 {
		return 0, false
	}
	return t.heaps[domain][0].at, true
}

// PopDue removes and returns the earliest timer of domain due at upTo (At <=
// upTo); timers due at the same time come in key then name order. The
// deletion is written at the next Flush.
func (t *Timers) PopDue(domain uint8, upTo int64) (FiredTimer, bool) {
	if int(domain) >= len(t.heaps) || len(t.heaps[domain]) == 0 || t.heaps[domain][0].at > upTo {
		return FiredTimer{}, false
	}
	tm := t.heaps[domain][0]
	t.unschedule(tm)
	return FiredTimer{Key: tm.key, Name: tm.name, At: tm.at, Domain: tm.domain}, true
}

// PopDueForKey is PopDue restricted to the timers of key; it costs
// O(timers of key).
func (t *Timers) PopDueForKey(key string, domain uint8, upTo int64) (FiredTimer, bool) {
	var best *timer
	for _, tm := range t.byKey[key] {
		if tm.idx >= 0 && tm.domain == domain && tm.at <= upTo && (best == nil || tm.before(best)) {
			best = tm
		}
	}
	if best == nil {
		return FiredTimer{}, false
	}
	t.unschedule(best)
	return FiredTimer{Key: best.key, Name: best.name, At: best.at, Domain: best.domain}, true
}

// Len returns the number of timers.
func (t *Timers) Len() int { return t.n }

// erase removes every timer of key (Pebble's go by range deletion).
func (t *Timers) erase(key string) {
	for _, tm := range t.byKey[key] {
		if tm.idx >= 0 {
			t.heaps[tm.domain].remove(tm.idx)
			t.n--
		}
		tm.dirty = false
	}
	delete(t.byKey, key)
}

func (t *Timers) flush(b *pebble.Batch) error {
	p := t.p
	for i, tm := range t.dirty {
		t.dirty[i] = nil
		if !tm.dirty {
			continue // erased since
		}
		tm.dirty = false
		p.kbuf = appendKeyStart(p.kbuf[:0], tagTimer, p.part, tm.key)
		p.kbuf = append(p.kbuf, t.ns...)
		p.kbuf = append(p.kbuf, 0)
		p.kbuf = append(p.kbuf, tm.name...)
		switch {
		case tm.idx >= 0:
			p.vbuf = append(putInt64(p.vbuf[:0], tm.at), tm.domain)
			if err := b.Set(p.kbuf, p.vbuf, nil); err != nil {
				return fmt.Errorf("timers %q: %w", t.ns, err)
			}
			tm.stored = true
		case tm.stored:
			if err := b.Delete(p.kbuf, nil); err != nil {
				return fmt.Errorf("timers %q: %w", t.ns, err)
			}
			tm.stored = false
			t.forget(tm)
		}
	}
	t.dirty = t.dirty[:0]
	return nil
}

// timerHeap is a binary min-heap of timers that keeps each timer's index.
type timerHeap []*timer

func (h *timerHeap) push(tm *timer) {
	tm.idx = len(*h)
	*h = append(*h, tm)
	h.up(tm.idx)
}

func (h *timerHeap) remove(i int) {
	s := *h
	n := len(s) - 1
	tm := s[i]
	if i != n {
		s[i] = s[n]
		s[i].idx = i
	}
	s[n] = nil
	*h = s[:n]
	tm.idx = -1
	if i != n {
		h.fix(i)
	}
}

func (h timerHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h timerHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h[i].before(h[parent]) {
			break
		}
		h.swap(i, parent)
		i = parent
	}
}

// down sifts i down and reports whether it moved.
func (h timerHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && h[r].before(h[l]) {
			c = r
		}
		if !h[c].before(h[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
