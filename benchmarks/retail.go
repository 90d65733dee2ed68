package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sluicehq/sluice/examples"
	"github.com/sluicehq/sluice/operators"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/state"
)

// RetailOperators is the operators block of examples/retail.yaml, which the
// retail benchmark runs unchanged.
var RetailOperators = examples.Operators(examples.Retail)

// retailSpec returns the retail benchmark's pipeline spec: the operators of
// examples/retail.yaml (and its time settings) from the JSONL file input to
// the JSONL file out, with its state in stateDir.
func retailSpec(input, out, dead, stateDir string, partitions int, ckpt string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "version: 1\nname: bench-retail\n")
	fmt.Fprintf(&b, "source: {type: file, path: %s}\n", strconv.Quote(input))
	fmt.Fprintf(&b, "time: {max_out_of_orderness: 5s, idle_timeout: 30s}\n")
	fmt.Fprintf(&b, "state: {dir: %s, checkpoint_interval: %s}\n", strconv.Quote(stateDir), ckpt)
	fmt.Fprintf(&b, "partitions: %d\n", partitions)
	fmt.Fprintf(&b, "dead_letter: {type: file, path: %s}\n", strconv.Quote(dead))
	b.WriteString(RetailOperators)
	fmt.Fprintf(&b, "sinks:\n  - {id: out, type: file, path: %s, inputs: [sessions, views_1h, segments, abandonment]}\n", strconv.Quote(out))
	return b.Bytes()
}

// StateSize is the size of a pipeline's state after its final checkpoint.
type StateSize struct {
	// Keys counts the distinct keys that own state (table entries or
	// timers) in any partition: shoppers, and the product ids of the
	// window counter's exchange.
	Keys int64
	// Users counts the keys among them that are shoppers ("u-" prefix).
	Users int64
	// EncodedBytes is the sum of the sizes of the raw keys and values of
	// all keyed entries and timers, as Pebble stores them before
	// compression.
	EncodedBytes int64
	// UserEncodedBytes is the part of EncodedBytes owned by shoppers.
	UserEncodedBytes int64
	// DiskBytes is Pebble's disk usage after a full compaction (tables,
	// WAL and manifest; the tables are compressed).
	DiskBytes int64
	// ActiveUsers counts the shoppers with an open session, and
	// ActiveUserEncodedBytes is the part of UserEncodedBytes they own (all
	// their state, not only the session). Both are 0 once a bounded input
	// has ended: every session has then ended.
	ActiveUsers            int64
	ActiveUserEncodedBytes int64
}

// RetailResult is what one run of the retail benchmark gives.
type RetailResult struct {
	Result
	// State is the size of the state left after the run.
	State StateSize
	// OutputBytes is the size of the output file.
	OutputBytes int64
}

// RunRetail runs the retail pipeline of examples/retail.yaml (consent
// filter, sessionizer, window counter with spikes, segment transitioner,
// abandonment detector) over the input file into a JSONL file, with a new
// state directory, then measures the state left behind.
//
// Latency is measured as in RunPipeline, for the records that an event
// caused (timer records name no event and are not in the distribution).
func (e *EndToEnd) RunRetail(ctx context.Context) (RetailResult, error) {
	cfg := e.cfg
	plan, dir, err := e.retailPlan("retail")
	if err != nil {
		return RetailResult{}, fmt.Errorf("bench: retail: %w", err)
	}
	defer os.RemoveAll(dir)
	lat := newLatencyRecorder(cfg.Events, 1)
	plan.Source = wrapOpener(plan.Source, func(src pipeline.Source) pipeline.Source { return wrapSource(src, lat) })
	plan.Sinks[0].Open = wrapOpener(plan.Sinks[0].Open, func(s pipeline.Sink) pipeline.Sink { return &measuredSink{Sink: s, lat: lat} })
	res, err := runPlan(ctx, plan, cfg.Logger)
	if err != nil {
		return RetailResult{Result: res}, fmt.Errorf("bench: retail: %w", err)
	}
	res.Name = "retail"
	res.Latency = lat.result()
	rr := RetailResult{Result: res}
	if res.Events != int64(cfg.Events) {
		return rr, fmt.Errorf("bench: retail: %d events in, want %d", res.Events, cfg.Events)
	}
	if fi, err := os.Stat(filepath.Join(dir, "out.jsonl")); err == nil {
		rr.OutputBytes = fi.Size()
	}
	if rr.State, err = measureState(filepath.Join(dir, "state"), cfg.Logger); err != nil {
		return rr, fmt.Errorf("bench: retail: %w", err)
	}
	return rr, nil
}

