package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/state"
)

// This file carries exchanges between processes, as Kafka Streams'
// repartition topics do, with Flink-style watermarks. When the source is a
// GroupSource with a Changelog that also offers a Repartition (Kafka),
// every exchanged input goes through the repartition stream, also to the
// partitions this process owns, so that ownership never matters:
//
//   - Worker p sends an input of operator o whose group key belongs to
//     partition q as a message to repartition partition q, tagged with its
//     origin p and its origin position: the source offset of the event that
//     caused it (or the repartition offset, for inputs caused by exchanged
//     input) and an index within that cause, deterministic on replay.
//     Exchange messages are outputs: a checkpoint flushes them before it
//     commits p's offsets.
//   - Worker p sends each repartition partition a watermark marker (the
//     watermark of o's inputs in p) when it advanced, at most every
//     markerEvery and at every checkpoint, after p's inputs in the same
//     stream. Operator o's watermark in q is the minimum over the last
//     marker of every origin.
//   - The owner of partition q reads repartition partition q directly,
//     from after the repartition offset stored with q's state, and skips
//     inputs at or below the highest origin position it applied of their
//     (operator, origin): duplicates from an origin replayed after a crash.
//     The offset, the positions and the origins' watermarks are stored with
//     q's state, in the checkpoint batch, so they travel with the changelog.
//
// Inputs caused by an event or an exchanged input have positions that do
// not depend on batching, so the dedup is exact for them. A record that a
// watermark timer emits takes the position after the last input processed,
// which depends on where micro-batches ended: if such a record is exchanged
// (only operators that handle records receive them), a replay after a crash
// may apply it twice or skip it. The built-in operators behind exchanges
// take events only.

// ExchangeKind says what an ExchangeMessage carries.
type ExchangeKind uint8

const (
	// ExchangeEvent carries an event (Payload: its JSON).
	ExchangeEvent ExchangeKind = iota + 1
	// ExchangeRecord carries a record (Payload: its JSON).
	ExchangeRecord
	// ExchangeWatermark carries the origin's watermark of the operator's
	// inputs (Watermark); no payload.
	ExchangeWatermark
)

// ExchangePosition is where an exchanged input comes from in its origin
// partition: the offset of its cause (a source message, or a repartition
// message) and its index among the inputs of that cause. Positions of one
// (operator, origin, space) are strictly increasing in a stream.
type ExchangePosition struct {
	// Space is 0 for a cause in the source, 1 for a cause in the
	// repartition stream.
	Space uint8
	// Offset is the cause's offset.
	Offset int64
	// Index is the input's index among the inputs of its cause.
	Index uint32
}

func (p ExchangePosition) after(q ExchangePosition) bool {
	if p.Offset != q.Offset {
		return p.Offset > q.Offset
	}
	return p.Index > q.Index
}

// ExchangeMessage is one message of a repartition stream.
type ExchangeMessage struct {
	// Partition is the repartition partition: the pipeline partition
	// that owns the input's group key.
	Partition int
	// Offset is the message's offset in its repartition partition (set
	// on received messages only).
	Offset int64
	// Kind says what the message carries.
	Kind ExchangeKind
	// Operator is the index (in Plan.Operators) of the operator the
	// input is for; OperatorID its id.
	Operator   int
	OperatorID string
	// Origin is the partition that sent the message.
	Origin int
	// Position is the input's position in its origin (inputs only).
	Position ExchangePosition
	// Key is the input's group key (inputs only).
	Key string
	// Watermark is the origin's watermark (markers only).
	Watermark int64
	// Payload is the event's or record's JSON. A sent payload belongs
	// to the Repartition; a received one is valid during the callback.
	Payload []byte
	// More is set on a received message when more messages stored at
	// the same offset follow it (a Repartition may store several in
	// one): the stream's offset counts as applied after the last.
	More bool
}

// Repartition carries exchanges between the processes of a group: one
// stream per pipeline partition (a Kafka topic with as many partitions as
// the pipeline), read by whichever process owns the partition.
type Repartition interface {
	// Send hands messages to the sender, in order; it does not wait for
	// them to be durable. Messages to one partition keep their order.
	Send(msgs []ExchangeMessage) error
	// Flush waits until every message sent before the call is durable.
	Flush() error
	// Consume starts reading partition p from the message after offset
	// after (-1: from the start), calling deliver with batches of
	// messages in order, from a goroutine of its own, until Stop(p). It
	// calls fail if the stream cannot be read any further.
	Consume(p int, after int64, deliver func([]ExchangeMessage), fail func(error)) error
	// Stop stops reading partition p; once it returns, deliver is no
	// longer called for it. Stopping a partition not being read does
	// nothing. Stops of different partitions may run concurrently.
	Stop(p int) error
}

