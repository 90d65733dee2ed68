package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/sluicehq/sluice/state"
)

// This file lets the partitions of a pipeline move between processes, as
// Kafka Streams' tasks do: a GroupSource (a Kafka consumer group) tells the
// runtime which splits this process owns now, the runtime checkpoints and
// drops a partition it loses, and restores (through a Changelog) and opens a
// partition it gains before any of its events is processed.

// GroupSource is implemented by sources whose splits are shared out among
// the processes of a group and move between them (the partitions of a Kafka
// topic among the members of a consumer group). Split s feeds partition s,
// so the source must have exactly as many splits as the pipeline has
// partitions.
//
// The runtime starts with every partition parked (owned by no one here).
// The source calls Rebalancer.Assign, through the Deliverer that Read gets,
// when it is given splits and before it delivers any of their messages, and
// Rebalancer.Revoke when it loses them, after it has delivered its last
// message of them.
type GroupSource interface {
	PartitionedSource
	// Bind is called once, after the source is opened and before Read,
	// with what the source needs to know of the pipeline. It returns the
	// changelog that carries the partitions' state between processes, or
	// nil when state is not replicated (a partition that moves then starts
	// from whatever this process's store holds of it).
	Bind(b SourceBinding) (Changelog, error)
}

// SourceBinding tells a GroupSource about the pipeline it feeds.
type SourceBinding struct {
	// Pipeline is the spec's name (a Kafka changelog topic is named after it).
	Pipeline string
	// Partitions is the number of pipeline partitions.
	Partitions int
	// Exchanges is true when some operator groups by another key than the
	// event's (the plan has exchanges). Then the exchanges cross processes
	// through the source's repartition streams when it is a
	// RepartitionSource and Bind returns a Changelog (every exchanged input
	// goes through them); otherwise this process must own every partition.
	Exchanges bool
	// Logger is the run's logger.
	Logger *slog.Logger
}

// Rebalancer is implemented by the Deliverer that the runtime hands to a
// GroupSource's Read.
type Rebalancer interface {
	// Assign makes this process the owner of splits (and so of the
	// partitions they feed): it restores each partition's state from the
	// changelog when the local store is missing it or behind, opens the
	// partitions' operators, and returns the committed offset of each split
	// (the last offset the state reflects; -1 when none is). The source
	// resumes each split right after it.
	Assign(splits []int32) (Offsets, error)
	// Revoke gives splits up: it takes a checkpoint that includes
	// everything delivered of them, then drops their partitions' operators
	// and cached state from this process. It returns once the checkpoint
	// is committed.
	Revoke(splits []int32) error
}

// Changelog replicates the committed state of partitions outside the
// process (a compacted Kafka topic), so that a partition's state follows
// the partition to another process.
type Changelog interface {
	// Append replicates the changes in b (see state.Batch.Changes): the
	// state, timers and watermarks of the partitions flushed at this
	// checkpoint and the offsets of their splits. The runtime calls it after
	// the sinks flushed and before b commits; the commit waits for it and
	// does not happen if it fails. Append may add its own bookkeeping to b
	// (Batch.SetMeta).
	Append(b *state.Batch) error
	// Restore brings partition's state in db up to date with the changelog:
	// when the local state is missing or behind the changelog, it replaces
	// it with the changelog's latest complete checkpoint of the partition
	// (state, timers, watermark, split offset). No Partition handle holds
	// the partition during the call, and no Append includes it. Different
	// partitions are restored concurrently.
	Restore(db *state.DB, partition int) error
}

