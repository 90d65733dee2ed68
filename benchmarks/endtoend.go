package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/generator"
	"github.com/sluicehq/sluice/operators"
	"github.com/sluicehq/sluice/pipeline"
)

// EndToEndConfig configures the end-to-end benchmark. Zero fields take the
// defaults.
type EndToEndConfig struct {
	// Events is the number of events in the input file. Default 1,000,000.
	Events int
	// Partitions is the pipeline's partition count. Default 8.
	Partitions int
	// Users is the number of distinct shoppers. Default 10,000.
	Users int
	// Seed is the generator's seed. Default 1.
	Seed int64
	// CheckpointInterval is the time between checkpoints. Default 1s.
	CheckpointInterval time.Duration
	// Workers is the number of goroutines of the limit loop. Default
	// runtime.GOMAXPROCS(0).
	Workers int
	// Dir is where the temporary directory of the input and output files
	// goes. Default os.TempDir().
	Dir string
	// Logger is the pipeline's logger. Default: warnings and errors to
	// standard error.
	Logger *slog.Logger
}

// EndToEnd is the end-to-end benchmark: the engine benchmark's pipeline
// from a JSONL file (the file source, decoding every line) to a JSONL file
// (the file sink), beside the limit loop over the same file.
type EndToEnd struct {
	cfg   EndToEndConfig
	dir   string
	input string
	size  int64
}

// NewEndToEnd writes the input file of the end-to-end benchmark into a new
// temporary directory. Close removes it.
func NewEndToEnd(cfg EndToEndConfig) (*EndToEnd, error) {
	if cfg.Events <= 0 {
		cfg.Events = DefaultE2EEvents
	}
	ec := EngineConfig{Partitions: cfg.Partitions, Users: cfg.Users, Seed: cfg.Seed, CheckpointInterval: cfg.CheckpointInterval, Logger: cfg.Logger}.withDefaults()
	cfg.Partitions, cfg.Users, cfg.Seed, cfg.CheckpointInterval, cfg.Logger = ec.Partitions, ec.Users, ec.Seed, ec.CheckpointInterval, ec.Logger
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	dir, err := os.MkdirTemp(cfg.Dir, "sluice-bench-e2e-")
	if err != nil {
		return nil, fmt.Errorf("bench: e2e: %w", err)
	}
	e := &EndToEnd{cfg: cfg, dir: dir, input: filepath.Join(dir, "events.jsonl")}
	if err := e.writeInput(); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	return e, nil
}

