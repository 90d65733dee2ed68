package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/state"
)

// MaxEventBytes is the largest input the runtime decodes; a larger one is
// dead-lettered.
const MaxEventBytes = 1 << 20

// maxCachedEntries bounds a partition's write-back cache, in entries and in
// keys (an erased key stays cached, absent, until evicted): past it, clean
// entries are dropped after a checkpoint.
const maxCachedEntries = 1 << 20

// RunOption configures a Runner.
type RunOption func(*runOptions)

type runOptions struct {
	clock    Clock
	logger   *slog.Logger
	onRecord func(partition int, r *Record)
	tick     time.Duration
}

// WithClock sets the processing-time clock (default: the wall clock).
func WithClock(c Clock) RunOption { return func(o *runOptions) { o.clock = c } }

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) RunOption { return func(o *runOptions) { o.logger = l } }

// WithRecordHook calls fn for every record any operator emits, on the
// emitting partition's goroutine. It is for tests and taps; fn must not
// block or keep r.
func WithRecordHook(fn func(partition int, r *Record)) RunOption {
	return func(o *runOptions) { o.onRecord = fn }
}

// Stats are a run's counters so far.
type Stats struct {
	// EventsIn counts decoded events accepted from the source.
	EventsIn int64
	// EventsProcessed counts event deliveries to the first operator of
	// each partition and across exchanges.
	EventsProcessed int64
	// Records counts records emitted by operators.
	Records int64
	// DeadLetters counts inputs that could not be processed.
	DeadLetters int64
	// Late counts events operators dropped as too late.
	Late int64
	// Skipped counts redelivered inputs at or below the committed offsets.
	Skipped int64
	// OperatorErrors counts errors returned by operators.
	OperatorErrors int64
	// Checkpoints counts committed checkpoints.
	Checkpoints int64
	// LastCheckpoint is how long the last checkpoint took.
	LastCheckpoint time.Duration
	// Watermark is the lowest source watermark over the partitions.
	Watermark time.Time
}

type stats struct {
	eventsIn, eventsProcessed, records, dead, late, skipped, operatorErrors, checkpoints atomic.Int64
	lastCheckpoint                                                                       atomic.Int64
}

// splitState is the runtime's view of one source split.
type splitState struct {
	mu      sync.Mutex
	dec     EventDecoder
	scratch Event
	// decs, decoded and errs serve decodeAll: a decoder per goroutine,
	// and the batch's events and reasons by index.
	decs      []EventDecoder
	decoded   []Event
	errs      []error
	maxT      int64
	wm        int64
	offset    int64
	committed int64
	pending   []*inBatch
	dead      []DeadLetter
}

type barrier struct{ reached chan struct{} }

type ctrlReq struct {
	batch  *state.Batch
	done   chan error
	resume bool
	// fn, when set, runs on the worker's goroutine (see assignment.go).
	fn func(*worker) error
}

// engine is the shared part of a run: what the partition workers, the
// source and the checkpoint coordinator all see.
type engine struct {
	plan   *Plan
	clock  Clock
	logger *slog.Logger
	db     *state.DB
	nparts int
	bound  int64
	idle   int64

	workers     []*worker
	sinks       []Sink
	dead        DeadLetterSink
	deadMu      sync.Mutex
	source      Source
	partitioned bool

	ckptMu     sync.RWMutex
	splitsMu   sync.Mutex
	splits     map[int32]*splitState
	committed  Offsets
	restoredWM int64

	inflight atomic.Int64
	quiet    chan struct{}
	stats    stats
	partWM   []atomic.Int64
	onRecord func(partition int, r *Record)

	exchPool  sync.Pool
	batchPool sync.Pool

	failMu sync.Mutex
	err    error
	cancel context.CancelCauseFunc

	// grp is what a GroupSource needs (assignment.go).
	grp groupState
	// rep carries the exchanges across processes when the source offers
	// it (repartition.go); nil keeps them in-process.
	rep Repartition
	// repOn[p]: partition p's repartition stream is being read (guarded
	// by grp.mu); repGen numbers the readers; repFinal[p]: partition p
	// has the final watermark from every origin.
	repOn    []bool
	repGen   uint64
	repFinal []atomic.Bool
	// repApplied[p] is partition p's repartition offset the checkpoint
	// being taken saves, -1 if none (checkpoint's, under grp.ckpt).
	repApplied []int64
}