// groupState is the runtime's side of a GroupSource.
type groupState struct {
	// enabled: the source is a GroupSource.
	enabled   bool
	changelog Changelog
	exchanges bool

	// mu serializes Assign, Revoke and the end of the run.
	mu      sync.Mutex
	closing bool
	// ckpt serializes whole checkpoints, from snapshot to commit: Assign
	// and Revoke take checkpoints beside the periodic ones.
	ckpt sync.Mutex
	// owned[p] says whether this process owns partition p. It is written
	// while the workers are stopped at a checkpoint barrier (rt.ckptMu
	// held) and read by Deliver under rt.ckptMu.RLock.
	owned []bool
	// atStop runs at the next checkpoint, while the workers are stopped
	// and after they flushed their state. Guarded by rt.ckptMu.
	atStop func() error
}

// bindGroupSource binds a GroupSource and parks every partition: none is
// owned until the source assigns it.
func (rt *engine) bindGroupSource() error {
	gs, ok := rt.source.(GroupSource)
	if !ok {
		return nil
	}
	g := &rt.grp
	g.exchanges = rt.plan.HasExchanges()
	cl, err := gs.Bind(SourceBinding{
		Pipeline:   rt.plan.Spec.Name,
		Partitions: rt.nparts,
		Exchanges:  g.exchanges,
		Logger:     rt.logger,
	})
	if err != nil {
		return fmt.Errorf("source %s: %w", rt.plan.Spec.Source.Type, err)
	}
	g.enabled, g.changelog = true, cl
	g.owned = make([]bool, rt.nparts)
	if err := rt.bindRepartition(gs); err != nil {
		return err
	}
	for _, w := range rt.workers {
		w.park()
	}
	return nil
}

// endRebalancing makes later Assign and Revoke calls no-ops: the workers
// are about to stop.
func (rt *engine) endRebalancing() {
	rt.grp.mu.Lock()
	rt.grp.closing = true
	rt.grp.mu.Unlock()
}

// checkOwned fails a delivery to a split whose partition this process does
// not own; the caller holds rt.ckptMu.RLock.
func (rt *engine) checkOwned(split int32) error {
	g := &rt.grp
	if g.owned == nil {
		return nil
	}
	if split < 0 || int(split) >= rt.nparts || !g.owned[split] {
		return fmt.Errorf("deliver: split %d is not assigned to this process", split)
	}
	return nil
}

// appendChangelog replicates a checkpoint's batch before it commits.
func (rt *engine) appendChangelog(b *state.Batch) error {
	if rt.grp.changelog == nil {
		return nil
	}
	if err := rt.grp.changelog.Append(b); err != nil {
		return fmt.Errorf("changelog: %w", err)
	}
	return nil
}

// runStopped runs the pending atStop action; the workers are stopped at a
// barrier and rt.ckptMu is held.
func (rt *engine) runStopped() error {
	fn := rt.grp.atStop
	if fn == nil {
		return nil
	}
	rt.grp.atStop = nil
	return fn()
}

// checkpointStopped takes a checkpoint that runs fn while the workers are
// stopped, and returns once a checkpoint that ran fn has committed.
func (rt *engine) checkpointStopped(fn func() error) error {
	var ferr error
	rt.ckptMu.Lock()
	rt.grp.atStop = func() error { ferr = fn(); return ferr }
	rt.ckptMu.Unlock()
	if err := rt.checkpoint(); err != nil {
		rt.ckptMu.Lock()
		rt.grp.atStop = nil
		rt.ckptMu.Unlock()
		return err
	}
	// A periodic checkpoint may have run fn and failed (it fails the
	// run); checkpoint returns that failure.
	return ferr
}

// onWorker runs fn on worker p's goroutine; the workers must be stopped at
// a checkpoint barrier.
func (rt *engine) onWorker(p int, fn func(*worker) error) error {
	done := make(chan error, 1)
	rt.workers[p].ctrl <- ctrlReq{fn: fn, done: done}
	return <-done
}

// partitionsOf checks that every split feeds its own partition.
func (rt *engine) partitionsOf(splits []int32) ([]int, error) {
	parts := make([]int, 0, len(splits))
	for _, s := range splits {
		if s < 0 || int(s) >= rt.nparts {
			return nil, fmt.Errorf("split %d has no partition: the source has more splits than the pipeline's %d partitions", s, rt.nparts)
		}
		parts = append(parts, int(s))
	}
	slices.Sort(parts)
	return slices.Compact(parts), nil
}

