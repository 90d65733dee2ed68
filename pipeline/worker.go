package pipeline

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/sluicehq/sluice/state"
)

// opInstance is one operator in one partition's chain.
type opInstance struct {
	id       string
	planned  *PlannedOperator
	op       Operator
	onRecord RecordHandler
	onTimer  TimerHandler
	rekeyer  Rekeyer
	timers   *state.Timers
	logger   *slog.Logger
	ctx      Context
	// wm is the operator's event-time watermark.
	wm int64
	// exWM holds, for an operator behind an exchange, the watermark each
	// partition last reported for the operator's inputs.
	exWM []int64
}

// inBatch is a micro-batch of decoded events from one source split for one
// partition, with the split's watermark after it.
type inBatch struct {
	events []Event
	// offsets[i] is the source offset of events[i].
	offsets []int64
	split   int32
	wm      int64
	// final marks the end of a bounded source: the watermark goes to
	// +infinity.
	final bool
	// barrier, when set, makes the worker stop at this point for a
	// checkpoint.
	barrier *barrier
	// remote, when set, is input from the partition's repartition stream.
	remote *remoteBatch
}

// exchItem is one input routed through an exchange to the partition that
// owns its key.
type exchItem struct {
	op     int
	key    string
	event  Event
	record *Record
}

// exchBatch is what one partition sends another at the end of a round: the
// items for it and its watermarks for the operators behind exchanges.
type exchBatch struct {
	from  int
	items []exchItem
	// wms[i] is the sender's watermark of operator i's inputs, for each
	// operator behind an exchange.
	wms []int64
}

// inbox is a worker's unbounded exchange queue: senders never block, so two
// workers exchanging with each other cannot deadlock.
type inbox struct {
	mu     sync.Mutex
	queue  []*exchBatch
	signal chan struct{}
}

func (ib *inbox) put(b *exchBatch) {
	ib.mu.Lock()
	ib.queue = append(ib.queue, b)
	ib.mu.Unlock()
	select {
	case ib.signal <- struct{}{}:
	default:
	}
}

func (ib *inbox) take(dst []*exchBatch) []*exchBatch {
	ib.mu.Lock()
	dst = append(dst, ib.queue...)
	clear(ib.queue)
	ib.queue = ib.queue[:0]
	ib.mu.Unlock()
	return dst
}

// span locates one encoded output in a worker's arena.
type span struct {
	key, id    string
	start, end int
}

// worker owns one pipeline partition: its operator instances, its state and
// its timers. All of its methods run on its goroutine (or, in a Harness, on
// the test's).
type worker struct {
	rt    *engine
	id    int
	clock Clock
	part  *state.Partition
	ops   []*opInstance
	// srcOps are the operators that read the source, in plan order.
	srcOps []*opInstance

	in    chan *inBatch
	inbox inbox
	ctrl  chan ctrlReq

	// splitWM is the watermark of each split feeding the partition; the
	// partition's source watermark srcWM is their minimum.
	splitWM map[int32]int64
	srcWM   int64
	final   bool
	// parked: this process does not own the partition now (see
	// assignment.go); it has no state handle and no operators.
	parked bool
	// lastInput is when (processing time, Unix nanos) input last arrived.
	lastInput int64

	outExch    []*exchBatch
	sentWM     [][]int64
	takeBuf    []*exchBatch
	arena      []byte
	sinkSpans  [][]span
	sinkBuf    []SinkRecord
	lastCtrlID []string
	dead       []DeadLetter
	deadArena  []byte
	// recSlots hold the records being emitted, one per level of nested
	// emits (an operator emitting while it handles a record); recDepth is
	// the number in use.
	recSlots []*Record
	recDepth int

	// x is the worker's side of the repartition streams, when exchanges
	// cross processes (repartition.go).
	x workerRep

	// counters published to the runtime's stats at the end of each round.
	nIn, nOut, nLate, nErr int64
}

func newWorker(rt *engine, id int) (*worker, error) {
	w := &worker{
		rt:      rt,
		id:      id,
		clock:   rt.clock,
		part:    rt.db.Partition(id),
		in:      make(chan *inBatch, 4),
		ctrl:    make(chan ctrlReq),
		splitWM: make(map[int32]int64),
		srcWM:   rt.restoredWM,
		inbox:   inbox{signal: make(chan struct{}, 1)},
	}
	w.outExch = make([]*exchBatch, rt.nparts)
	w.sentWM = make([][]int64, rt.nparts)
	w.sinkSpans = make([][]span, len(rt.plan.Sinks))
	w.lastCtrlID = make([]string, len(rt.plan.Sinks))
	if err := w.openOperators(rt.restoredWM, rt.restoredWM, rt.restoredWM); err != nil {
		return nil, err
	}
	return w, nil
}