// Runner runs a Plan: it owns the state store, the source, the sinks and
// the partition workers.
type Runner struct {
	rt   *engine
	tick time.Duration
}

// NewRunner opens the state store and the connectors of a plan and makes
// the partition workers. Run it with Run; Close it if Run is never called.
func NewRunner(plan *Plan, opts ...RunOption) (*Runner, error) {
	o := runOptions{tick: 50 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	rt, err := newRuntime(plan, o)
	if err != nil {
		return nil, err
	}
	r := &Runner{rt: rt, tick: o.tick}
	if err := rt.openWorkers(); err != nil {
		return nil, errors.Join(err, r.Close())
	}
	if err := rt.openConnectors(); err != nil {
		return nil, errors.Join(err, r.Close())
	}
	return r, nil
}

// newRuntime opens the state store of a plan.
func newRuntime(plan *Plan, o runOptions) (*engine, error) {
	if o.clock == nil {
		o.clock = WallClock
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	spec := plan.Spec
	syncMode, err := state.ParseSyncMode(spec.State.Sync)
	if err != nil {
		return nil, fmt.Errorf("state.sync: %w", err)
	}
	db, err := state.Open(spec.State.Dir, state.WithLogger(o.logger), state.WithSync(syncMode))
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", spec.State.Dir, err)
	}
	return &engine{
		plan:       plan,
		clock:      o.clock,
		logger:     o.logger,
		db:         db,
		nparts:     spec.Partitions,
		bound:      spec.Time.MaxOutOfOrderness.D().Nanoseconds(),
		idle:       spec.Time.IdleTimeout.D().Nanoseconds(),
		splits:     make(map[int32]*splitState),
		quiet:      make(chan struct{}, 1),
		partWM:     make([]atomic.Int64, spec.Partitions),
		onRecord:   o.onRecord,
		restoredWM: minTime,
	}, nil
}

// openWorkers reads the committed offsets and watermarks and makes the
// partition workers, opening their operators.
func (rt *engine) openWorkers() error {
	var err error
	if rt.committed, err = rt.db.Offsets(); err != nil {
		return fmt.Errorf("read offsets: %w", err)
	}
	wms, err := rt.db.Watermarks()
	if err != nil {
		return fmt.Errorf("read watermarks: %w", err)
	}
	if len(wms) > 0 {
		// Restart from the lowest committed watermark: a safe lower bound
		// for every partition and exchange.
		rt.restoredWM = maxTime
		for _, wm := range wms {
			rt.restoredWM = min(rt.restoredWM, wm)
		}
	}
	for i := range rt.partWM {
		rt.partWM[i].Store(rt.restoredWM)
	}
	for p := range rt.nparts {
		w, err := newWorker(rt, p)
		if err != nil {
			return err
		}
		rt.workers = append(rt.workers, w)
	}
	return nil
}

// openConnectors opens the source, the sinks and the dead-letter output.
func (rt *engine) openConnectors() error {
	var err error
	if rt.plan.Source != nil {
		if rt.source, err = rt.plan.Source(); err != nil {
			return fmt.Errorf("source %s: %w", rt.plan.Spec.Source.Type, err)
		}
		if ps, ok := rt.source.(PartitionedSource); ok {
			rt.partitioned = ps.SplitPartitioned()
		}
		if err := rt.bindGroupSource(); err != nil {
			return err
		}
	}
	for _, ps := range rt.plan.Sinks {
		s, err := ps.Open()
		if err != nil {
			return fmt.Errorf("sink %q: %w", ps.ID, err)
		}
		rt.sinks = append(rt.sinks, s)
	}
	if rt.plan.DeadLetter != nil {
		if rt.dead, err = rt.plan.DeadLetter(); err != nil {
			return fmt.Errorf("dead_letter: %w", err)
		}
	}
	return nil
}

// Stats returns the run's counters so far. It is safe to call at any time.
func (r *Runner) Stats() Stats {
	rt := r.rt
	s := &rt.stats
	wm := maxTime
	for i := range rt.partWM {
		wm = min(wm, rt.partWM[i].Load())
	}
	return Stats{
		EventsIn:        s.eventsIn.Load(),
		EventsProcessed: s.eventsProcessed.Load(),
		Records:         s.records.Load(),
		DeadLetters:     s.dead.Load(),
		Late:            s.late.Load(),
		Skipped:         s.skipped.Load(),
		OperatorErrors:  s.operatorErrors.Load(),
		Checkpoints:     s.checkpoints.Load(),
		LastCheckpoint:  time.Duration(s.lastCheckpoint.Load()),
		Watermark:       TimeFromNanos(wm),
	}
}

// State returns the run's state store, for inspection.
func (r *Runner) State() *state.DB { return r.rt.db }

// Run runs the pipeline until its source ends or ctx is done. At the end of
// a bounded source the watermark goes to +infinity: every window closes and
// every timer fires. Either way Run then drains, takes a final checkpoint
// and closes everything; it returns nil after a clean end.
func (r *Runner) Run(ctx context.Context) error {
	rt := r.rt
	if rt.source == nil {
		return errors.Join(errors.New("pipeline has no source"), r.Close())
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rt.failMu.Lock()
	rt.cancel = cancel
	rt.failMu.Unlock()

	var workers sync.WaitGroup
	for _, w := range rt.workers {
		workers.Go(func() { w.run(r.tick) })
	}
	stopCkpt := make(chan struct{})
	var ckpt sync.WaitGroup
	ckpt.Go(func() {
		t := time.NewTicker(max(rt.plan.Spec.State.CheckpointInterval.D(), time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := rt.checkpoint(); err != nil {
					rt.fail(err)
				}
			case <-stopCkpt:
				return
			}
		}
	})

	srcErr := rt.source.Read(ctx, maps.Clone(rt.committed), rt)
	bounded := srcErr == nil && ctx.Err() == nil
	close(stopCkpt)
	ckpt.Wait()

	var err error
	if rt.failed() == nil {
		if bounded {
			rt.sendFinal()
			rt.waitRemoteFinal(ctx)
		}
		err = rt.checkpoint()
	}
	rt.endRebalancing()
	rt.stopRepartition()
	for _, w := range rt.workers {
		close(w.in)
	}
	workers.Wait()
	if srcErr != nil && errors.Is(srcErr, context.Canceled) && context.Cause(ctx) == context.Canceled {
		srcErr = nil // an ordinary shutdown
	}
	return errors.Join(rt.failed(), srcErr, err, r.Close())
}

// Close closes the connectors and the state store. Run calls it.
func (r *Runner) Close() error {
	rt := r.rt
	var errs []error
	for _, s := range rt.sinks {
		errs = append(errs, s.Close())
	}
	rt.sinks = nil
	if rt.dead != nil {
		errs = append(errs, rt.dead.Close())
		rt.dead = nil
	}
	if c, ok := rt.source.(interface{ Close() error }); ok {
		errs = append(errs, c.Close())
	}
	rt.source = nil
	if rt.db != nil {
		errs = append(errs, rt.db.Close())
		rt.db = nil
	}
	return errors.Join(errs...)
}

// fail records the first fatal error and stops the run.
func (rt *engine) fail(err error) {
	rt.failMu.Lock()
	defer rt.failMu.Unlock()
	if rt.err != nil {
		return
	}
	rt.err = err
	rt.logger.Error("pipeline failed", "err", err)
	if rt.cancel != nil {
		rt.cancel(err)
	}
}

func (rt *engine) failed() error {
	rt.failMu.Lock()
	defer rt.failMu.Unlock()
	return rt.err
}

func (rt *engine) split(id int32) *splitState {
	rt.splitsMu.Lock()
	defer rt.splitsMu.Unlock()
	ss := rt.splits[id]
	if ss == nil {
		ss = &splitState{maxT: minTime, wm: minTime, pending: make([]*inBatch, rt.nparts)}
		ss.dec.DecodeOnly(rt.plan.EventFields())
		if off, ok := rt.committed[id]; ok {
			ss.offset, ss.committed = off, off
		} else {
			ss.offset, ss.committed = -1, -1
		}
		rt.splits[id] = ss
	}
	return ss
}

func (rt *engine) newInBatch() *inBatch {
	if b, ok := rt.batchPool.Get().(*inBatch); ok {
		return b
	}
	return &inBatch{}
}

func (rt *engine) freeInBatch(b *inBatch) {
	clear(b.events)
	*b = inBatch{events: b.events[:0], offsets: b.offsets[:0]}
	rt.batchPool.Put(b)
}

func (rt *engine) newExchBatch(from int) *exchBatch {
	if b, ok := rt.exchPool.Get().(*exchBatch); ok {
		b.from = from
		return b
	}
	return &exchBatch{from: from}
}

func (rt *engine) freeExchBatch(b *exchBatch) {
	clear(b.items)
	b.items, b.wms = b.items[:0], b.wms[:0]
	rt.exchPool.Put(b)
}

// Deliver decodes a batch of one split and hands it to the workers (see
// Deliverer). Events are routed by key hash, or, for a PartitionedSource,
// to the split's partition.
func (rt *engine) Deliver(split int32, batch []Message) error {
	rt.ckptMu.RLock()
	defer rt.ckptMu.RUnlock()
	if err := rt.failed(); err != nil {
		return err
	}
	if err := rt.checkOwned(split); err != nil {
		return err
	}
	ss := rt.split(split)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var accepted, skipped int64
	decoded := decodeAll(ss, batch)
	for i := range batch {
		m := &batch[i]
		if m.Offset <= ss.committed {
			skipped++
			continue
		}
		ss.offset = max(ss.offset, m.Offset)
		// ev is the event to route: a pre-decoded one is copied once, into
		// its partition's batch; a raw one is decoded into scratch, or was
		// decoded with the whole batch.
		ev := &ss.scratch
		var err error
		switch {
		case m.Event != nil:
			ev = m.Event
			err = validateEvent(ev, !ev.Timestamp.IsZero())
		case decoded:
			ev, err = &ss.decoded[i], ss.errs[i]
		default:
			err = decodeMessage(&ss.dec, m, ev)
		}
		if err != nil {
			payload := m.Payload
			if m.Event != nil {
				payload = AppendEventJSON(nil, m.Event)
			}
			ss.dead = append(ss.dead, DeadLetter{Reason: err.Error(), Split: split, Offset: m.Offset, Payload: payload})
			continue
		}
		p := int(split) % rt.nparts
		if !rt.partitioned {
			p = PartitionOf(ev.Key(), rt.nparts)
		}
		b := ss.pending[p]
		if b == nil {
			b = rt.newInBatch()
			ss.pending[p] = b
		}
		b.events = append(b.events, *ev)
		b.offsets = append(b.offsets, m.Offset)
		ss.maxT = max(ss.maxT, ev.Timestamp.UnixNano())
		accepted++
	}
	if decoded {
		clear(ss.decoded) // the events were copied; drop their strings
	}
	if len(ss.dead) > 0 {
		rt.writeDead(ss.dead)
		clear(ss.dead)
		ss.dead = ss.dead[:0]
	}
	rt.stats.eventsIn.Add(accepted)
	rt.stats.skipped.Add(skipped)
	if ss.maxT != minTime {
		ss.wm = max(ss.wm, ss.maxT-rt.bound)
	}
	if rt.partitioned {
		rt.send(ss, split, int(split)%rt.nparts)
		return nil
	}
	for p := range rt.nparts {
		rt.send(ss, split, p)
	}
	return nil
}

// send hands the pending batch of split for partition p to its worker, with
// the split's watermark; with no events it sends only the watermark.
func (rt *engine) send(ss *splitState, split int32, p int) {
	b := ss.pending[p]
	ss.pending[p] = nil
	if b == nil {
		b = rt.newInBatch()
	}
	b.split, b.wm = split, ss.wm
	rt.workers[p].in <- b
}

// sendFinal tells every worker that the bounded source has ended.
func (rt *engine) sendFinal() {
	rt.ckptMu.RLock()
	defer rt.ckptMu.RUnlock()
	for _, w := range rt.workers {
		b := rt.newInBatch()
		b.final, b.wm = true, maxTime
		w.in <- b
	}
}

func (rt *engine) writeDead(letters []DeadLetter) {
	rt.stats.dead.Add(int64(len(letters)))
	rt.deadMu.Lock()
	defer rt.deadMu.Unlock()
	if rt.dead == nil {
		for _, l := range letters {
			rt.logger.Warn("dead letter", "reason", l.Reason, "split", l.Split, "offset", l.Offset)
		}
		return
	}
	if err := rt.dead.WriteDeadLetters(letters); err != nil {
		rt.fail(fmt.Errorf("dead_letter: %w", err))
	}
}

// checkpoint takes a checkpoint in two phases, as Flink's asynchronous
// snapshots do. Synchronously, with the source paused: every partition
// reaches a barrier, the exchanges drain, and every partition's dirty state,
// timers and watermark go into one batch with the source offsets of that
// point. Then the source and the workers go on while the checkpoint
// completes: the sinks flush (output before commit: everything written
// before the barrier is durable), the batch commits, and sources that need
// it are acknowledged (commit before ack).
func (rt *engine) checkpoint() error {
	rt.grp.ckpt.Lock()
	defer rt.grp.ckpt.Unlock()
	start := time.Now()
	batch, offsets, err := rt.snapshot()
	if err != nil {
		return err
	}
	defer batch.Close()
	paused := time.Since(start)
	for i, s := range rt.sinks {
		if err := s.Flush(); err != nil {
			return fmt.Errorf("checkpoint: flush sink %q: %w", rt.plan.Sinks[i].ID, err)
		}
	}
	if rt.dead != nil {
		if err := rt.dead.Flush(); err != nil {
			return fmt.Errorf("checkpoint: flush dead_letter: %w", err)
		}
	}
	if rt.rep != nil {
		// Exchange messages are outputs too: durable before the offsets
		// of their causes commit.
		if err := rt.rep.Flush(); err != nil {
			return fmt.Errorf("checkpoint: flush repartition: %w", err)
		}
	}
	ops, size := batch.Count(), batch.Len()
	if err := rt.appendChangelog(batch); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := batch.Commit(); err != nil {
		return fmt.Errorf("checkpoint: commit: %w", err)
	}
	if pr, ok := rt.rep.(RepartitionPurger); ok {
		for p, off := range rt.repApplied {
			if off >= 0 {
				pr.Purge(p, off)
			}
		}
	}
	rt.splitsMu.Lock()
	for id, off := range offsets {
		ss := rt.splits[id]
		ss.mu.Lock()
		ss.committed = max(ss.committed, off)
		ss.mu.Unlock()
	}
	rt.splitsMu.Unlock()
	if cl, ok := rt.source.(CommitListener); ok {
		cl.Committed(offsets)
	}
	rt.stats.checkpoints.Add(1)
	took := time.Since(start)
	rt.stats.lastCheckpoint.Store(int64(took))
	rt.logger.Debug("checkpoint", "took", took, "paused", paused, "state_ops", ops, "state_bytes", size)
	return nil
}

// snapshot is the synchronous phase of a checkpoint: it returns the batch of
// every partition's state changes and the source offsets they reflect.
func (rt *engine) snapshot() (*state.Batch, Offsets, error) {
	rt.ckptMu.Lock()
	defer rt.ckptMu.Unlock()
	if err := rt.failed(); err != nil {
		return nil, nil, err
	}
	b := &barrier{reached: make(chan struct{}, rt.nparts)}
	for _, w := range rt.workers {
		w.in <- &inBatch{barrier: b}
	}
	for range rt.workers {
		<-b.reached
	}
	for rt.inflight.Load() != 0 {
		<-rt.quiet
	}
	defer func() {
		for _, w := range rt.workers {
			w.ctrl <- ctrlReq{resume: true}
		}
	}()
	batch := rt.db.NewBatch()
	for _, w := range rt.workers {
		done := make(chan error, 1)
		w.x.flushed = -1
		w.ctrl <- ctrlReq{batch: batch, done: done}
		if err := <-done; err != nil {
			batch.Close()
			return nil, nil, fmt.Errorf("checkpoint: partition %d: %w", w.id, err)
		}
		if rt.repApplied != nil {
			rt.repApplied[w.id] = w.x.flushed
		}
	}
	if err := rt.runStopped(); err != nil {
		batch.Close()
		return nil, nil, fmt.Errorf("checkpoint: %w", err)
	}
	rt.splitsMu.Lock()
	defer rt.splitsMu.Unlock()
	offsets := make(Offsets, len(rt.splits))
	for id, ss := range rt.splits {
		ss.mu.Lock()
		if ss.offset > ss.committed {
			batch.SetOffset(id, ss.offset)
		}
		offsets[id] = ss.offset
		ss.mu.Unlock()
	}
	return batch, offsets, nil
}

// run is a worker's loop: source batches, exchange batches, checkpoint
// barriers and clock ticks, until its input channel closes.
func (w *worker) run(tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	w.lastInput = w.clock.Now().UnixNano()
	for {
		select {
		case b, ok := <-w.in:
			if !ok {
				w.drainInbox()
				return
			}
			if b.barrier != nil {
				w.atBarrier(b.barrier)
				continue
			}
			if b.remote != nil {
				w.processRemote(b.remote)
				if !w.parked {
					w.endRound()
					w.noteRemoteFinal()
				}
				w.rt.freeInBatch(b)
				continue
			}
			if w.parked {
				w.rt.freeInBatch(b)
				continue
			}
			w.lastInput = w.clock.Now().UnixNano()
			w.processSource(b)
			w.endRound()
			if w.rt.rep != nil {
				w.noteRemoteFinal()
			}
			w.rt.freeInBatch(b)
		case <-w.inbox.signal:
			w.drainInbox()
		case <-t.C:
			w.onTick()
		}
	}
}

// atBarrier holds the worker at a checkpoint: it keeps processing exchange
// input (so the exchanges drain) and serves the coordinator's requests until
// told to resume.
func (w *worker) atBarrier(b *barrier) {
	b.reached <- struct{}{}
	for {
		select {
		case <-w.inbox.signal:
			w.drainInbox()
		case req := <-w.ctrl:
			if req.resume {
				return
			}
			if req.fn != nil {
				req.done <- req.fn(w)
				continue
			}
			req.done <- w.flushState(req.batch)
		}
	}
}

// flushState writes the partition's dirty state, timers and watermark into
// b. Clean entries are evicted first when the cache is over its bound: they
// were committed by the previous checkpoint, which has completed (entries
// flushed into b must not be evicted before b commits, or a read would find
// the old value in Pebble).
func (w *worker) flushState(b *state.Batch) error {
	if w.parked {
		return nil
	}
	if w.part.CachedEntries() > maxCachedEntries || w.part.CachedKeys() > maxCachedEntries {
		w.part.Evict()
	}
	if w.rt.rep != nil {
		w.flushRemote(true)
		w.saveRemote()
	}
	if err := w.part.Flush(b); err != nil {
		return err
	}
	b.SetWatermark(w.id, w.srcWM)
	return nil
}

// onTick fires due processing-time timers and, when the partition has had no
// input for the idle timeout, moves its watermark with the wall clock.
func (w *worker) onTick() {
	if w.parked {
		return
	}
	now := w.clock.Now().UnixNano()
	w.fireProcessingTimers(now)
	if !w.final && w.rt.idle > 0 && now-w.lastInput >= w.rt.idle {
		if wm := now - w.rt.bound; wm > w.srcWM {
			w.srcWM = wm
		}
	}
	w.endRound()
}

var _ Deliverer = (*engine)(nil)
