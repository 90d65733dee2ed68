package pipeline

// fireBeforeErasure fires, before an erasure deletes every timer of its
// key, the key's event-time timers that are due at the erasure's time, in
// the operators after from (from and the operators before it may be in the
// middle of a call). A key's timers fire just before the key processes
// anything at or after their time, and an erasure is such an input: without
// this, whether a due timer fired before the erasure would depend on how
// far the partition's watermark happened to be, and so on which other keys
// share the partition. Behind an exchange timers fire on the watermark
// only (see deliverEvent), so those operators are left alone.
func (w *worker) fireBeforeErasure(from *opInstance, r *Record) {
	at := r.Time.UnixNano()
	for _, o := range w.ops[from.planned.Index+1:] {
		if o.timers != nil && o.rekeyer == nil {
			w.fireKeyTimers(o, r.Key, at)
		}
	}
}