// openOperators makes and opens the partition's operator instances over
// w.part, with wm as their watermark, or behindWM for an operator behind an
// exchange (one that is fed through an exchange, or downstream of one: its
// watermark depends on every partition's, not on this one's alone), and
// exWM as what they assume of every partition feeding them through an
// exchange.
func (w *worker) openOperators(wm, behindWM, exWM int64) error {
	rt, id := w.rt, w.id
	w.ops, w.srcOps = nil, nil
	behind := make([]bool, len(rt.plan.Operators))
	for _, po := range rt.plan.Operators {
		behind[po.Index] = po.Rekeyed
		for _, i := range po.Inputs {
			behind[po.Index] = behind[po.Index] || behind[i]
		}
		o := &opInstance{id: po.ID, planned: po, op: po.New(), wm: wm}
		if behind[po.Index] {
			o.wm = behindWM
		}
		o.logger = rt.logger.With("operator", po.ID, "partition", id)
		o.onRecord, _ = o.op.(RecordHandler)
		o.onTimer, _ = o.op.(TimerHandler)
		o.rekeyer, _ = o.op.(Rekeyer)
		if o.rekeyer != nil {
			o.exWM = make([]int64, rt.nparts)
			for i := range o.exWM {
				o.exWM[i] = exWM
			}
		}
		if o.onTimer != nil {
			t, err := state.NewTimers(w.part, po.ID+"/timers")
			if err != nil {
				return fmt.Errorf("operator %q: partition %d: timers: %w", po.ID, id, err)
			}
			o.timers = t
		}
		o.ctx = Context{w: w, op: o}
		oc := &OpenContext{OperatorID: po.ID, Partition: id, State: w.part, Clock: rt.clock, Logger: o.logger}
		if err := o.op.Open(oc); err != nil {
			return fmt.Errorf("operator %q: partition %d: open: %w", po.ID, id, err)
		}
		w.ops = append(w.ops, o)
		if len(po.Inputs) == 0 {
			w.srcOps = append(w.srcOps, o)
		}
	}
	return nil
}

// processSource runs a micro-batch from the source through the chain.
func (w *worker) processSource(b *inBatch) {
	if len(b.events) > 0 {
		w.lastInput = w.clock.Now().UnixNano()
	}
	remote := w.rt.rep != nil
	for i := range b.events {
		e := &b.events[i]
		key := e.Key()
		if remote && i < len(b.offsets) {
			w.x.setCause(spaceSource, b.offsets[i])
		}
		for _, o := range w.srcOps {
			if o.rekeyer != nil {
				if gk, ok := o.rekeyer.GroupKey(e); ok {
					w.toExchange(o, gk, e, nil)
				}
				continue
			}
			w.deliverEvent(o, key, e)
		}
	}
	w.nIn += int64(len(b.events))
	if b.final {
		w.final = true
		w.srcWM = maxTime
	} else if b.wm > w.splitWMOf(b.split) {
		w.splitWM[b.split] = b.wm
		w.recomputeSrcWM()
	}
}

func (w *worker) splitWMOf(split int32) int64 {
	if wm, ok := w.splitWM[split]; ok {
		return wm
	}
	return minTime
}

func (w *worker) recomputeSrcWM() {
	if w.final {
		return
	}
	m := maxTime
	for _, wm := range w.splitWM {
		m = min(m, wm)
	}
	if m > w.srcWM {
		w.srcWM = m
	}
}

// deliverEvent hands an event to one operator under key, after firing the
// key's event-time timers that are due at the event's time. Behind an
// exchange a key's events come from many partitions in an order that
// depends on the partitioning, so there timers fire on the watermark only.
func (w *worker) deliverEvent(o *opInstance, key string, e *Event) {
	at := e.Timestamp.UnixNano()
	if o.timers != nil && o.rekeyer == nil {
		w.fireKeyTimers(o, key, at)
	}
	c := &o.ctx
	c.key, c.at, c.cause, c.timer, c.isTimer, c.seq = key, at, e.EventID, "", false, 0
	if err := o.op.OnEvent(c, e); err != nil {
		w.opFailed(o, e, err)
	}
}

