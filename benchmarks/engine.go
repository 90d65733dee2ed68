package benchmarks

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/generator"
	"github.com/sluicehq/sluice/operators"
	"github.com/sluicehq/sluice/pipeline"
)

// BatchSize is the number of events the engine benchmark's source delivers
// per batch, as the generator source does.
const BatchSize = generator.BatchSize

// Defaults of the benchmark configs.
const (
	DefaultEngineEvents  = 5_000_000
	DefaultE2EEvents     = 1_000_000
	DefaultPartitions    = 8
	DefaultUsers         = 10_000
	DefaultPool          = 1 << 18
	DefaultCheckpointDur = time.Second
)

// Result is what one measured run gives.
type Result struct {
	// Name says what ran: "engine", "e2e", "limit".
	Name string
	// Rate is the source's target rate in events/s; 0 means as fast as
	// possible.
	Rate float64
	// Events counts the events the run took in, Records the outputs.
	Events, Records int64
	// Elapsed is the wall time of the run (for a pipeline: Runner.Run, from
	// the first read to the final checkpoint and close).
	Elapsed time.Duration
	// EventsPerSec is Events / Elapsed.
	EventsPerSec float64
	// AllocsPerEvent and BytesPerEvent are the heap allocations of the
	// whole process during the run (runtime.MemStats Mallocs and TotalAlloc
	// deltas) divided by Events.
	AllocsPerEvent, BytesPerEvent float64
	// CPU is the CPU time (user and system) the whole process used during
	// the run, and CPUPerEvent that divided by Events. On a machine shared
	// with other work, CPUPerEvent is the steadier figure: the cores divided
	// by it is the rate the run would reach with the machine to itself.
	CPU, CPUPerEvent time.Duration
	// Checkpoints counts the checkpoints the run committed.
	Checkpoints int64
	// Latency is the event-to-output latency; empty for the limit loop.
	Latency Latency
}

// EngineConfig configures the engine benchmark. Zero fields take the
// defaults.
type EngineConfig struct {
	// Partitions is the pipeline's partition count. Default 8.
	Partitions int
	// Users is the number of distinct shoppers (keys) of the generated
	// events. Default 10,000.
	Users int
	// Seed is the generator's seed. Default 1.
	Seed int64
	// Pool is the number of distinct events generated up front; a run of
	// more events delivers the pool again and again. Default 262,144. The
	// latency of an output is found through the pool slot of its event, so
	// the source must not deliver a slot again before the output of its
	// previous delivery: the runtime's bounded queues keep the source a few
	// thousand events ahead of the sinks at most, and Latency.Stale counts
	// the outputs for which it did not hold.
	Pool int
	// CheckpointInterval is the time between checkpoints. Default 1s.
	CheckpointInterval time.Duration
	// Dir is where the temporary state directories go. Default
	// os.TempDir().
	Dir string
	// Logger is the pipeline's logger. Default: warnings and errors to
	// standard error.
	Logger *slog.Logger
}

func (c EngineConfig) withDefaults() EngineConfig {
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Users <= 0 {
		c.Users = DefaultUsers
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Pool <= 0 {
		c.Pool = DefaultPool
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = DefaultCheckpointDur
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return c
}

// Engine is the engine benchmark: pre-decoded events from memory through a
// keyed counter (key_counter), with Pebble state and periodic checkpoints,
// into a sink that counts the records and measures their latency. It
// measures the runtime itself: no decoding, no I/O but the state's.
type Engine struct {
	cfg  EngineConfig
	pool []pipeline.Event
}

// NewEngine generates the engine benchmark's pool of events.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	cfg = cfg.withDefaults()
	pool, err := generate(cfg.Pool, cfg.Users, cfg.Seed)
	if err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg, pool: pool}, nil
}

// generate makes n generated events, and checks that the id of the i-th
// (0-based) ends in "-<i+1>", which the latency measurement relies on.
func generate(n, users int, seed int64) ([]pipeline.Event, error) {
	g, err := generator.New(generator.Config{Count: n, Users: users, Seed: seed})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	evs := make([]pipeline.Event, n)
	for i := range evs {
		// A zero Event each time: Next reuses the maps and slices of the
		// event it fills.
		if !g.Next(&evs[i]) {
			return nil, fmt.Errorf("bench: generator stopped after %d of %d events", i, n)
		}
		if idx, ok := eventIndex(evs[i].EventID); !ok || idx != i+1 {
			return nil, fmt.Errorf("bench: generated event %d has id %q, not one ending in -%d", i, evs[i].EventID, i+1)
		}
	}
	return evs, nil
}