// RepartitionPurger is implemented by Repartitions that can delete what
// has been applied for good, as Kafka Streams purges its repartition
// topics.
type RepartitionPurger interface {
	// Purge says that partition p's stream is applied up to and including
	// offset by a checkpoint that has committed and replicated. It must
	// not block.
	Purge(p int, offset int64)
}

// RepartitionSource is implemented by GroupSources that can carry
// exchanges between processes. The runtime calls Repartition after Bind,
// when the plan has exchanges and Bind returned a Changelog.
type RepartitionSource interface {
	GroupSource
	// Repartition returns the repartition streams of the pipeline that
	// Bind named.
	Repartition() (Repartition, error)
}

const (
	// markerEvery is the least time between two rounds of watermark
	// markers from one partition (checkpoints and the end of a bounded
	// source send them at once).
	markerEvery = 150 * time.Millisecond
	// exchangeTable is the state table of a partition's repartition
	// bookkeeping. Its keys start with 0x01 so that no erasure of a user
	// key reaches them.
	exchangeTable = "sluice.exchange"
	// spaceSource and spaceRepartition are the ExchangePosition spaces.
	spaceSource      = 0
	spaceRepartition = 1
)

// appliedKey names the dedup position of inputs of one operator from one
// origin in one position space.
type appliedKey struct {
	op, origin int32
	space      uint8
}

// remoteItem is one decoded exchange message for a worker.
type remoteItem struct {
	kind   ExchangeKind
	op     int
	origin int
	pos    ExchangePosition
	offset int64
	more   bool // more items stored at offset follow
	key    string
	wm     int64
	event  Event
	record *Record
}

// remoteBatch is a batch of exchange messages of one repartition partition.
type remoteBatch struct {
	gen   uint64
	items []remoteItem
}

// workerRep is a worker's side of the repartition streams.
type workerRep struct {
	// cause is the position of the input being processed; the inputs it
	// causes take the next indexes.
	cause ExchangePosition
	// out collects the messages of a round; arena their payloads (a
	// chunk is never reused: the sender keeps the payloads).
	out   []ExchangeMessage
	arena []byte
	// sentWM is the watermark last sent for each operator (by index);
	// lastMark when (monotonic) markers were last sent.
	sentWM   []int64
	lastMark time.Time

	// Receiving: gen is the generation of the consumer feeding this
	// partition (batches of an older one are stale); offset the last
	// repartition offset applied; applied the highest position applied.
	gen     uint64
	offset  int64
	applied map[appliedKey]*ExchangePosition
	// flushed is the offset the checkpoint being taken saved, -1 when
	// it saved none (read by the coordinator once the flush is done).
	flushed int64
	table   *state.Value[[]byte]
	// saved holds what the table holds, so that a checkpoint writes
	// (and replicates) only what changed.
	saved map[string]string
	// finalDone: every operator behind an exchange has the final
	// watermark from every origin.
	finalDone bool
}

// setCause starts the inputs caused by the message at offset in space.
func (x *workerRep) setCause(space uint8, offset int64) {
	x.cause = ExchangePosition{Space: space, Offset: offset}
}

// sendRemote turns an exchanged input into a message of the repartition
// stream of the partition that owns key.
func (w *worker) sendRemote(o *opInstance, key string, e *Event, r *Record) {
	x := &w.x
	m := ExchangeMessage{
		Partition:  PartitionOf(key, w.rt.nparts),
		Operator:   o.planned.Index,
		OperatorID: o.id,
		Origin:     w.id,
		Position:   x.cause,
		Key:        key,
	}
	x.cause.Index++
	if cap(x.arena)-len(x.arena) < 4096 {
		x.arena = make([]byte, 0, 256<<10)
	}
	start := len(x.arena)
	if e != nil {
		m.Kind = ExchangeEvent
		x.arena = AppendEventJSON(x.arena, e)
	} else {
		if o.onRecord == nil {
			return // nothing would handle it
		}
		m.Kind = ExchangeRecord
		x.arena = AppendRecordJSON(x.arena, r)
	}
	m.Payload = x.arena[start:len(x.arena):len(x.arena)]
	x.out = append(x.out, m)
}

