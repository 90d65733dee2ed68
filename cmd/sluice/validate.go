package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pipeline"
)

// errReported is returned when the command already printed its errors.
var errReported = errors.New("invalid pipeline")

func validateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate PIPELINE.yaml",
		Short: "Check a pipeline and report every error with its line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := pipeline.LoadPlan(args[0])
			if err != nil {
				return reportSpecErrors(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s, %s, %s; optional event fields decoded: %s)\n", args[0],
				count(len(plan.Operators), "operator"), count(len(plan.Sinks), "sink"), count(plan.Spec.Partitions, "partition"),
				plan.EventFields())
			return nil
		},
	}
}

// count says n things: "1 sink", "2 sinks".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// reportSpecErrors prints every error of a spec, one a line, and returns
// errReported; other errors are returned as they are.
func reportSpecErrors(err error) error {
	var se pipeline.SpecErrors
	if !errors.As(err, &se) {
		return err
	}
	for _, e := range se {
		fmt.Fprintln(os.Stderr, e.Error())
	}
	fmt.Fprintf(os.Stderr, "%d error(s)\n", len(se))
	return errReported
}

func graphCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "graph PIPELINE.yaml",
		Short: "Draw a pipeline as a Mermaid or DOT graph",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := pipeline.LoadPlan(args[0])
			if err != nil {
				return reportSpecErrors(err)
			}
			switch format {
			case "mermaid":
				fmt.Fprint(cmd.OutOrStdout(), plan.Mermaid())
			case "dot":
				fmt.Fprint(cmd.OutOrStdout(), plan.DOT())
			default:
				return fmt.Errorf("--format %q: want mermaid or dot", format)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "mermaid", "mermaid or dot")
	return cmd
}