// deliverRecord hands a record to one operator under the record's key.
func (w *worker) deliverRecord(o *opInstance, r *Record) {
	at := r.Time.UnixNano()
	if o.timers != nil && o.rekeyer == nil {
		w.fireKeyTimers(o, r.Key, at)
	}
	c := &o.ctx
	c.key, c.at, c.cause, c.timer, c.isTimer, c.seq = r.Key, at, r.ID, "", false, 0
	if err := o.onRecord.OnRecord(c, r); err != nil {
		w.nErr++
		o.logger.Error("record failed", "record_id", r.ID, "err", err)
	}
}

func (w *worker) opFailed(o *opInstance, e *Event, err error) {
	w.nErr++
	start := len(w.deadArena)
	w.deadArena = AppendEventJSON(w.deadArena, e)
	w.dead = append(w.dead, DeadLetter{
		Reason:  fmt.Sprintf("operator %q: %v", o.id, err),
		Split:   -1,
		Payload: w.deadArena[start:len(w.deadArena):len(w.deadArena)],
	})
}

func (w *worker) late(o *opInstance, e *Event, reason string) {
	w.nLate++
	start := len(w.deadArena)
	w.deadArena = AppendEventJSON(w.deadArena, e)
	w.dead = append(w.dead, DeadLetter{
		Reason:  fmt.Sprintf("late for operator %q: %s", o.id, reason),
		Split:   -1,
		Payload: w.deadArena[start:len(w.deadArena):len(w.deadArena)],
	})
}

// forwardEvent passes an event from operator from to its outputs and sinks.
func (w *worker) forwardEvent(from *opInstance, key string, e *Event) {
	for _, di := range from.planned.Outputs {
		d := w.ops[di]
		if d.rekeyer != nil {
			if gk, ok := d.rekeyer.GroupKey(e); ok {
				w.toExchange(d, gk, e, nil)
			}
			continue
		}
		w.deliverEvent(d, key, e)
	}
	for _, si := range from.planned.Sinks {
		start := len(w.arena)
		w.arena = AppendEventJSON(w.arena, e)
		w.sinkSpans[si] = append(w.sinkSpans[si], span{key: key, id: e.EventID, start: start, end: len(w.arena)})
	}
}

// emitRecord passes a record from operator from to its outputs and sinks.
// Control records also take effect here: an erasure deletes every state
// entry and timer of its key in this partition before anything downstream
// sees it, and flows on through operators that do not handle records.
//
// src is the emitter's record (Context.EmitRecord's own copy, on its
// stack): emitRecord works on a copy in a worker-owned slot, so that src
// does not escape and an emitted record costs no allocation when only sinks
// and the record hook see it. passRecord copies the record to the heap for
// the consumers that may keep it (operators and exchanges).
func (w *worker) emitRecord(from *opInstance, src *Record) {
	if w.recDepth == len(w.recSlots) {
		w.recSlots = append(w.recSlots, new(Record))
	}
	r := w.recSlots[w.recDepth]
	*r = *src
	w.recDepth++
	control := r.IsControl()
	if control && r.Type == RecordErasure {
		w.fireBeforeErasure(from, r)
	}
	w.nOut++
	if w.rt.onRecord != nil {
		w.rt.onRecord(w.id, r)
	}
	if control && r.Type == RecordErasure {
		if err := w.part.EraseKey(r.Key); err != nil {
			w.rt.fail(fmt.Errorf("partition %d: erase key: %w", w.id, err))
		}
	}
	w.passRecord(from, r, control, false)
	w.recDepth--
	*r = Record{} // keep nothing of it alive
}

// passRecord passes r to the outputs of from and to its sinks. onHeap says
// r is already a heap copy that consumers may keep; when it is not, the
// first consumer that may keep it gets a heap copy, which every consumer
// after it then shares, as they would share one record.
func (w *worker) passRecord(from *opInstance, r *Record, control, onHeap bool) {
	for _, di := range from.planned.Outputs {
		d := w.ops[di]
		switch {
		case d.rekeyer != nil:
			if !control {
				if !onHeap {
					r, onHeap = heapRecord(r), true
				}
				w.toExchange(d, r.Key, nil, r)
			}
		case d.onRecord != nil:
			if !onHeap {
				r, onHeap = heapRecord(r), true
			}
			w.deliverRecord(d, r)
			if control {
				w.passRecord(d, r, true, onHeap)
			}
		case control:
			w.passRecord(d, r, true, onHeap)
		}
	}
	for _, si := range from.planned.Sinks {
		if control {
			if w.lastCtrlID[si] == r.ID {
				continue
			}
			w.lastCtrlID[si] = r.ID
		}
		start := len(w.arena)
		w.arena = AppendRecordJSON(w.arena, r)
		w.sinkSpans[si] = append(w.sinkSpans[si], span{key: r.Key, id: r.ID, start: start, end: len(w.arena)})
	}
}

