package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/benchmarks"
)

func benchCmd() *cobra.Command {
	var (
		events     int
		partitions int
		users      int
		rate       float64
		ckpt       time.Duration
		cpuprofile string
		dir        string
		repeat     int
	)
	cmd := &cobra.Command{
		Use:   "bench [engine|e2e|retail|all]",
		Short: "Measure the engine, a file-to-file pipeline and the retail pipeline: events/s, allocations, latency",
		Long: `bench runs the benchmark harness and prints a table.

  engine  pre-decoded events from memory through a keyed counter (Pebble
          state, a checkpoint every --checkpoint-interval) into a counting
          sink: once as fast as possible, once at a fixed --rate.
  e2e     the same pipeline from a JSONL file to a JSONL file, beside the
          limit loop (decode each line, encode one record, write it, on
          all cores, nothing else), and the ratio of the two.
  retail  the five-operator pipeline of examples/retail.yaml from a JSONL
          file to a JSONL file, beside the limit loop, the ratio of the
          two, and the state per shopper: once the input has ended, and
          per active shopper in a run stopped at the end of its input.
  all     all of them (the default).

Latency is event-to-output: from the source handing a batch to the runtime
to the sink receiving the record. As fast as possible it is mostly queueing;
the fixed-rate run shows what an event sees when the pipeline keeps up.

On a shared machine one run's ratio to the limit moves by several points;
--repeat N runs the limit loop and the file pipelines N times in turn and
reports every ratio and their median.`,
		Args:      cobra.MatchAll(cobra.MaximumNArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{"engine", "e2e", "retail", "all"},
		RunE: func(cmd *cobra.Command, args []string) error {
			which := "all"
			if len(args) == 1 {
				which = args[0]
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if repeat < 1 {
				return fmt.Errorf("--repeat %d: at least 1", repeat)
			}
			b := &bench{
				out: cmd.OutOrStdout(), log: cmd.ErrOrStderr(),
				events: events, partitions: partitions, users: users, rate: rate, ckpt: ckpt, dir: dir, repeat: repeat,
			}
			return b.run(ctx, which, cpuprofile)
		},
	}
	f := cmd.Flags()
	f.IntVar(&events, "events", 0, fmt.Sprintf("events per run (default %d for engine, %d for e2e)", benchmarks.DefaultEngineEvents, benchmarks.DefaultE2EEvents))
	f.IntVar(&partitions, "partitions", benchmarks.DefaultPartitions, "pipeline partitions")
	f.IntVar(&users, "users", benchmarks.DefaultUsers, "distinct shoppers (keys) in the generated events")
	f.Float64Var(&rate, "rate", 0, "events/s of the engine's fixed-rate run (0: half the measured maximum; negative: no fixed-rate run)")
	f.DurationVar(&ckpt, "checkpoint-interval", benchmarks.DefaultCheckpointDur, "time between checkpoints")
	f.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the measured runs to `file`")
	f.StringVar(&dir, "dir", "", "directory for temporary state and files (default: the system's)")
	f.IntVar(&repeat, "repeat", 1, "run the limit loop and the file pipelines this many times, in turn, and report the median ratio")
	return cmd
}

type bench struct {
	out, log   io.Writer
	events     int
	partitions int
	users      int
	rate       float64
	ckpt       time.Duration
	dir        string
	repeat     int
}

func (b *bench) run(ctx context.Context, which, cpuprofile string) (err error) {
	// Prepare everything first, so that the profile holds only the runs.
	var (
		eng *benchmarks.Engine
		e2e *benchmarks.EndToEnd
	)
	if which == "engine" || which == "all" {
		fmt.Fprintf(b.log, "engine: generating %d events...\n", min(b.engineEvents(), benchmarks.DefaultPool))
		if eng, err = benchmarks.NewEngine(benchmarks.EngineConfig{
			Partitions: b.partitions, Users: b.users, CheckpointInterval: b.ckpt, Dir: b.dir,
			Pool: min(b.engineEvents(), benchmarks.DefaultPool),
		}); err != nil {
			return err
		}
	}
	if which == "e2e" || which == "retail" || which == "all" {
		n := b.events
		if n <= 0 {
			n = benchmarks.DefaultE2EEvents
		}
		fmt.Fprintf(b.log, "%s: writing %d events to a JSONL file...\n", which, n)
		if e2e, err = benchmarks.NewEndToEnd(benchmarks.EndToEndConfig{
			Events: n, Partitions: b.partitions, Users: b.users, CheckpointInterval: b.ckpt, Dir: b.dir,
		}); err != nil {
			return err
		}
		defer func() {
			if cerr := e2e.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("remove benchmark files: %w", cerr)
			}
		}()
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	var rows []row
	if eng != nil {
		n := b.engineEvents()
		fmt.Fprintf(b.log, "engine: %d events as fast as possible...\n", n)
		res, err := eng.Run(ctx, n, 0)
		if err != nil {
			return err
		}
		rows = append(rows, row{name: "engine, max", res: res})
		if rate := b.rate; rate >= 0 {
			if rate == 0 {
				rate = res.EventsPerSec / 2
			}
			// A run of at most about 10 s.
			n := min(n, max(int(rate*10), benchmarks.BatchSize))
			fmt.Fprintf(b.log, "engine: %d events at %s events/s...\n", n, thousands(int64(rate)))
			res, err := eng.Run(ctx, n, rate)
			if err != nil {
				return err
			}
			rows = append(rows, row{name: "engine @ " + short(rate) + "/s", res: res})
		}
	}
	var (
		e2eRatios, retailRatios, retailProjRatios []float64
		retail                                    *benchmarks.RetailResult
	)
	for rep := 0; e2e != nil && rep < b.repeat; rep++ {
		suffix := ""
		if b.repeat > 1 {
			suffix = fmt.Sprintf(" #%d", rep+1)
		}
		fmt.Fprintf(b.log, "limit loop on %d goroutines over %d events (%s MiB)...\n", runtime.GOMAXPROCS(0), e2e.Events(), strconv.FormatInt(e2e.InputBytes()>>20, 10))
		lim, err := e2e.RunLimit(ctx)
		if err != nil {
			return err
		}
		if which != "retail" {
			fmt.Fprintf(b.log, "e2e: pipeline over %d events (%s MiB)...\n", e2e.Events(), strconv.FormatInt(e2e.InputBytes()>>20, 10))
			res, err := e2e.RunPipeline(ctx)
			if err != nil {
				return err
			}
			e2eRatios = append(e2eRatios, res.EventsPerSec/lim.EventsPerSec)
			rows = append(rows, row{name: "e2e, file to file" + suffix, res: res})
		}
		if which == "retail" || which == "all" {
			fmt.Fprintf(b.log, "retail: the five-operator pipeline over %d events...\n", e2e.Events())
			res, err := e2e.RunRetail(ctx)
			if err != nil {
				return err
			}
			retail = &res
			retailRatios = append(retailRatios, res.EventsPerSec/lim.EventsPerSec)
			rows = append(rows, row{name: "retail, file to file" + suffix, res: res.Result})
			// The limit of a pipeline that decodes what retail decodes.
			fields, err := e2e.RetailEventFields()
			if err != nil {
				return err
			}
			fmt.Fprintf(b.log, "limit loop decoding of the optional fields only %s...\n", fields)
			proj, err := e2e.RunLimitReading(ctx, fields)
			if err != nil {
				return err
			}
			retailProjRatios = append(retailProjRatios, res.EventsPerSec/proj.EventsPerSec)
			rows = append(rows, row{name: "limit, retail's projection" + suffix, res: proj})
		}
		rows = append(rows, row{name: fmt.Sprintf("limit, %d goroutines", runtime.GOMAXPROCS(0)) + suffix, res: lim})
	}
	b.print(rows)
	if len(e2eRatios) > 0 {
		fmt.Fprintln(b.out)
		b.printRatios("e2e / limit", e2eRatios, targetNote)
	}
	if retail != nil {
		fmt.Fprintln(b.log, "retail: once more, stopped at the end of the input without ending it, for the state of active shoppers...")
		live, err := e2e.RunRetailLive(ctx)
		if err != nil {
			return err
		}
		b.printRatios("retail / limit", retailRatios, targetNote)
		b.printRatios("retail / limit decoding only what retail reads", retailProjRatios, "")
		b.printRetail(retail, live)
	}
	return nil
}

// targetNote follows the ratios the issues set a target for.
const targetNote = " (target >= 50%)"

// printRatios prints a pipeline's ratios to the limit loop and, for
// several, their median, followed by note.
func (b *bench) printRatios(name string, ratios []float64, note string) {
	if len(ratios) == 1 {
		fmt.Fprintf(b.out, "%s: %.1f%%%s\n", name, ratios[0]*100, note)
		return
	}
	parts := make([]string, len(ratios))
	for i, r := range ratios {
		parts[i] = fmt.Sprintf("%.1f%%", r*100)
	}
	sorted := slices.Sorted(slices.Values(ratios))
	median := sorted[len(sorted)/2]
	if len(sorted)%2 == 0 {
		median = (sorted[len(sorted)/2-1] + median) / 2
	}
	fmt.Fprintf(b.out, "%s: median %.1f%% of %d runs (%s)%s\n", name, median*100, len(ratios), strings.Join(parts, ", "), note)
}

// printRetail prints the retail run's records and state: r's after the
// final checkpoint, live's with the input stopped but not ended.
func (b *bench) printRetail(r *benchmarks.RetailResult, live benchmarks.StateSize) {
	s := r.State
	fmt.Fprintf(b.out, "retail: %s records (%.2f per event), output %s MiB\n",
		thousands(r.Records), float64(r.Records)/float64(max(r.Events, 1)), strconv.FormatInt(r.OutputBytes>>20, 10))
	fmt.Fprintf(b.out, "retail state after the final checkpoint: %s keys (%s shoppers); encoded keys+values %s B (%s B of shoppers); Pebble on disk after compaction %s B\n",
		thousands(s.Keys), thousands(s.Users), thousands(s.EncodedBytes), thousands(s.UserEncodedBytes), thousands(s.DiskBytes))
	if s.Users > 0 && s.Keys > 0 {
		fmt.Fprintf(b.out, "retail state per shopper: %.0f B encoded; per key (all keys) %.0f B encoded, %.0f B on disk\n",
			float64(s.UserEncodedBytes)/float64(s.Users), float64(s.EncodedBytes)/float64(s.Keys), float64(s.DiskBytes)/float64(s.Keys))
	}
	if live.ActiveUsers > 0 {
		fmt.Fprintf(b.out, "retail state mid-stream (stopped at the end of the input, not ended): %s shoppers with an open session, %.0f B encoded per active shopper (all its state: session, consent, segments, cart, timers); %s shoppers in all, %.0f B each\n",
			thousands(live.ActiveUsers), float64(live.ActiveUserEncodedBytes)/float64(live.ActiveUsers), thousands(live.Users), float64(live.UserEncodedBytes)/float64(max(live.Users, 1)))
	}
}

func (b *bench) engineEvents() int {
	if b.events > 0 {
		return b.events
	}
	return benchmarks.DefaultEngineEvents
}

type row struct {
	name string
	res  benchmarks.Result
}

func (b *bench) print(rows []row) {
	fmt.Fprintf(b.out, "\n%s %s/%s, GOMAXPROCS %d, %s; %d partitions, %d users, checkpoint every %s\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), cpuModel(), b.partitions, b.users, b.ckpt)
	tw := tabwriter.NewWriter(b.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tevents\tevents/s\tCPU/event\tallocs/event\tB/event\tp50\tp99\tp99.9\tmax\tcheckpoints\t")
	for _, r := range rows {
		res := r.res
		p50, p99, p999, mx := "-", "-", "-", "-"
		if l := res.Latency; l.Count > 0 {
			p50, p99, p999, mx = dur(l.P50), dur(l.P99), dur(l.P999), dur(l.Max)
		}
		ckpts := "-"
		if res.Name != "limit" {
			ckpts = strconv.FormatInt(res.Checkpoints, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", r.name, thousands(res.Events), thousands(int64(res.EventsPerSec)),
			cpuPerEvent(res.CPUPerEvent), res.AllocsPerEvent, res.BytesPerEvent, p50, p99, p999, mx, ckpts)
	}
	tw.Flush()
	for _, r := range rows {
		if r.res.Latency.Stale > 0 {
			fmt.Fprintf(b.out, "warning: %s: %d latencies lost to the source's event pool coming round; the quantiles are low\n", r.name, r.res.Latency.Stale)
		}
	}
}

func cpuPerEvent(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 2, 64) + "µs"
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}

// thousands formats n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var sb strings.Builder
	if neg {
		sb.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			sb.WriteByte(',')
		}
		sb.WriteRune(c)
	}
	return sb.String()
}

// short formats a rate: 1.2M, 850K.
func short(r float64) string {
	switch {
	case r >= 1e6:
		return strconv.FormatFloat(r/1e6, 'f', 2, 64) + "M"
	case r >= 1e3:
		return strconv.FormatFloat(r/1e3, 'f', 0, 64) + "K"
	default:
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
}

// cpuModel returns the processor's name on Linux, else "".
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return runtime.GOARCH
}
