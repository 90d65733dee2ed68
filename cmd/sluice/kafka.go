package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/pipeline"
)

func devCmd() *cobra.Command {
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Local stand-ins for production services",
	}
	var cfg kafka.DevConfig
	var extra []string
	k := &cobra.Command{
		Use:   "kafka [PIPELINE.yaml...]",
		Short: "Run a local Kafka-protocol broker (kfake) with the topics of the given pipelines",
		Long: `Run a Kafka-protocol broker (franz-go's kfake) on 127.0.0.1 until SIGINT or
SIGTERM, with the topics that the given pipelines use: the source topic, the
state changelog topic and, for a pipeline with exchanges, the repartition
topic (with the pipeline's partitions), the sinks' topics and the dead-letter
topic. It is one in-process broker, for trying the Kafka
path on a laptop: point the pipelines' brokers at it.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var topics []kafka.Topic
			for _, path := range args {
				spec, err := pipeline.LoadSpec(path)
				if err != nil {
					return reportSpecErrors(err)
				}
				ts, err := kafka.PipelineTopics(spec)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				topics = append(topics, ts...)
			}
			for _, t := range extra {
				name, parts, err := parseTopicFlag(t)
				if err != nil {
					return err
				}
				topics = append(topics, kafka.Topic{Name: name, Partitions: parts, Role: "--topic"})
			}
			b, err := kafka.StartDev(cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			for _, t := range topics {
				if err := b.CreateTopic(t); err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "sluice: Kafka-protocol broker (kfake) on %s\n", b.Addr())
			for _, t := range topics {
				fmt.Fprintf(os.Stderr, "  topic %-40s %2d partitions  (%s)\n", t.Name, t.Partitions, t.Role)
			}
			if cfg.DataDir == "" {
				fmt.Fprintln(os.Stderr, "  data in memory: it is gone when the broker stops (--data-dir keeps it)")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
	k.Flags().IntVar(&cfg.Port, "port", 9092, "loopback port to listen on (0: any free one)")
	k.Flags().StringVar(&cfg.DataDir, "data-dir", "", "keep the broker's data in this directory across restarts")
	k.Flags().DurationVar(&cfg.MinSessionTimeout, "min-session-timeout", 0, "shortest consumer-group session timeout accepted (default 1s)")
	k.Flags().StringArrayVar(&extra, "topic", nil, "another topic to create, NAME:PARTITIONS (repeatable)")
	dev.AddCommand(k)
	return dev
}

func parseTopicFlag(s string) (string, int, error) {
	name, n, ok := strings.Cut(s, ":")
	parts := 1
	if ok {
		if _, err := fmt.Sscanf(n, "%d", &parts); err != nil || parts <= 0 {
			return "", 0, fmt.Errorf("--topic %q: partitions must be a positive number", s)
		}
	}
	if name == "" {
		return "", 0, fmt.Errorf("--topic %q: no name", s)
	}
	return name, parts, nil
}

// kafkaSourceOf returns the brokers and topic of a spec's Kafka source.
func kafkaSourceOf(path string) (kafka.SourceConfig, error) {
	var cfg kafka.SourceConfig
	spec, err := pipeline.LoadSpec(path)
	if err != nil {
		return cfg, reportSpecErrors(err)
	}
	if spec.Source.Type != "kafka" {
		return cfg, fmt.Errorf("%s: the source is %q, not kafka", path, spec.Source.Type)
	}
	plan, err := pipeline.NewPlan(spec)
	if err != nil {
		return cfg, reportSpecErrors(err)
	}
	src, err := plan.Source()
	if err != nil {
		return cfg, err
	}
	ks, ok := src.(*kafka.Source)
	if !ok {
		return cfg, fmt.Errorf("%s: unexpected source %T", path, src)
	}
	defer ks.Close()
	return ks.Config(), nil
}

func produceCmd() *cobra.Command {
	var brokers []string
	var topic string
	cmd := &cobra.Command{
		Use:   "produce [PIPELINE.yaml]",
		Short: "Write JSONL events from stdin to a Kafka topic, keyed by event key",
		Long: `Write each line of standard input (JSONL events, as sluice gen writes them)
as one message to a Kafka topic, keyed by the event's key (user_id, else
anonymous_id) and partitioned with FNV-1a, as the pipeline partitions. A line
that is not a valid event is written without a key: the pipeline
dead-letters it. With a pipeline, its Kafka source gives the brokers and the
topic.

  sluice gen --count 100000 | sluice produce examples/retail-kafka.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc := kafka.ClientConfig{Brokers: brokers}
			if len(args) == 1 {
				src, err := kafkaSourceOf(args[0])
				if err != nil {
					return err
				}
				if len(brokers) == 0 {
					cc = src.ClientConfig
				}
				if topic == "" {
					topic = src.Topic
				}
			}
			if len(cc.Brokers) == 0 || topic == "" {
				return errors.New("give a pipeline with a Kafka source, or --brokers and --topic")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := kafka.ProduceJSONL(ctx, bufio.NewReaderSize(os.Stdin, 256<<10), kafka.ProduceConfig{ClientConfig: cc, Topic: topic})
			fmt.Fprintf(os.Stderr, "sluice: %d messages written to %s\n", n, topic)
			return err
		},
	}
	cmd.Flags().StringSliceVar(&brokers, "brokers", nil, "bootstrap brokers, host:port (comma-separated)")
	cmd.Flags().StringVar(&topic, "topic", "", "topic to write to")
	return cmd
}

func consumeCmd() *cobra.Command {
	var cfg kafka.ConsumeConfig
	cmd := &cobra.Command{
		Use:   "consume --brokers HOST:PORT --topic TOPIC",
		Short: "Print the messages of a Kafka topic, one value per line",
		Long: `Print the value of every message of a topic, one per line, from the oldest
offset of each partition; with --follow, go on printing new messages until
SIGINT. With --headers, print each message as a JSON object with its
partition, offset, key and headers (dead-letter reasons are headers).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			w := bufio.NewWriterSize(os.Stdout, 64<<10)
			defer w.Flush()
			var out io.Writer = w
			if cfg.Follow {
				out = flushEach{w}
			}
			n, err := kafka.Consume(ctx, out, cfg)
			w.Flush()
			fmt.Fprintf(os.Stderr, "sluice: %d messages\n", n)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringSliceVar(&cfg.Brokers, "brokers", nil, "bootstrap brokers, host:port (comma-separated)")
	cmd.Flags().StringVar(&cfg.Topic, "topic", "", "topic to read")
	cmd.Flags().BoolVar(&cfg.Follow, "follow", false, "wait for new messages instead of stopping at the end")
	cmd.Flags().BoolVar(&cfg.Headers, "headers", false, "print partition, offset, key and headers with each value")
	return cmd
}

// flushEach flushes after every write, so that a follower sees each line.
type flushEach struct{ w *bufio.Writer }

func (f flushEach) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}