// RunRetailLive runs the retail pipeline over the input file as RunRetail
// does, but stops it at the end of the file as a shutdown would, without
// ending its input: the watermark stays behind the last events, so the
// sessions, carts and timers of the shoppers active then are still open.
// It returns the state then, for the state per active shopper.
func (e *EndToEnd) RunRetailLive(ctx context.Context) (StateSize, error) {
	plan, dir, err := e.retailPlan("retail-live")
	if err != nil {
		return StateSize{}, fmt.Errorf("bench: retail live: %w", err)
	}
	defer os.RemoveAll(dir)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	plan.Source = wrapOpener(plan.Source, func(src pipeline.Source) pipeline.Source { return stopAtEnd{Source: src, stop: stop} })
	if _, err := runPlan(ctx, plan, e.cfg.Logger); err != nil {
		return StateSize{}, fmt.Errorf("bench: retail live: %w", err)
	}
	sz, err := measureState(filepath.Join(dir, "state"), e.cfg.Logger)
	if err != nil {
		return sz, fmt.Errorf("bench: retail live: %w", err)
	}
	return sz, nil
}

// RetailEventFields returns the optional event fields the retail pipeline
// decodes (its projection), for the limit loop of the same projection.
func (e *EndToEnd) RetailEventFields() (pipeline.EventFields, error) {
	plan, dir, err := e.retailPlan("retail-plan")
	if err != nil {
		return 0, fmt.Errorf("bench: retail: %w", err)
	}
	defer os.RemoveAll(dir)
	return plan.EventFields(), nil
}

// retailPlan plans the retail pipeline over the input file, its output
// (out.jsonl), dead letters and state in a new directory named after what,
// which the caller removes.
func (e *EndToEnd) retailPlan(what string) (plan *pipeline.Plan, dir string, err error) {
	if dir, err = os.MkdirTemp(e.dir, what+"-"); err != nil {
		return nil, "", err
	}
	spec := retailSpec(e.input, filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "dead.jsonl"), filepath.Join(dir, "state"),
		e.cfg.Partitions, e.cfg.CheckpointInterval.String())
	if plan, err = pipeline.ParsePlan(spec, "bench-"+what+".yaml"); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("plan: %w", err)
	}
	return plan, dir, nil
}

// stopAtEnd stops the run (stop cancels Run's context) when its source has
// delivered everything, instead of ending the input.
type stopAtEnd struct {
	pipeline.Source
	stop context.CancelFunc
}

func (s stopAtEnd) Read(ctx context.Context, resume pipeline.Offsets, d pipeline.Deliverer) error {
	if err := s.Source.Read(ctx, resume, d); err != nil {
		return err
	}
	s.stop()
	<-ctx.Done()
	return ctx.Err()
}

// liveSessionSuffix ends the raw key of a shopper's open session: the
// retail pipeline's sessionizer is "sessions" (raw key layout in
// state/keys.go: k <partition> <key> 00 v <table>).
var liveSessionSuffix = []byte("\x00vsessions/" + operators.SessionStateTable)

// measureState opens the state store in dir, compacts it and measures it.
func measureState(dir string, logger *slog.Logger) (StateSize, error) {
	db, err := state.Open(dir, state.WithLogger(logger))
	if err != nil {
		return StateSize{}, err
	}
	defer db.Close()
	if err := db.Compact(); err != nil {
		return StateSize{}, err
	}
	var sz StateSize
	seen := make(map[string]struct{})
	userBytes := make(map[string]int64) // by shopper
	var active []string
	err = db.ScanRaw(func(k, v []byte) bool {
		if scope, _ := state.RawKeyScope(k); scope != state.ScopePartition || len(k) <= 5 || (k[0] != 'k' && k[0] != 't') {
			return true
		}
		// k|t <partition> <key> 00 ...: the owner is the key, whatever the
		// partition and tag.
		owner := k[5:]
		if i := bytes.IndexByte(owner, 0); i >= 0 {
			owner = owner[:i]
		}
		n := int64(len(k) + len(v))
		sz.EncodedBytes += n
		user := bytes.HasPrefix(owner, []byte("u-"))
		if user {
			sz.UserEncodedBytes += n
			userBytes[string(owner)] += n
			if k[0] == 'k' && bytes.HasSuffix(k, liveSessionSuffix) {
				active = append(active, string(owner))
			}
		}
		if _, ok := seen[string(owner)]; !ok {
			seen[string(owner)] = struct{}{}
			if user {
				sz.Users++
			}
		}
		return true
	})
	sz.Keys = int64(len(seen))
	sz.ActiveUsers = int64(len(active))
	for _, u := range active {
		sz.ActiveUserEncodedBytes += userBytes[u]
	}
	sz.DiskBytes = int64(db.DiskSize())
	return sz, err
}