func (e *EndToEnd) writeInput() error {
	f, err := os.Create(e.input)
	if err != nil {
		return fmt.Errorf("bench: e2e: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = generator.WriteJSONL(w, generator.Config{Count: e.cfg.Events, Users: e.cfg.Users, Seed: e.cfg.Seed})
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bench: e2e: write input: %w", err)
	}
	fi, err := os.Stat(e.input)
	if err != nil {
		return fmt.Errorf("bench: e2e: %w", err)
	}
	e.size = fi.Size()
	return nil
}

// Input returns the path of the input file.
func (e *EndToEnd) Input() string { return e.input }

// InputBytes returns the size of the input file.
func (e *EndToEnd) InputBytes() int64 { return e.size }

// Events returns the number of events in the input file.
func (e *EndToEnd) Events() int { return e.cfg.Events }

// Close removes the input and output files.
func (e *EndToEnd) Close() error { return os.RemoveAll(e.dir) }

// RunPipeline runs the pipeline over the input file, with a new state
// directory and output file.
//
// Latency is measured by wrappers around the file source's Deliverer and
// the file sink: the first stamps each line's event (line i holds the
// generated event of id index i+1) with the time its batch went to the
// runtime, before decoding; the second takes the time when the sink's Write
// returns.
func (e *EndToEnd) RunPipeline(ctx context.Context) (Result, error) {
	cfg := e.cfg
	dir, err := os.MkdirTemp(e.dir, "run-")
	if err != nil {
		return Result{}, fmt.Errorf("bench: e2e: %w", err)
	}
	defer os.RemoveAll(dir)

	b := pipeline.NewBuilder("bench-e2e",
		pipeline.WithPartitions(cfg.Partitions),
		pipeline.WithStateDir(filepath.Join(dir, "state")),
		pipeline.WithCheckpointInterval(cfg.CheckpointInterval))
	b.Source("file", connectors.FileSourceConfig{Path: e.input})
	b.Operator("count", "key_counter", operators.KeyCounterConfig{})
	b.Sink("out", "file", connectors.FileSinkConfig{Path: filepath.Join(dir, "out.jsonl")}, "count")
	plan, err := b.Plan()
	if err != nil {
		return Result{}, fmt.Errorf("bench: e2e: plan: %w", err)
	}
	lat := newLatencyRecorder(cfg.Events, 1)
	var sink *measuredSink
	plan.Source = wrapOpener(plan.Source, func(src pipeline.Source) pipeline.Source { return wrapSource(src, lat) })
	plan.Sinks[0].Open = wrapOpener(plan.Sinks[0].Open, func(s pipeline.Sink) pipeline.Sink {
		sink = &measuredSink{Sink: s, lat: lat}
		return sink
	})
	res, err := runPlan(ctx, plan, cfg.Logger)
	if err != nil {
		return res, fmt.Errorf("bench: e2e: %w", err)
	}
	res.Name = "e2e"
	res.Latency = lat.result()
	if got := sink.records.Load(); res.Events != int64(cfg.Events) || got != int64(cfg.Events) {
		return res, fmt.Errorf("bench: e2e: %d events in, %d records out, want %d of each", res.Events, got, cfg.Events)
	}
	return res, nil
}

// wrapOpener returns an opener that opens through open and returns what
// it opened wrapped by wrap.
func wrapOpener[T any](open pipeline.Opener[T], wrap func(T) T) pipeline.Opener[T] {
	return func() (T, error) {
		c, err := open()
		if err != nil {
			return c, err
		}
		return wrap(c), nil
	}
}

// wrapSource returns src with its deliveries stamped in lat, unless src
// implements an optional interface that a wrapper would hide; then src.
func wrapSource(src pipeline.Source, lat *latencyRecorder) pipeline.Source {
	if _, ok := src.(pipeline.PartitionedSource); ok {
		return src
	}
	if _, ok := src.(pipeline.CommitListener); ok {
		return src
	}
	return &stampedSource{Source: src, lat: lat}
}

// stampedSource stamps every batch its source delivers, in order of
// delivery, in the latency recorder.
type stampedSource struct {
	pipeline.Source
	lat  *latencyRecorder
	seen int
}

func (s *stampedSource) Read(ctx context.Context, resume pipeline.Offsets, d pipeline.Deliverer) error {
	return s.Source.Read(ctx, resume, stampingDeliverer{s: s, d: d})
}

type stampingDeliverer struct {
	s *stampedSource
	d pipeline.Deliverer
}

func (sd stampingDeliverer) Deliver(split int32, batch []pipeline.Message) error {
	s := sd.s
	s.lat.stamp(s.seen, len(batch), s.lat.now())
	s.seen += len(batch)
	return sd.d.Deliver(split, batch)
}

// measuredSink measures the latency of the records its sink writes.
type measuredSink struct {
	pipeline.Sink
	lat     *latencyRecorder
	records atomic.Int64
}

func (s *measuredSink) Write(records []pipeline.SinkRecord) error {
	err := s.Sink.Write(records)
	s.lat.observe(records, s.lat.now())
	s.records.Add(int64(len(records)))
	return err
}

// RunLimit runs the limit loop over the input file: Workers goroutines each
// take a share of the lines, decode each into a pipeline.Event with a
// pipeline.EventDecoder, encode one output record for it (the key_count
// record the pipeline would emit, with a constant count) with
// pipeline.AppendRecordJSON, and write the records to a file of their own,
// synced at the end. Nothing else: no partitioning, no state, no
// checkpoints. It decodes every field; a pipeline decodes only the
// optional fields its operators read (pipeline.EventFields).
func (e *EndToEnd) RunLimit(ctx context.Context) (Result, error) {
	return e.RunLimitReading(ctx, pipeline.AllEventFields)
}

// RunLimitReading runs the limit loop decoding, of the optional fields,
// only read (EventDecoder.DecodeOnly): the limit of a pipeline with that
// projection.
func (e *EndToEnd) RunLimitReading(ctx context.Context, read pipeline.EventFields) (Result, error) {
	cfg := e.cfg
	dir, err := os.MkdirTemp(e.dir, "limit-")
	if err != nil {
		return Result{}, fmt.Errorf("bench: limit: %w", err)
	}
	defer os.RemoveAll(dir)
	bounds, err := lineBounds(e.input, e.size, cfg.Workers)
	if err != nil {
		return Result{}, fmt.Errorf("bench: limit: %w", err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start, cpu := time.Now(), ProcessCPU()
	var (
		wg     sync.WaitGroup
		counts = make([]int64, len(bounds)-1)
		errs   = make([]error, len(bounds)-1)
	)
	for w := range counts {
		wg.Go(func() {
			out := filepath.Join(dir, "out-"+strconv.Itoa(w)+".jsonl")
			counts[w], errs[w] = limitWorker(ctx, e.input, bounds[w], bounds[w+1], out, read)
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), ProcessCPU()-cpu
	runtime.ReadMemStats(&after)
	if err := errors.Join(errs...); err != nil {
		return Result{}, fmt.Errorf("bench: limit: %w", err)
	}
	res := Result{Name: "limit", Elapsed: elapsed, CPU: cpu}
	for _, n := range counts {
		res.Events += n
	}
	res.Records = res.Events
	res.setRates(after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc)
	if res.Events != int64(cfg.Events) {
		return res, fmt.Errorf("bench: limit: %d events decoded, want %d", res.Events, cfg.Events)
	}
	return res, nil
}

// lineBounds splits the file of the given size into n ranges that start
// and end at line boundaries: range i is bounds[i]..bounds[i+1].
func lineBounds(path string, size int64, n int) ([]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	bounds := []int64{0}
	buf := make([]byte, 64<<10)
	for i := 1; i < n; i++ {
		off := max(size*int64(i)/int64(n), bounds[len(bounds)-1])
		for off < size {
			m, err := f.ReadAt(buf, off)
			if j := bytes.IndexByte(buf[:m], '\n'); j >= 0 {
				off += int64(j) + 1
				break
			}
			off += int64(m)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
		}
		bounds = append(bounds, min(off, size))
	}
	return append(bounds, size), nil
}

// countOne is the data of the limit loop's records: {"count":1}.
type countOne struct{}

func (countOne) AppendJSON(dst []byte) []byte { return append(dst, `{"count":1}`...) }

// limitWorker decodes the lines of path in [from, to), of their optional
// fields only read, and writes one record per line to out. It returns the
// number of events.
func limitWorker(ctx context.Context, path string, from, to int64, out string, read pipeline.EventFields) (n int64, err error) {
	in, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	of, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := of.Close(); err == nil {
			err = cerr
		}
	}()
	r := bufio.NewReaderSize(io.NewSectionReader(in, from, to-from), 64<<10)
	w := bufio.NewWriterSize(of, 256<<10)
	var (
		dec  pipeline.EventDecoder
		ev   pipeline.Event
		long []byte
		buf  []byte
	)
	dec.DecodeOnly(read)
	for {
		line, rerr := r.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for rerr == bufio.ErrBufferFull {
				line, rerr = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		}
		if len(line) > 0 {
			if err := dec.Decode(line, &ev); err != nil {
				return n, fmt.Errorf("%s: event %d of range %d: %w", path, n+1, from, err)
			}
			rec := pipeline.Record{
				ID:       ev.EventID + "/count/1",
				Type:     "key_count",
				Key:      ev.Key(),
				Time:     ev.Timestamp,
				Operator: "count",
				Data:     countOne{},
			}
			buf = append(pipeline.AppendRecordJSON(buf[:0], &rec), '\n')
			if _, err := w.Write(buf); err != nil {
				return n, err
			}
			n++
			if n%BatchSize == 0 && ctx.Err() != nil {
				return n, ctx.Err()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, rerr
		}
	}
	if err := w.Flush(); err != nil {
		return n, err
	}
	return n, of.Sync()
}