// flushRemote sends the round's messages and, when they advanced and
// markerEvery passed (or force), the watermark markers.
func (w *worker) flushRemote(force bool) {
	x := &w.x
	if x.sentWM == nil {
		x.sentWM = make([]int64, len(w.rt.plan.Operators))
		for i := range x.sentWM {
			x.sentWM[i] = minTime
		}
	}
	now := time.Now()
	if force || w.final || now.Sub(x.lastMark) >= markerEvery {
		marked := false
		for _, o := range w.ops {
			if o.exWM == nil {
				continue
			}
			wm := w.inputWM(o)
			if wm <= x.sentWM[o.planned.Index] {
				continue
			}
			x.sentWM[o.planned.Index] = wm
			marked = true
			for q := range w.rt.nparts {
				x.out = append(x.out, ExchangeMessage{
					Partition: q, Kind: ExchangeWatermark, Operator: o.planned.Index, OperatorID: o.id,
					Origin: w.id, Watermark: wm,
				})
			}
		}
		if marked {
			x.lastMark = now
		}
	}
	if len(x.out) == 0 {
		return
	}
	if err := w.rt.rep.Send(x.out); err != nil {
		w.rt.fail(fmt.Errorf("partition %d: repartition: %w", w.id, err))
	}
	clear(x.out)
	x.out = x.out[:0]
}

// processRemote applies a batch of the partition's repartition stream.
func (w *worker) processRemote(b *remoteBatch) {
	x := &w.x
	if w.parked || b.gen != x.gen {
		return // a stale consumer's: the stream is read again from the committed offset
	}
	for i := range b.items {
		it := &b.items[i]
		if it.offset <= x.offset {
			continue // applied, and checkpointed, with its whole stored message
		}
		if !it.more {
			x.offset = it.offset
		}
		if it.op < 0 || it.op >= len(w.ops) || w.ops[it.op].exWM == nil || it.origin < 0 || it.origin >= w.rt.nparts {
			w.rt.logger.Warn("repartition message for no exchange here; skipped", "partition", w.id, "offset", it.offset,
				"operator", it.op, "origin", it.origin)
			continue
		}
		o := w.ops[it.op]
		if it.kind == ExchangeWatermark {
			o.exWM[it.origin] = max(o.exWM[it.origin], it.wm)
			continue
		}
		k := appliedKey{op: int32(it.op), origin: int32(it.origin), space: it.pos.Space}
		switch last := x.applied[k]; {
		case last == nil:
			p := it.pos
			x.applied[k] = &p
		case !it.pos.after(*last):
			continue // a replayed origin's duplicate
		default:
			*last = it.pos // one map lookup per input
		}
		if x.cause.Space != spaceRepartition || x.cause.Offset != it.offset {
			// The inputs stored at one offset share a cause, so the
			// positions of what they cause go on from one to the next.
			x.setCause(spaceRepartition, it.offset)
		}
		if it.kind == ExchangeRecord {
			if o.onRecord != nil {
				w.deliverRecord(o, it.record)
			}
			continue
		}
		w.deliverEvent(o, it.key, &it.event)
		w.nIn++
	}
}

// remoteFinal reports whether every operator behind an exchange has the
// final watermark from every origin; it runs after advanceWatermarks.
func (w *worker) remoteFinal() bool {
	for _, o := range w.ops {
		for _, wm := range o.exWM {
			if wm != maxTime {
				return false
			}
		}
	}
	return true
}

// Keys of the exchange table.
var (
	keyExOffset = "\x01offset"
)

func keyExWM(op, origin int) string {
	return "\x01wm/" + strconv.Itoa(op) + "/" + strconv.Itoa(origin)
}

func keyExApplied(k appliedKey) string {
	return "\x01pos/" + strconv.Itoa(int(k.op)) + "/" + strconv.Itoa(int(k.origin)) + "/" + strconv.Itoa(int(k.space))
}

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }
func (bytesCodec) Decode(src []byte) ([]byte, error)  { return append([]byte(nil), src...), nil }

