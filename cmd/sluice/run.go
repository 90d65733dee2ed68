package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/sluicehq/sluice/pipeline"
)

type runFlags struct {
	partitions int
	stateDir   string
	logLevel   string
	noProgress bool
}

func runCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run PIPELINE.yaml",
		Short: "Run a pipeline until its source ends or SIGINT/SIGTERM",
		Long: `Run a pipeline. A bounded source (a file, a generator with a count) runs to
its end: the watermark then goes to +infinity, every window closes, every
timer fires, the run checkpoints and exits 0. SIGINT or SIGTERM drains, takes a
final checkpoint and exits 0. A restart resumes from the last checkpoint.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return run(args[0], f) },
	}
	cmd.Flags().IntVar(&f.partitions, "partitions", 0, "override the spec's partitions")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "override the spec's state.dir")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().BoolVar(&f.noProgress, "no-progress", false, "no live progress line even on a terminal")
	return cmd
}

func run(path string, f runFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	spec, err := pipeline.LoadSpec(path)
	if err != nil {
		return reportSpecErrors(err)
	}
	if f.partitions > 0 {
		spec.Partitions = f.partitions
	}
	if f.stateDir != "" {
		spec.State.Dir = f.stateDir
	}
	plan, err := pipeline.NewPlan(spec)
	if err != nil {
		return reportSpecErrors(err)
	}
	runner, err := pipeline.NewRunner(plan, pipeline.WithLogger(logger))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	var progress *mpb.Progress
	if !f.noProgress && isTerminal(os.Stderr) {
		progress = showProgress(ctx, runner, start)
	}
	err = runner.Run(ctx)
	if progress != nil {
		progress.Shutdown()
	}
	printSummary(os.Stderr, runner.Stats(), time.Since(start))
	return err
}

// showProgress draws a live line on the terminal: events/s, watermark, lag
// behind the wall clock, checkpoints.
func showProgress(ctx context.Context, r *pipeline.Runner, start time.Time) *mpb.Progress {
	p := mpb.NewWithContext(ctx, mpb.WithOutput(os.Stderr), mpb.WithRefreshRate(250*time.Millisecond))
	var lastN int64
	lastT := start
	var rate float64
	bar := p.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
		s := r.Stats()
		now := time.Now()
		if dt := now.Sub(lastT); dt >= 500*time.Millisecond {
			rate = float64(s.EventsIn-lastN) / dt.Seconds()
			lastN, lastT = s.EventsIn, now
		}
		wm, lag := "-", "-"
		if y := s.Watermark.Year(); y > 1900 && y < 9000 {
			wm = s.Watermark.Format(time.RFC3339)
			lag = now.Sub(s.Watermark).Round(time.Second).String()
		}
		return fmt.Sprintf("events %d (%.0f/s)  records %d  watermark %s  lag %s  checkpoints %d  late %d  dead %d",
			s.EventsIn, rate, s.Records, wm, lag, s.Checkpoints, s.Late, s.DeadLetters)
	})))
	go func() {
		<-ctx.Done()
		bar.Abort(false)
	}()
	return p
}

func printSummary(w io.Writer, s pipeline.Stats, elapsed time.Duration) {
	rate := float64(s.EventsIn) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "sluice: %d events in (%.0f/s over %s), %d records out, %d late, %d dead-lettered, %d skipped as already committed, %d operator errors, %d checkpoints\n",
		s.EventsIn, rate, elapsed.Round(time.Millisecond), s.Records, s.Late, s.DeadLetters, s.Skipped, s.OperatorErrors, s.Checkpoints)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
