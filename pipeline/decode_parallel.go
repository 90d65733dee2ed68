package pipeline

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// minDecodeChunk is the fewest raw events one goroutine decodes of a
// delivered batch: a batch too small for two chunks is decoded by the
// delivering goroutine alone, as it arrives.
const minDecodeChunk = 256

// decodeAll decodes the raw payloads of a large batch into ss.decoded and
// ss.errs, in chunks on as many goroutines as the process may run at once
// (the delivering one included), and reports whether it did. Decoding is
// most of the per-event cost before the operators; a source with one split
// (a file) would otherwise bound the run to what one core decodes. The
// events are routed afterwards in batch order, so nothing is reordered.
func decodeAll(ss *splitState, batch []Message) bool {
	k := min(runtime.GOMAXPROCS(0), len(batch)/minDecodeChunk)
	if k < 2 || batch[0].Event != nil {
		return false // a source that decodes its events hands them all so
	}
	n := len(batch)
	ss.decoded = slices.Grow(ss.decoded[:0], n)[:n]
	ss.errs = slices.Grow(ss.errs[:0], n)[:n]
	for len(ss.decs) < k {
		ss.decs = append(ss.decs, EventDecoder{skip: ss.dec.skip})
	}
	per := (n + k - 1) / k
	var wg sync.WaitGroup
	for c := 1; c < k; c++ {
		lo, hi := c*per, min((c+1)*per, n)
		wg.Go(func() { decodeChunk(&ss.decs[c], batch[lo:hi], ss.decoded[lo:hi], ss.errs[lo:hi], ss.committed) })
	}
	decodeChunk(&ss.decs[0], batch[:per], ss.decoded[:per], ss.errs[:per], ss.committed)
	wg.Wait()
	return true
}

// decodeChunk decodes the raw payloads of msgs above the committed offset
// into out, with the reason for each one that fails in errs.
func decodeChunk(dec *EventDecoder, msgs []Message, out []Event, errs []error, committed int64) {
	for i := range msgs {
		m := &msgs[i]
		errs[i] = nil
		if m.Event == nil && m.Offset > committed {
			errs[i] = decodeMessage(dec, m, &out[i])
		}
	}
}

// decodeMessage decodes the raw payload of m into ev; the error is the
// reason it is a dead letter.
func decodeMessage(dec *EventDecoder, m *Message, ev *Event) error {
	if len(m.Payload) > MaxEventBytes {
		return fmt.Errorf("event too large: %d bytes (limit %d)", len(m.Payload), MaxEventBytes)
	}
	return dec.Decode(m.Payload, ev)
}