// loadRemote reads the partition's repartition bookkeeping from its state
// after a reopen: the repartition offset, the positions applied, and the
// origins' watermarks, from which the operators behind an exchange take
// their watermark back.
func (w *worker) loadRemote(gen uint64) error {
	x := &w.x
	x.gen, x.offset, x.finalDone = gen, -1, false
	// A previous owner's final watermark says nothing of this one's.
	w.rt.repFinal[w.id].Store(false)
	x.applied = make(map[appliedKey]*ExchangePosition)
	x.saved = make(map[string]string)
	x.sentWM = nil
	x.lastMark = time.Time{}
	x.table = state.NewValue[[]byte](w.part, exchangeTable, bytesCodec{})
	get := func(key string) ([]byte, bool, error) {
		v, ok, err := x.table.Get(key)
		if err != nil {
			return nil, false, fmt.Errorf("partition %d: read exchange state: %w", w.id, err)
		}
		if ok {
			x.saved[key] = string(v)
		}
		return v, ok, nil
	}
	if v, ok, err := get(keyExOffset); err != nil {
		return err
	} else if ok && len(v) == 8 {
		x.offset = int64(binary.BigEndian.Uint64(v))
	}
	for _, o := range w.ops {
		if o.exWM == nil {
			continue
		}
		for origin := range o.exWM {
			o.exWM[origin] = minTime
			if v, ok, err := get(keyExWM(o.planned.Index, origin)); err != nil {
				return err
			} else if ok && len(v) == 8 {
				o.exWM[origin] = int64(binary.BigEndian.Uint64(v))
			}
			for space := uint8(0); space <= spaceRepartition; space++ {
				k := appliedKey{op: int32(o.planned.Index), origin: int32(origin), space: space}
				if v, ok, err := get(keyExApplied(k)); err != nil {
					return err
				} else if ok && len(v) == 12 {
					x.applied[k] = &ExchangePosition{Space: space, Offset: int64(binary.BigEndian.Uint64(v)), Index: binary.BigEndian.Uint32(v[8:])}
				}
			}
		}
	}
	// The operators behind an exchange take back the watermark they had
	// at the checkpoint: an exchange's operator the minimum over its
	// origins, one downstream of it the minimum over its inputs, in plan
	// order (as advanceWatermarks computes them, without firing timers).
	behind := make([]bool, len(w.ops))
	for _, o := range w.ops {
		i := o.planned.Index
		if o.exWM != nil {
			behind[i] = true
			o.wm = slices.Min(o.exWM)
			continue
		}
		for _, in := range o.planned.Inputs {
			behind[i] = behind[i] || behind[in]
		}
		if behind[i] {
			o.wm = w.inputWM(o)
		}
	}
	return nil
}

// saveRemote writes the partition's repartition bookkeeping into its
// state, to be flushed with it.
func (w *worker) saveRemote() {
	x := &w.x
	if x.table == nil {
		return
	}
	save := func(key string, v []byte) {
		if old, ok := x.saved[key]; ok && old == string(v) {
			return
		}
		x.saved[key] = string(v)
		x.table.Put(key, bytes.Clone(v))
	}
	put := func(key string, v int64) {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(v))
		save(key, b[:])
	}
	put(keyExOffset, x.offset)
	x.flushed = x.offset
	for _, o := range w.ops {
		for origin, wm := range o.exWM {
			put(keyExWM(o.planned.Index, origin), wm)
		}
	}
	for k, pos := range x.applied {
		var b [12]byte
		binary.BigEndian.PutUint64(b[:], uint64(pos.Offset))
		binary.BigEndian.PutUint32(b[8:], pos.Index)
		save(keyExApplied(k), b[:])
	}
}

// decodeRemote decodes a batch of exchange messages for a worker.
func decodeRemote(plan *Plan, dec *EventDecoder, gen uint64, msgs []ExchangeMessage) (*remoteBatch, error) {
	b := &remoteBatch{gen: gen, items: make([]remoteItem, len(msgs))}
	for i := range msgs {
		m := &msgs[i]
		// A message written under another plan (an operator added,
		// removed or moved since) must not reach the operator that now
		// has its index.
		if m.Operator < 0 || m.Operator >= len(plan.Operators) || plan.Operators[m.Operator].ID != m.OperatorID {
			return nil, fmt.Errorf("repartition partition %d offset %d: message for operator %q at index %d, which this plan does not have there",
				m.Partition, m.Offset, m.OperatorID, m.Operator)
		}
		it := &b.items[i]
		*it = remoteItem{kind: m.Kind, op: m.Operator, origin: m.Origin, pos: m.Position, offset: m.Offset, more: m.More, key: m.Key, wm: m.Watermark}
		switch m.Kind {
		case ExchangeWatermark:
		case ExchangeEvent:
			if err := dec.Decode(m.Payload, &it.event); err != nil {
				return nil, fmt.Errorf("repartition partition %d offset %d: event: %w", m.Partition, m.Offset, err)
			}
		case ExchangeRecord:
			r, err := decodeRecordJSON(m.Payload)
			if err != nil {
				return nil, fmt.Errorf("repartition partition %d offset %d: record: %w", m.Partition, m.Offset, err)
			}
			it.record = r
		default:
			return nil, fmt.Errorf("repartition partition %d offset %d: unknown kind %d", m.Partition, m.Offset, m.Kind)
		}
	}
	return b, nil
}

