package main

import (
	"bufio"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/connectors/generator"
)

func genCmd() *cobra.Command {
	var cfg generator.Config
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Write synthetic retail events as JSONL to stdout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
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
	return cmd
}