func heapRecord(r *Record) *Record {
	c := new(Record)
	*c = *r
	return c
}

// toExchange routes an input of operator o to the partition that owns key.
// Inputs for this partition are processed at once.
func (w *worker) toExchange(o *opInstance, key string, e *Event, r *Record) {
	if w.rt.rep != nil {
		// Across processes, every input goes through the repartition
		// stream, also to this partition.
		w.sendRemote(o, key, e, r)
		return
	}
	p := PartitionOf(key, w.rt.nparts)
	if p == w.id {
		if e != nil {
			w.deliverEvent(o, key, e)
		} else if o.onRecord != nil {
			w.deliverRecord(o, r)
		}
		return
	}
	b := w.outExch[p]
	if b == nil {
		b = w.rt.newExchBatch(w.id)
		w.outExch[p] = b
	}
	b.items = append(b.items, exchItem{op: o.planned.Index, key: key, record: r})
	if e != nil {
		b.items[len(b.items)-1].event = *e
	}
}

// processExchange runs the inputs another partition routed here.
func (w *worker) processExchange(b *exchBatch) {
	for i := range b.items {
		it := &b.items[i]
		o := w.ops[it.op]
		if it.record != nil {
			if o.onRecord != nil {
				w.deliverRecord(o, it.record)
			}
			continue
		}
		w.deliverEvent(o, it.key, &it.event)
		w.nIn++
	}
	for i, wm := range b.wms {
		if o := w.ops[i]; o.exWM != nil && wm > o.exWM[b.from] {
			o.exWM[b.from] = wm
		}
	}
}

// inputWM is the watermark of operator o's inputs in this partition.
func (w *worker) inputWM(o *opInstance) int64 {
	if len(o.planned.Inputs) == 0 {
		return w.srcWM
	}
	m := maxTime
	for _, i := range o.planned.Inputs {
		m = min(m, w.ops[i].wm)
	}
	return m
}

// advanceWatermarks moves every operator's watermark in topological order,
// firing the event-time timers it passes; records from a timer reach the
// operators downstream before their own watermark moves.
func (w *worker) advanceWatermarks() {
	for _, o := range w.ops {
		wm := w.inputWM(o)
		if o.exWM != nil {
			if w.rt.rep == nil {
				// Across processes this partition's watermark comes
				// through the stream too, after its inputs.
				o.exWM[w.id] = wm
			}
			wm = maxTime
			for _, x := range o.exWM {
				wm = min(wm, x)
			}
		}
		o.wm = max(o.wm, wm)
		if o.timers == nil {
			continue
		}
		// Also when the watermark did not move: a timer set at or behind
		// it since the last round is due now.
		for {
			ft, ok := o.timers.PopDue(uint8(EventTime), wm)
			if !ok {
				break
			}
			w.fire(o, ft)
		}
	}
}

// fireKeyTimers fires the event-time timers of key that are due at time at,
// so that a key's results depend only on its own events.
func (w *worker) fireKeyTimers(o *opInstance, key string, at int64) {
	for {
		ft, ok := o.timers.PopDueForKey(key, uint8(EventTime), at)
		if !ok {
			return
		}
		w.fire(o, ft)
	}
}

// fireProcessingTimers fires the processing-time timers due now.
func (w *worker) fireProcessingTimers(now int64) {
	for _, o := range w.ops {
		if o.timers == nil {
			continue
		}
		for {
			ft, ok := o.timers.PopDue(uint8(ProcessingTime), now)
			if !ok {
				break
			}
			w.fire(o, ft)
		}
	}
}

