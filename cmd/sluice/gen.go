package main

import (
	"bufio"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/connectors/generator"
)

func genCmd() *cobra.Command {
	var cfg generator.Config
	var start string
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Write synthetic retail events as JSONL to stdout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if cfg.Start, err = parseStart(start); err != nil {
				return err
			}
			w := bufio.NewWriterSize(os.Stdout, 256<<10)
			if err := generator.WriteJSONL(w, cfg); err != nil {
				return err
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Count, "count", 10000, "events to write (0: without end)")
	f.IntVar(&cfg.Users, "users", 1000, "distinct shoppers")
	f.Int64Var(&cfg.Seed, "seed", 1, "random seed; the same seed gives the same events")
	f.Float64Var(&cfg.Rate, "rate", 0, "events per second of wall time (0: as fast as possible)")
	f.Float64Var(&cfg.NoConsentShare, "no-consent-share", 0.1, "share of visitors who never grant analytics consent")
	f.StringVar(&start, "start", generator.DefaultStart.Format(time.RFC3339),
		"event time of the first event: RFC 3339, or now (events a running pipeline has passed are late)")
	return cmd
}

// parseStart reads gen's --start: an RFC 3339 time, or "now".
func parseStart(s string) (time.Time, error) {
	if s == "now" {
		return time.Now().UTC().Truncate(time.Millisecond), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--start %q: want an RFC 3339 time (2026-11-29T00:00:00Z) or now", s)
	}
	return t.UTC(), nil
}