// Run runs events events through a new pipeline with a new state
// directory, at rate events/s (0: as fast as possible).
//
// At a fixed rate, each batch is stamped with the time it was due, not the
// time it went out: when the pipeline falls behind and the source blocks,
// the delay counts (no coordinated omission).
func (e *Engine) Run(ctx context.Context, events int, rate float64) (Result, error) {
	cfg := e.cfg
	if events <= 0 {
		return Result{}, fmt.Errorf("bench: engine: events must be positive, got %d", events)
	}
	pool := e.pool
	if events <= len(pool) {
		pool = pool[:events]
	} else {
		// Whole batches, so that no batch straddles the end of the pool.
		pool = pool[:max(len(pool)/BatchSize, 1)*BatchSize]
	}
	dir, err := os.MkdirTemp(cfg.Dir, "sluice-bench-engine-")
	if err != nil {
		return Result{}, fmt.Errorf("bench: engine: %w", err)
	}
	defer os.RemoveAll(dir)

	b := pipeline.NewBuilder("bench-engine",
		pipeline.WithPartitions(cfg.Partitions),
		pipeline.WithStateDir(filepath.Join(dir, "state")),
		pipeline.WithCheckpointInterval(cfg.CheckpointInterval))
	// The spec names registered connector types; the plan's openers are
	// then replaced by the in-memory source and the measuring sink.
	b.Source("generator", generator.Config{Count: events, Users: cfg.Users, Seed: cfg.Seed})
	b.Operator("count", "key_counter", operators.KeyCounterConfig{})
	b.Sink("out", "stdout", connectors.StdoutSinkConfig{}, "count")
	plan, err := b.Plan()
	if err != nil {
		return Result{}, fmt.Errorf("bench: engine: plan: %w", err)
	}
	lat := newLatencyRecorder(len(pool), BatchSize)
	src := &memorySource{pool: pool, events: events, rate: rate, lat: lat}
	sink := &countingSink{lat: lat}
	plan.Source = func() (pipeline.Source, error) { return src, nil }
	plan.Sinks[0].Open = func() (pipeline.Sink, error) { return sink, nil }

	res, err := runPlan(ctx, plan, cfg.Logger)
	if err != nil {
		return res, fmt.Errorf("bench: engine: %w", err)
	}
	res.Name, res.Rate = "engine", rate
	res.Latency = lat.result()
	if got := sink.records.Load(); res.Events != int64(events) || got != int64(events) {
		return res, fmt.Errorf("bench: engine: %d events in, %d records out, want %d of each", res.Events, got, events)
	}
	return res, nil
}

// runPlan runs plan to its end and measures the run.
func runPlan(ctx context.Context, plan *pipeline.Plan, logger *slog.Logger) (Result, error) {
	r, err := pipeline.NewRunner(plan, pipeline.WithLogger(logger))
	if err != nil {
		return Result{}, err
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start, cpu := time.Now(), ProcessCPU()
	err = r.Run(ctx)
	elapsed, cpu := time.Since(start), ProcessCPU()-cpu
	runtime.ReadMemStats(&after)
	if err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	st := r.Stats()
	res := Result{
		Events:      st.EventsIn,
		Records:     st.Records,
		Elapsed:     elapsed,
		CPU:         cpu,
		Checkpoints: st.Checkpoints,
	}
	if st.DeadLetters != 0 || st.OperatorErrors != 0 {
		return res, fmt.Errorf("%d dead letters, %d operator errors", st.DeadLetters, st.OperatorErrors)
	}
	res.setRates(after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc)
	return res, nil
}

func (r *Result) setRates(mallocs, bytes uint64) {
	if r.Events == 0 {
		return
	}
	r.EventsPerSec = float64(r.Events) / r.Elapsed.Seconds()
	r.AllocsPerEvent = float64(mallocs) / float64(r.Events)
	r.BytesPerEvent = float64(bytes) / float64(r.Events)
	r.CPUPerEvent = r.CPU / time.Duration(r.Events)
}

// memorySource delivers pre-decoded events from memory (Message.Event set)
// in batches of BatchSize, with offsets 1, 2, ..., going round the pool as
// many times as it takes. It stamps each batch in the latency recorder just
// before delivering it.
type memorySource struct {
	pool   []pipeline.Event
	events int
	rate   float64
	lat    *latencyRecorder
}

func (s *memorySource) Read(ctx context.Context, _ pipeline.Offsets, d pipeline.Deliverer) error {
	msgs := make([]pipeline.Message, BatchSize)
	start := s.lat.now()
	var timer *time.Timer
	for sent := 0; sent < s.events; {
		if err := ctx.Err(); err != nil {
			return err
		}
		first := sent % len(s.pool)
		n := min(BatchSize, s.events-sent, len(s.pool)-first)
		batch := msgs[:n]
		for j := range batch {
			batch[j] = pipeline.Message{Offset: int64(sent + j + 1), Event: &s.pool[first+j]}
		}
		t := s.lat.now()
		if s.rate > 0 {
			due := start + int64(float64(sent)/s.rate*1e9)
			if wait := due - t; wait > 0 {
				if timer == nil {
					timer = time.NewTimer(time.Duration(wait))
				} else {
					timer.Reset(time.Duration(wait))
				}
				select {
				case <-ctx.Done():
					timer.Stop()
					return ctx.Err()
				case <-timer.C:
				}
			}
			t = due
		}
		s.lat.stamp(first, n, t)
		if err := d.Deliver(0, batch); err != nil {
			return fmt.Errorf("memory source: deliver events %d..%d: %w", sent+1, sent+n, err)
		}
		sent += n
	}
	return nil
}

// countingSink counts records and measures their latency; it writes
// nothing.
type countingSink struct {
	lat     *latencyRecorder
	records atomic.Int64
}

func (s *countingSink) Write(records []pipeline.SinkRecord) error {
	s.lat.observe(records, s.lat.now())
	s.records.Add(int64(len(records)))
	return nil
}

func (s *countingSink) Flush() error { return nil }
func (s *countingSink) Close() error { return nil }