// decodeRecordJSON decodes a record that AppendRecordJSON encoded. Its
// Data is the raw JSON of the payload (json.RawMessage), which encodes
// back to the same JSON.
func decodeRecordJSON(data []byte) (*Record, error) {
	var v struct {
		ID       string          `json:"id"`
		Type     string          `json:"type"`
		Key      string          `json:"key"`
		Time     time.Time       `json:"time"`
		Operator string          `json:"operator"`
		Data     json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	if v.ID == "" {
		return nil, errors.New("no id")
	}
	r := &Record{ID: v.ID, Type: v.Type, Key: v.Key, Time: v.Time, Operator: v.Operator}
	if len(v.Data) > 0 && string(v.Data) != "null" {
		r.Data = v.Data
	}
	return r, nil
}

// bindRepartition takes the source's repartition streams, when the plan
// has exchanges, the source replicates state and it offers them.
func (rt *engine) bindRepartition(gs GroupSource) error {
	rs, ok := gs.(RepartitionSource)
	if !ok || !rt.grp.exchanges || rt.grp.changelog == nil {
		return nil
	}
	rep, err := rs.Repartition()
	if err != nil {
		return fmt.Errorf("source %s: repartition: %w", rt.plan.Spec.Source.Type, err)
	}
	rt.rep = rep
	rt.repOn = make([]bool, rt.nparts)
	rt.repApplied = make([]int64, rt.nparts)
	rt.repFinal = make([]atomic.Bool, rt.nparts)
	return nil
}

// startRepartition starts reading partition p's repartition stream after
// offset after, for the worker's reader generation gen; grp.mu is held.
func (rt *engine) startRepartition(p int, gen uint64, after int64) error {
	w := rt.workers[p]
	dec := &EventDecoder{}
	deliver := func(msgs []ExchangeMessage) {
		if rt.failed() != nil {
			// Nothing after a batch that failed may be applied: a
			// checkpoint would record an offset past it.
			return
		}
		b, err := decodeRemote(rt.plan, dec, gen, msgs)
		if err != nil {
			rt.fail(fmt.Errorf("partition %d: %w", p, err))
			return
		}
		ib := rt.newInBatch()
		ib.remote = b
		w.in <- ib
	}
	fail := func(err error) { rt.fail(fmt.Errorf("partition %d: repartition: %w", p, err)) }
	if err := rt.rep.Consume(p, after, deliver, fail); err != nil {
		return fmt.Errorf("partition %d: repartition: %w", p, err)
	}
	rt.repOn[p] = true
	return nil
}

// stopRepartitionOf stops reading the repartition streams of parts, all
// at once (a reader may wait for a fetch in flight to end); grp.mu is
// held.
func (rt *engine) stopRepartitionOf(parts []int) error {
	if rt.rep == nil {
		return nil
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		if !rt.repOn[p] {
			continue
		}
		rt.repOn[p] = false
		wg.Go(func() {
			if err := rt.rep.Stop(p); err != nil {
				errs[i] = fmt.Errorf("partition %d: stop repartition: %w", p, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stopRepartition stops every repartition reader before the workers stop.
func (rt *engine) stopRepartition() {
	if rt.rep == nil {
		return
	}
	rt.grp.mu.Lock()
	defer rt.grp.mu.Unlock()
	all := make([]int, rt.nparts)
	for p := range all {
		all[p] = p
	}
	if err := rt.stopRepartitionOf(all); err != nil {
		rt.logger.Warn("stop repartition", "err", err)
	}
}

// noteRemoteFinal publishes whether the partition has the final watermark
// from every origin.
func (w *worker) noteRemoteFinal() {
	w.rt.repFinal[w.id].Store(!w.parked && w.remoteFinal())
}

// waitRemoteFinal waits, at the end of a bounded source, until every
// partition this process owns has had the final watermark of every origin
// through its repartition stream, so that every exchanged input is applied
// before the final checkpoint.
func (rt *engine) waitRemoteFinal(ctx context.Context) {
	if rt.rep == nil {
		return
	}
	start := time.Now()
	logged := start
	for {
		done := true
		rt.ckptMu.RLock()
		for p, own := range rt.grp.owned {
			if own && !rt.repFinal[p].Load() {
				done = false
				break
			}
		}
		rt.ckptMu.RUnlock()
		if done || ctx.Err() != nil || rt.failed() != nil {
			return
		}
		if time.Since(logged) >= 10*time.Second {
			logged = time.Now()
			rt.logger.Info("waiting for the final watermarks of every partition through the repartition topic",
				"waited", time.Since(start).Round(time.Second))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