// Assign implements Rebalancer.
func (rt *engine) Assign(splits []int32) (Offsets, error) {
	g := &rt.grp
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return nil, errors.New("assign: the run is ending")
	}
	if err := rt.failed(); err != nil {
		return nil, err
	}
	parts, err := rt.partitionsOf(splits)
	if err != nil {
		return nil, fmt.Errorf("assign: %w", err)
	}
	if g.exchanges && rt.rep == nil && len(parts) > 0 && len(parts) < rt.nparts {
		err := fmt.Errorf("assign: this process got %d of the %d partitions, but the pipeline has exchanges "+
			"(an operator groups by another key than the event's) and this source carries no exchanges between processes: "+
			"run this pipeline in one process", len(parts), rt.nparts)
		rt.fail(err)
		return nil, err
	}
	// A partition this process still owns (an assignment without the
	// revocation of the previous one) is given up first, so that it is
	// restored and reopened like any other.
	rt.ckptMu.RLock()
	var still []int
	for _, p := range parts {
		if g.owned[p] {
			still = append(still, p)
		}
	}
	rt.ckptMu.RUnlock()
	if len(still) > 0 {
		if err := rt.revokeLocked(still); err != nil {
			return nil, fmt.Errorf("assign: %w", err)
		}
	}
	if g.changelog != nil {
		errs := make([]error, len(parts))
		var wg sync.WaitGroup
		for i, p := range parts {
			wg.Go(func() {
				if err := g.changelog.Restore(rt.db, p); err != nil {
					errs[i] = fmt.Errorf("restore partition %d: %w", p, err)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("assign: %w", err)
		}
	}
	committed, err := rt.db.Offsets()
	if err != nil {
		return nil, fmt.Errorf("assign: %w", err)
	}
	wms, err := rt.db.Watermarks()
	if err != nil {
		return nil, fmt.Errorf("assign: %w", err)
	}
	out := make(Offsets, len(parts))
	for _, p := range parts {
		off, ok := committed[int32(p)]
		if !ok {
			off = -1
		}
		out[int32(p)] = off
	}
	// The operators behind an exchange start from the lowest committed
	// watermark of every partition, as at the start of a run: a partition's
	// own watermark may be ahead of the others', and their events that it
	// has not seen yet would be taken for late.
	low := maxTime
	for p := range rt.nparts {
		wm, ok := wms[p]
		if !ok {
			wm = minTime
		}
		low = min(low, wm)
	}
	// Each partition's repartition stream is read from after the offset
	// its state reflects, by a reader of a new generation.
	repAfter := make(map[int]int64, len(parts))
	repGens := make(map[int]uint64, len(parts))
	for _, p := range parts {
		rt.repGen++
		repGens[p] = rt.repGen
	}
	err = rt.checkpointStopped(func() error {
		for _, p := range parts {
			off := out[int32(p)]
			rt.splitsMu.Lock()
			rt.committed[int32(p)] = off
			rt.splitsMu.Unlock()
			ss := rt.split(int32(p))
			ss.mu.Lock()
			ss.offset, ss.committed = off, off
			ss.maxT, ss.wm = minTime, minTime
			ss.mu.Unlock()
			wm, ok := wms[p]
			if !ok {
				wm = minTime
			}
			if err := rt.onWorker(p, func(w *worker) error {
				if err := w.reopen(wm, low); err != nil {
					return err
				}
				if rt.rep == nil {
					return nil
				}
				if err := w.loadRemote(repGens[p]); err != nil {
					w.park()
					return err
				}
				repAfter[p] = w.x.offset
				return nil
			}); err != nil {
				return err
			}
			g.owned[p] = true
		}
		// Every partition forgets the watermarks it sent the reopened
		// ones, whose operators start from scratch, so it sends them again.
		for q := range rt.workers {
			if err := rt.onWorker(q, func(w *worker) error {
				for _, p := range parts {
					w.sentWM[p] = nil
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("assign: %w", err)
	}
	if rt.rep != nil {
		for _, p := range parts {
			if err := rt.startRepartition(p, repGens[p], repAfter[p]); err != nil {
				err = fmt.Errorf("assign: %w", err)
				rt.fail(err)
				return nil, err
			}
		}
	}
	rt.logger.Info("partitions assigned", "partitions", parts)
	return out, nil
}

// Revoke implements Rebalancer.
func (rt *engine) Revoke(splits []int32) error {
	g := &rt.grp
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return nil
	}
	parts, err := rt.partitionsOf(splits)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return rt.revokeLocked(parts)
}

// revokeLocked parks parts after a checkpoint; g.mu is held.
func (rt *engine) revokeLocked(parts []int) error {
	g := &rt.grp
	// The repartition readers stop first: what they delivered is in the
	// checkpoint, and the next owner reads on from its offset.
	if err := rt.stopRepartitionOf(parts); err != nil {
		err = fmt.Errorf("revoke: %w", err)
		rt.fail(err)
		return err
	}
	err := rt.checkpointStopped(func() error {
		for _, p := range parts {
			g.owned[p] = false
			if err := rt.onWorker(p, func(w *worker) error { w.park(); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("revoke: %w", err)
		rt.fail(err)
		return err
	}
	rt.logger.Info("partitions revoked", "partitions", parts)
	return nil
}

// park drops the partition from this process: its operators are closed and
// its state handle released, so its cache goes; what Pebble holds stays.
// The partition's dirty state must have been flushed into a checkpoint
// batch first.
func (w *worker) park() {
	for _, o := range w.ops {
		if c, ok := o.op.(Closer); ok {
			if err := c.Close(); err != nil {
				o.logger.Warn("close operator", "err", err)
			}
		}
	}
	w.ops, w.srcOps = nil, nil
	if w.part != nil {
		w.rt.db.ReleasePartition(w.id)
		w.part = nil
	}
	w.parked, w.final = true, false
	clear(w.splitWM)
	w.rt.partWM[w.id].Store(maxTime)
}

// reopen makes the partition this process's again: a fresh state handle
// over what the store holds (restored from the changelog if need be) and
// fresh operator instances, from watermark wm, or low (a lower bound of
// every partition's watermark) for the operators behind an exchange.
func (w *worker) reopen(wm, low int64) error {
	if !w.parked {
		w.park()
	}
	w.part = w.rt.db.Partition(w.id)
	clear(w.splitWM)
	w.srcWM, w.final = wm, false
	w.lastInput = w.clock.Now().UnixNano()
	for i := range w.sentWM {
		w.sentWM[i] = nil
	}
	// Operators behind an exchange assume nothing of the other partitions
	// until these report their watermarks again.
	if err := w.openOperators(wm, min(wm, low), minTime); err != nil {
		w.park()
		return err
	}
	for _, o := range w.ops {
		if o.exWM != nil {
			o.exWM[w.id] = wm
		}
	}
	w.parked = false
	w.rt.partWM[w.id].Store(wm)
	return nil
}

// discardInbox drops exchange input that reached a parked partition. It
// cannot happen while in-process exchanges stay within one process that
// owns every partition (Assign enforces it; across processes exchanges go
// through the repartition streams), so it fails the run rather than lose
// input silently.
func (w *worker) discardInbox() {
	w.takeBuf = w.inbox.take(w.takeBuf[:0])
	if len(w.takeBuf) == 0 {
		return
	}
	w.rt.fail(fmt.Errorf("partition %d: exchange input reached a partition this process does not own", w.id))
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

var _ Rebalancer = (*engine)(nil)
