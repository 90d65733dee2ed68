// Command sluice runs, checks and draws Sluice pipelines, and generates
// synthetic retail events.
//
//	sluice run examples/retail.yaml      run a pipeline
//	sluice validate pipeline.yaml        report every error with its line
//	sluice graph pipeline.yaml           draw it (Mermaid or DOT)
//	sluice gen --count 1000              synthetic retail events as JSONL
//	sluice dev kafka pipeline.yaml       a local Kafka-protocol broker with its topics
//	sluice produce pipeline.yaml         JSONL events from stdin to its Kafka topic
//	sluice consume --topic out ...       print a Kafka topic
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	_ "github.com/sluicehq/sluice/connectors"
	_ "github.com/sluicehq/sluice/connectors/generator"
	_ "github.com/sluicehq/sluice/operators"
)

func main() {
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Stream processing for real-time retail behaviour",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), validateCmd(), graphCmd(), genCmd(), importCmd(), benchCmd(), devCmd(), produceCmd(), consumeCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
}
