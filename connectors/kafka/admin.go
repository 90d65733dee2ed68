package kafka

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
)

// changelogTopicConfig is how a changelog topic is created: compacted, so
// it keeps the latest value of every state key; deletions (tombstones) are
// kept a day so that a restoring process sees them; a record is not
// compacted away within an hour of being written, so that a checkpoint cut
// short by a crash is repaired (its keys written again) before the values
// it superseded can go.
var changelogTopicConfig = map[string]string{
	"cleanup.policy":        "compact",
	"min.compaction.lag.ms": strconv.Itoa(int(time.Hour / time.Millisecond)),
	"delete.retention.ms":   strconv.Itoa(int(24 * time.Hour / time.Millisecond)),
	"segment.ms":            strconv.Itoa(int(time.Hour / time.Millisecond)),
}

// ChangelogTopicConfig returns the topic configs a changelog topic is
// created with (for creating it by hand where Sluice may not).
func ChangelogTopicConfig() map[string]string {
	out := make(map[string]string, len(changelogTopicConfig))
	for k, v := range changelogTopicConfig {
		out[k] = v
	}
	return out
}

// EnsureTopic creates topic with partitions partitions and configs unless
// it exists; then it checks that it has that many partitions.
func EnsureTopic(cc ClientConfig, topic string, partitions int, configs map[string]string) error {
	sc, err := cc.saramaConfig()
	if err != nil {
		return err
	}
	admin, err := sarama.NewClusterAdmin(cc.Brokers, sc)
	if err != nil {
		return fmt.Errorf("kafka admin: %w", err)
	}
	defer admin.Close()
	return ensureTopic(admin, topic, partitions, configs)
}

func ensureTopic(admin sarama.ClusterAdmin, topic string, partitions int, configs map[string]string) error {
	entries := make(map[string]*string, len(configs))
	for k, v := range configs {
		entries[k] = &v
	}
	err := admin.CreateTopic(topic, &sarama.TopicDetail{
		NumPartitions:     int32(partitions),
		ReplicationFactor: -1,
		ConfigEntries:     entries,
	}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return checkPartitions(admin, topic, partitions)
}

// checkPartitions fails unless topic has exactly want partitions.
func checkPartitions(admin sarama.ClusterAdmin, topic string, want int) error {
	var got int
	for attempt := 0; ; attempt++ {
		md, err := admin.DescribeTopics([]string{topic})
		if err != nil {
			return fmt.Errorf("describe topic %s: %w", topic, err)
		}
		if len(md) == 1 && md[0].Err == sarama.ErrNoError {
			got = len(md[0].Partitions)
			break
		}
		if attempt == 20 {
			if len(md) == 1 {
				return fmt.Errorf("describe topic %s: %w", topic, md[0].Err)
			}
			return fmt.Errorf("describe topic %s: no metadata", topic)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != want {
		return fmt.Errorf("topic %s has %d partitions; the pipeline has %d, and Kafka partition p feeds pipeline partition p: "+
			"make them equal (set the spec's partitions to %d, or recreate the topic)", topic, got, want, got)
	}
	return nil
}
