package state

import (
	"bytes"
	"errors"
	"fmt"
	"math"
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
	slot *keySlot // of the timer's key
	ts   *Timers  // the timer's namespace
	name string
	at   int64
	seq  uint64 // changes at every (re)scheduling: older heap entries are stale
	// heapAt is the time of the timer's live heap entry: at most at. A
	// timer moved later keeps its entry, which is pushed again at the
	// timer's time when it reaches the top (see timerHeap.top).
	heapAt    int64
	domain    uint8
	scheduled bool
	dirty     bool
	stored    bool // Pebble holds it once the batch being built commits
}

// heapEntry is a timer's place in a heap. Removing a timer, or moving it
// earlier, leaves its old entry in the heap, stale, to be dropped when it
// reaches the top or when a heap is rebuilt. Moving a timer later, the usual
// case (a session's end moves with every event), touches no heap at all:
// the entry stays, early, and is pushed again at the timer's time when it
// reaches the top.
type heapEntry struct {
	at  int64
	seq uint64
	t   *timer
}

func (e heapEntry) live() bool { return e.t.scheduled && e.t.seq == e.seq }

// before orders entries by time, then key, then name.
func (e heapEntry) before(f heapEntry) bool {
	if e.at != f.at {
		return e.at < f.at
	}
	if e.t.slot.key != f.t.slot.key {
		return e.t.slot.key < f.t.slot.key
	}
	return e.t.name < f.t.name
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
// domain (with lazy deletion) and by key, in the key's slot of the
// partition (beside the key's table entries and its timers of the other
// namespaces); changes are written at the partition's next Flush. It belongs
// to its Partition's goroutine.
type Timers struct {
	p     *Partition
	ns    string
	heaps []timerHeap // by domain
	dirty []*timer
	n     int
	// names holds one copy of each timer name seen (operators use a
	// handful), up to maxTimerNames.
	names map[string]string
}

// maxTimerNames bounds Timers.names.
const maxTimerNames = 1024

// name returns a copy of name that does not share its memory.
func (t *Timers) name(name string) string {
	if c, ok := t.names[name]; ok {
		return c
	}
	c := strings.Clone(name)
	if t.names == nil {
		t.names = make(map[string]string)
	}
	if len(t.names) < maxTimerNames {
		t.names[c] = c
	}
	return c
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
	t := &Timers{p: p, ns: name}
	for _, r := range p.pendingTimers[name] {
		s := p.slotFor(r.key)
		tm := &timer{slot: s, ts: t, name: t.name(r.name), at: r.at, domain: r.domain, stored: true}
		s.timers = append(s.timers, tm)
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
		if s := p.slots[key]; s != nil && s.absent {
			continue // erased: Pebble's timers of key are stale
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

// find returns the timer name of the namespace in s, scheduled or not, or
// nil.
func (t *Timers) find(s *keySlot, name string) *timer {
	for _, tm := range s.timers {
		if tm.ts == t && tm.name == name {
			return tm
		}
	}
	return nil
}

// lookup returns the timer (key, name), scheduled or not, or nil.
func (t *Timers) lookup(key, name string) *timer {
	if s := t.p.slot(key); s != nil {
		return t.find(s, name)
	}
	return nil
}

func (t *Timers) heap(domain uint8) *timerHeap {
	for int(domain) >= len(t.heaps) {
		t.heaps = append(t.heaps, timerHeap{})
	}
	return &t.heaps[domain]
}

// schedule puts tm, not scheduled, at tm.at in tm.domain.
func (t *Timers) schedule(tm *timer) {
	tm.scheduled = true
	tm.seq++
	tm.heapAt = tm.at
	t.heap(tm.domain).push(heapEntry{at: tm.at, seq: tm.seq, t: tm})
	t.n++
	if tm.at < tm.slot.nextAt {
		tm.slot.nextAt = tm.at
	}
}

// unschedule takes tm off its heap, leaving a stale entry.
func (t *Timers) unschedule(tm *timer) {
	tm.scheduled = false
	tm.seq++
	t.heaps[tm.domain].addStale()
	t.n--
}

func (t *Timers) markDirty(tm *timer) {
	if !tm.dirty {
		tm.dirty = true
		t.dirty = append(t.dirty, tm)
	}
}

// forget removes tm from its key's slot, and the slot from the partition
// if it is left empty.
func (t *Timers) forget(tm *timer) {
	s := tm.slot
	for i, x := range s.timers {
		if x == tm {
			s.timers = append(s.timers[:i], s.timers[i+1:]...)
			s.timers[len(s.timers):cap(s.timers)][0] = nil
			break
		}
	}
	if len(s.timers) == 0 {
		t.p.dropIfEmpty(s)
	}
}

// fire unschedules tm; its deletion is written at the next flush if Pebble
// holds it.
func (t *Timers) fire(tm *timer) {
	t.unschedule(tm)
	if tm.stored {
		t.markDirty(tm)
	} else {
		t.forget(tm)
	}
}

// Set sets the timer (key, name) to fire at at in domain; setting it again
// moves it.
func (t *Timers) Set(key, name string, at int64, domain uint8) {
	s := t.p.slotFor(key)
	tm := t.find(s, name)
	switch {
	case tm == nil:
		tm = &timer{slot: s, ts: t, name: t.name(name)}
		s.timers = append(s.timers, tm)
	case tm.scheduled && tm.at == at && tm.domain == domain:
		return
	case tm.scheduled && tm.domain == domain && at > tm.heapAt:
		tm.at = at // a deferred move: its heap entry stays
		if at < s.nextAt {
			s.nextAt = at // moved earlier, yet after its heap entry
		}
		t.markDirty(tm)
		return
	case tm.scheduled:
		t.unschedule(tm)
	}
	tm.at, tm.domain = at, domain
	t.schedule(tm)
	t.markDirty(tm)
}

// Delete deletes the timer (key, name) if it exists.
func (t *Timers) Delete(key, name string) {
	if tm := t.lookup(key, name); tm != nil && tm.scheduled {
		t.fire(tm)
	}
}

// Get returns the time and domain of the timer (key, name).
func (t *Timers) Get(key, name string) (at int64, domain uint8, ok bool) {
	if tm := t.lookup(key, name); tm != nil && tm.scheduled {
		return tm.at, tm.domain, true
	}
	return 0, 0, false
}

// top returns the earliest timer of domain, or nil.
func (t *Timers) top(domain uint8) *timer {
	if int(domain) >= len(t.heaps) {
		return nil
	}
	return t.heaps[domain].top()
}

// Next returns the time of the earliest timer of domain.
func (t *Timers) Next(domain uint8) (at int64, ok bool) {
	if tm := t.top(domain); tm != nil {
		return tm.at, true
	}
	return 0, false
}

// PopDue removes and returns the earliest timer of domain due at upTo (At <=
// upTo); timers due at the same time come in key then name order. The
// deletion is written at the next Flush.
func (t *Timers) PopDue(domain uint8, upTo int64) (FiredTimer, bool) {
	tm := t.top(domain)
	if tm == nil || tm.at > upTo {
		return FiredTimer{}, false
	}
	t.fire(tm)
	return FiredTimer{Key: tm.slot.key, Name: tm.name, At: tm.at, Domain: tm.domain}, true
}

// PopDueForKey is PopDue restricted to the timers of key; it costs
// O(timers of key), and one compare when none of them is due.
func (t *Timers) PopDueForKey(key string, domain uint8, upTo int64) (FiredTimer, bool) {
	// Every scheduled timer has a heap entry at or before its time, so when
	// the earliest entry (live or stale) is later than upTo, no timer of
	// any key is due: no need to look the key up.
	if int(domain) >= len(t.heaps) || len(t.heaps[domain].es) == 0 || t.heaps[domain].es[0].at > upTo {
		return FiredTimer{}, false
	}
	s := t.p.slot(key)
	if s == nil || s.nextAt > upTo {
		return FiredTimer{}, false
	}
	var best *timer
	next := int64(math.MaxInt64)
	for _, tm := range s.timers {
		if !tm.scheduled {
			continue
		}
		next = min(next, tm.at)
		if tm.ts == t && tm.domain == domain && tm.at <= upTo &&
			(best == nil || tm.at < best.at || (tm.at == best.at && tm.name < best.name)) {
			best = tm
		}
	}
	if best == nil {
		// None due: the bound moves up to the key's earliest timer,
		// which timers moved later since left behind.
		s.nextAt = next
		return FiredTimer{}, false
	}
	t.fire(best)
	return FiredTimer{Key: s.key, Name: best.name, At: best.at, Domain: best.domain}, true
}

// Len returns the number of timers.
func (t *Timers) Len() int { return t.n }

func (t *Timers) flush(b *pebble.Batch) error {
	p := t.p
	for i, tm := range t.dirty {
		t.dirty[i] = nil
		if !tm.dirty {
			continue // erased since
		}
		tm.dirty = false
		p.kbuf = appendKeyStart(p.kbuf[:0], tagTimer, p.part, tm.slot.key)
		p.kbuf = append(p.kbuf, t.ns...)
		p.kbuf = append(p.kbuf, 0)
		p.kbuf = append(p.kbuf, tm.name...)
		switch {
		case tm.scheduled:
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

// timerHeap is a binary min-heap of timer entries, some of them stale.
type timerHeap struct {
	es    []heapEntry
	stale int
}

// minRebuild is the number of stale entries below which a heap is never
// rebuilt.
const minRebuild = 1024

// top drops stale entries off the top, pushes again at their time the
// timers moved later since their entry was pushed, and returns the
// earliest timer, or nil. A live entry is never later than its timer, so
// the first one found at its timer's time is the earliest.
func (h *timerHeap) top() *timer {
	for len(h.es) > 0 {
		e := h.es[0]
		if !e.live() {
			h.pop()
			h.stale--
			continue
		}
		if e.at == e.t.at {
			return e.t
		}
		h.pop()
		e.at, e.t.heapAt = e.t.at, e.t.at
		h.push(e)
	}
	return nil
}

// addStale counts an entry that became stale and rebuilds the heap when
// stale entries outnumber live ones.
func (h *timerHeap) addStale() {
	h.stale++
	if h.stale < minRebuild || h.stale*2 < len(h.es) {
		return
	}
	live := h.es[:0]
	for _, e := range h.es {
		if e.live() {
			live = append(live, e)
		}
	}
	clear(h.es[len(live):])
	h.es, h.stale = live, 0
	for i := len(live)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *timerHeap) push(e heapEntry) {
	h.es = append(h.es, e)
	es := h.es
	i := len(es) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !es[i].before(es[parent]) {
			break
		}
		es[i], es[parent] = es[parent], es[i]
		i = parent
	}
}

func (h *timerHeap) pop() {
	n := len(h.es) - 1
	h.es[0] = h.es[n]
	h.es[n] = heapEntry{}
	h.es = h.es[:n]
	if n > 0 {
		h.down(0)
	}
}

func (h *timerHeap) down(i int) {
	es := h.es
	n := len(es)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && es[r].before(es[l]) {
			c = r
		}
		if !es[c].before(es[i]) {
			return
		}
		es[i], es[c] = es[c], es[i]
		i = c
	}
}
