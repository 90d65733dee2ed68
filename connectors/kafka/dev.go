package kafka

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/pipeline"
)

// DevConfig configures a DevBroker.
type DevConfig struct {
	// Port is the loopback port to listen on; 0 picks a free one.
	Port int
	// DataDir keeps the broker's data across restarts; empty keeps it in
	// memory.
	DataDir string
	// MinSessionTimeout is the shortest consumer-group session timeout
	// the broker accepts. Default 1s (Kafka's default is 6s), so that
	// tests and demos fail over quickly.
	MinSessionTimeout time.Duration
}

// DevBroker is a Kafka-protocol broker on loopback (franz-go's kfake), for
// trying the Kafka path on a laptop and for tests: one process, no
// replication, everything Sluice uses (consumer groups, compaction).
type DevBroker struct {
	cluster *kfake.Cluster
	addr    string
}

// StartDev starts a DevBroker.
func StartDev(cfg DevConfig) (*DevBroker, error) {
	minSession := cfg.MinSessionTimeout
	if minSession <= 0 {
		minSession = time.Second
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(minSession),
		kfake.DefaultNumPartitions(1),
	}
	if cfg.Port != 0 {
		opts = append(opts, kfake.Ports(cfg.Port))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka dev broker: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, errors.New("kafka dev broker: no listener")
	}
	return &DevBroker{cluster: c, addr: addrs[0]}, nil
}

// Addr returns the broker's host:port.
func (b *DevBroker) Addr() string { return b.addr }

// Cluster returns the underlying kfake cluster (for tests: compaction,
// group inspection).
func (b *DevBroker) Cluster() *kfake.Cluster { return b.cluster }

// CreateTopic creates a topic unless it exists.
func (b *DevBroker) CreateTopic(t Topic) error {
	if info := b.cluster.TopicInfo(t.Name); info != nil {
		return nil
	}
	if err := b.cluster.CreateTopic(t.Name, int32(t.Partitions), t.Configs); err != nil {
		return fmt.Errorf("create topic %s: %w", t.Name, err)
	}
	return nil
}

// Close stops the broker (persisting its data when it has a DataDir).
func (b *DevBroker) Close() { b.cluster.Close() }

// Topic is a topic a pipeline needs.
type Topic struct {
	Name       string
	Partitions int
	Configs    map[string]string
	// Role says what the pipeline does with it: source, changelog,
	// repartition, sink <id> or dead_letter.
	Role string
}

// PipelineTopics returns the Kafka topics of a spec: its source topic and
// changelog topic (with the spec's partitions), its repartition topic (with
// the spec's partitions) when an operator groups by another key than the
// event's, its sinks' topics and its dead-letter topic.
func PipelineTopics(spec *pipeline.Spec) ([]Topic, error) {
	parts := spec.Partitions
	if parts <= 0 {
		parts = 1
	}
	var out []Topic
	if spec.Source.Type == "kafka" {
		cfg, err := componentConfig[SourceConfig](spec.Source.Config)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		out = append(out,
			Topic{Name: cfg.Topic, Partitions: parts, Role: "source"},
			Topic{Name: changelogTopic(spec.Name, cfg.ChangelogTopic), Partitions: parts, Configs: ChangelogTopicConfig(), Role: "changelog"})
		// A plan with exchanges sends them through a repartition topic.
		// (A spec the planner refuses lists none: the run fails anyway.)
		if plan, err := pipeline.NewPlan(spec); err == nil && plan.HasExchanges() {
			out = append(out, Topic{Name: RepartitionTopic(spec.Name), Partitions: parts, Role: "repartition"})
		}
	}
	for _, s := range spec.Sinks {
		if s.Type != "kafka" {
			continue
		}
		cfg, err := componentConfig[SinkConfig](s.Config)
		if err != nil {
			return nil, fmt.Errorf("sink %q: %w", s.ID, err)
		}
		out = append(out, Topic{Name: cfg.Topic, Partitions: parts, Role: "sink " + s.ID})
	}
	if dl := spec.DeadLetter; dl != nil && dl.Type == "kafka" {
		cfg, err := componentConfig[DeadLetterConfig](dl.Config)
		if err != nil {
			return nil, fmt.Errorf("dead_letter: %w", err)
		}
		out = append(out, Topic{Name: cfg.Topic, Partitions: 1, Role: "dead_letter"})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Role < out[j].Role })
	return out, nil
}

// RepartitionTopic returns the name of the repartition topic of pipeline:
// "<pipeline>-repartition".
func RepartitionTopic(pipeline string) string { return pipeline + "-repartition" }

// changelogTopic returns the changelog topic of pipeline: configured, or
// "<pipeline>-changelog".
func changelogTopic(pipeline, configured string) string {
	if configured != "" {
		return configured
	}
	return pipeline + "-changelog"
}

// componentConfig decodes a component's settings as the planner does
// (leniently: the planner reports errors).
func componentConfig[C any](v any) (C, error) {
	var c C
	switch x := v.(type) {
	case nil:
	case C:
		c = x
	case *C:
		c = *x
	case ast.Node:
		if err := yaml.NodeToValue(x, &c); err != nil {
			return c, err
		}
	case map[string]any:
		b, err := yaml.Marshal(x)
		if err != nil {
			return c, err
		}
		if err := yaml.Unmarshal(b, &c); err != nil {
			return c, err
		}
	default:
		return c, fmt.Errorf("unexpected config %T", v)
	}
	return c, nil
}