func (w *worker) fire(o *opInstance, ft state.FiredTimer) {
	c := &o.ctx
	// The cause, "timer:<key>/<name>@<at>", is built by EmitRecord into
	// the ids of the records the timer emits, if any.
	c.key, c.at, c.cause, c.timer, c.isTimer, c.seq = ft.Key, ft.At, "", ft.Name, true, 0
	t := Timer{Key: ft.Key, Name: ft.Name, Time: TimeFromNanos(ft.At), Domain: TimeDomain(ft.Domain)}
	if err := o.onTimer.OnTimer(c, t); err != nil {
		w.nErr++
		o.logger.Error("timer failed", "timer", ft.Name, "err", err)
	}
}

// endRound closes a round of processing: watermarks move and fire timers,
// exchange batches go out, outputs go to the sinks, counters to the stats.
func (w *worker) endRound() {
	w.advanceWatermarks()
	if w.rt.rep != nil {
		w.flushRemote(false)
	} else {
		w.flushExchange()
	}
	w.flushSinks()
	w.publish()
}

func (w *worker) flushExchange() {
	nops := len(w.ops)
	for p := range w.outExch {
		if p == w.id {
			continue
		}
		b := w.outExch[p]
		sent := w.sentWM[p]
		if sent == nil {
			sent = make([]int64, nops)
			for i := range sent {
				sent[i] = minTime
			}
			w.sentWM[p] = sent
		}
		changed := false
		for i, o := range w.ops {
			if o.exWM != nil && o.exWM[w.id] > sent[i] {
				changed = true
			}
		}
		if b == nil && !changed {
			continue
		}
		if b == nil {
			b = w.rt.newExchBatch(w.id)
		}
		b.wms = b.wms[:0]
		for i, o := range w.ops {
			wm := minTime
			if o.exWM != nil {
				wm = o.exWM[w.id]
				sent[i] = wm
			}
			b.wms = append(b.wms, wm)
		}
		w.outExch[p] = nil
		w.rt.inflight.Add(1)
		w.rt.workers[p].inbox.put(b)
	}
}

func (w *worker) flushSinks() {
	for si, spans := range w.sinkSpans {
		if len(spans) == 0 {
			continue
		}
		buf := w.sinkBuf[:0]
		for _, s := range spans {
			buf = append(buf, SinkRecord{Key: s.key, ID: s.id, JSON: w.arena[s.start:s.end]})
		}
		if err := w.rt.sinks[si].Write(buf); err != nil {
			w.rt.fail(fmt.Errorf("sink %q: %w", w.rt.plan.Sinks[si].ID, err))
		}
		clear(buf)
		w.sinkBuf = buf[:0]
		w.sinkSpans[si] = spans[:0]
	}
	w.arena = w.arena[:0]
	if len(w.dead) > 0 {
		w.rt.writeDead(w.dead)
		clear(w.dead)
		w.dead = w.dead[:0]
		w.deadArena = w.deadArena[:0]
	}
}

func (w *worker) publish() {
	s := &w.rt.stats
	if w.nIn != 0 {
		s.eventsProcessed.Add(w.nIn)
		w.nIn = 0
	}
	if w.nOut != 0 {
		s.records.Add(w.nOut)
		w.nOut = 0
	}
	if w.nLate != 0 {
		s.late.Add(w.nLate)
		w.nLate = 0
	}
	if w.nErr != 0 {
		s.operatorErrors.Add(w.nErr)
		w.nErr = 0
	}
	w.rt.partWM[w.id].Store(w.srcWM)
}

// drainInbox processes every exchange batch waiting for this worker.
func (w *worker) drainInbox() {
	if w.parked {
		w.discardInbox()
		return
	}
	w.takeBuf = w.inbox.take(w.takeBuf[:0])
	if len(w.takeBuf) == 0 {
		return
	}
	for _, b := range w.takeBuf {
		w.processExchange(b)
	}
	w.endRound()
	n := int64(len(w.takeBuf))
	for i, b := range w.takeBuf {
		w.rt.freeExchBatch(b)
		w.takeBuf[i] = nil
	}
	if w.rt.inflight.Add(-n) == 0 {
		select {
		case w.rt.quiet <- struct{}{}:
		default:
		}
	}
}

// PartitionOf returns the partition of key among n: FNV-1a, as sarama's
// hash partitioner (which watermill-kafka's partitioning marshaler uses)
// computes it, so a Kafka topic keyed by the event key is co-partitioned
// with the pipeline.
func PartitionOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	p := int32(h) % int32(n)
	if p < 0 {
		p = -p
	}
	return int(p)
}
