package generator

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

func init() {
	pipeline.RegisterSource("generator", func(cfg Config) (pipeline.Source, error) {
		return NewSource(cfg)
	})
}

// BatchSize is the number of events a Source delivers per batch.
const BatchSize = 1024

// Validate checks the configuration; the planner calls it when it decodes
// a spec's `source: {type: generator, ...}`.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// Source is the "generator" source: it delivers the events of its Config,
// encoded as JSON, on split 0. The offset of an event is its 1-based index
// in the stream, and a resumed Source regenerates the stream and skips the
// events at or below its resume offset, so it needs no stored state.
type Source struct {
	cfg Config
}

var _ pipeline.Source = (*Source)(nil)

// NewSource returns the generator source for cfg.
func NewSource(cfg Config) (*Source, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Source{cfg: cfg}, nil
}

// Read delivers the events after resume[0] to d in batches of up to
// BatchSize, paced by Config.Rate when it is positive. It returns nil after
// Config.Count events, and ctx.Err() when ctx is done first.
func (s *Source) Read(ctx context.Context, resume pipeline.Offsets, d pipeline.Deliverer) error {
	g, err := New(s.cfg)
	if err != nil {
		return err
	}
	var e pipeline.Event
	skip := resume[0]
	var n int64
	for n < skip && g.Next(&e) {
		n++
	}
	var (
		buf   []byte
		ends  [BatchSize]int
		batch = make([]pipeline.Message, 0, BatchSize)
		pace  = newPacer(s.cfg.Rate, n)
		done  = ctx.Done()
	)
	for {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		want := BatchSize
		if pace != nil {
			var wait time.Duration
			want, wait = pace.due(n, BatchSize)
			if want == 0 {
				t := time.NewTimer(wait)
				select {
				case <-done:
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
				continue
			}
		}
		buf, batch = buf[:0], batch[:0]
		for len(batch) < want && g.Next(&e) {
			n++
			buf = pipeline.AppendEventJSON(buf, &e)
			ends[len(batch)] = len(buf)
			batch = append(batch, pipeline.Message{Offset: n})
		}
		if len(batch) == 0 {
			return nil
		}
		// Slice payloads only now: appending may have moved buf.
		start := 0
		for i := range batch {
			batch[i].Payload = buf[start:ends[i]:ends[i]]
			start = ends[i]
		}
		if err := d.Deliver(0, batch); err != nil {
			return fmt.Errorf("generator: deliver events %d..%d: %w", batch[0].Offset, n, err)
		}
		if len(batch) < want {
			return nil
		}
	}
}

// WriteJSONL writes the events of cfg to w, one JSON object per line, paced
// by cfg.Rate when it is positive. It returns after cfg.Count events; with
// Count 0 it writes until w fails.
func WriteJSONL(w io.Writer, cfg Config) error {
	g, err := New(cfg)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	pace := newPacer(g.cfg.Rate, 0)
	var (
		e   pipeline.Event
		buf []byte
		n   int64
	)
	for {
		if pace != nil {
			if want, wait := pace.due(n, 1); want == 0 {
				if err := bw.Flush(); err != nil {
					return fmt.Errorf("generator: write events: %w", err)
				}
				time.Sleep(wait)
				continue
			}
		}
		if !g.Next(&e) {
			break
		}
		n++
		buf = append(pipeline.AppendEventJSON(buf[:0], &e), '\n')
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("generator: write event %d: %w", n, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("generator: write events: %w", err)
	}
	return nil
}

// pacer spreads events over wall time at a fixed rate.
type pacer struct {
	start time.Time
	rate  float64
	base  int64
}

// newPacer returns a pacer for rate events per second counting from event
// base, or nil when rate is not positive.
func newPacer(rate float64, base int64) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{start: time.Now(), rate: rate, base: base}
}

// due returns how many events, up to limit, are due once sent events were
// sent, and when none is, how long until the next one is.
func (p *pacer) due(sent int64, limit int) (int, time.Duration) {
	elapsed := time.Since(p.start).Seconds()
	n := int64(elapsed*p.rate) + 1 - (sent - p.base)
	if n > 0 {
		return int(min(n, int64(limit))), 0
	}
	next := float64(sent-p.base) / p.rate
	return 0, max(time.Duration((next-elapsed)*float64(time.Second)), time.Millisecond)
}
