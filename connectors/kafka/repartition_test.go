package kafka_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/pipeline"
)

// TestRepartitionTopicDeduplicates runs the retail pipeline (a window
// counter by product behind an exchange) over the first half of the events
// and stops it; then every exchanged event in the repartition topic is
// sent again, as a sender replaying after a crash would, and the second
// half of the events is produced. The second run skips the duplicates: the
// records equal those of the file run of all the events. The repartition
// topic holds every exchanged event in the partition that owns its group
// key, with its origin and position, and the final watermark marker of
// every origin in every partition.
func TestRepartitionTopicDeduplicates(t *testing.T) {
	brokers, _ := testBrokers(t)
	const n, parts = 20000, 8
	events := genEvents(t, n, 400)
	want := referenceRecords(t, events, parts)

	k := kafkaSpec{name: uniqueName(t), dir: t.TempDir(), brokers: brokers, partitions: parts, checkpoint: "200ms"}
	spec := strings.Replace(k.yaml(), "bounded: true", "bounded: false", 1)
	createTopics(t, brokers, spec)
	repTopic := kafka.RepartitionTopic(k.name)
	ps, err := pipeline.ParseSpec([]byte(spec), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topics, err := kafka.PipelineTopics(ps)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, tp := range topics {
		listed = listed || (tp.Name == repTopic && tp.Partitions == parts && tp.Role == "repartition")
	}
	if !listed {
		t.Fatalf("PipelineTopics lists no repartition topic %s with %d partitions: %+v", repTopic, parts, topics)
	}
	lines := readLines(t, events)
	produce(t, brokers, k.name+"-events", writeLines(t, lines[:n/2]))

	// First run: unbounded, stopped once it has taken every event in.
	r := newRunner(t, spec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for r.Stats().EventsIn < n/2 {
		select {
		case err := <-done:
			t.Fatalf("the run ended early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}

	// Every exchanged event is in the partition of its group key, and the
	// positions of each origin increase in each partition.
	first := consumeAll(t, brokers, repTopic)
	var dups []*sarama.ProducerMessage
	last := map[string]pipeline.ExchangePosition{}
	exchanged := 0
	for _, m := range first {
		for _, e := range exchangeMessages(t, m) {
			if e.Kind != pipeline.ExchangeEvent {
				continue
			}
			exchanged++
			if want := pipeline.PartitionOf(e.Key, parts); e.Partition != want {
				t.Fatalf("exchanged event of group %q in partition %d, want %d", e.Key, e.Partition, want)
			}
			if e.OperatorID != "views_1h" {
				t.Fatalf("exchanged event for operator %q", e.OperatorID)
			}
			stream := fmt.Sprint(e.Partition, "/", e.Origin)
			if prev, ok := last[stream]; ok && !positionAfter(e.Position, prev) {
				t.Fatalf("stream %s: position %+v after %+v", stream, e.Position, prev)
			}
			last[stream] = e.Position
		}
		// The crashed sender's replay: the same batches again.
		pm := &sarama.ProducerMessage{Topic: repTopic, Partition: m.partition, Value: sarama.ByteEncoder(m.value)}
		for hk, hv := range m.headers {
			pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: []byte(hk), Value: []byte(hv)})
		}
		dups = append(dups, pm)
	}
	if exchanged == 0 || len(first) >= exchanged {
		t.Fatalf("%d exchanged events in %d messages: want events, several per message", exchanged, len(first))
	}
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{ClientConfig: kafka.ClientConfig{Brokers: brokers}, Partitioner: sarama.NewManualPartitioner})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Enqueue(dups); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, k.name+"-events", writeLines(t, lines[n/2:]))

	// Second run, bounded, from where the first stopped.
	st := runSpec(t, k.yaml())
	if st.Late != 0 || st.DeadLetters != 0 {
		t.Fatalf("second run: %d late, %d dead letters", st.Late, st.DeadLetters)
	}
	sameRecords(t, topicRecords(t, brokers, k.name+"-out", parts), want)

	// Every partition got the final watermark of every origin.
	final := map[string]bool{}
	for _, m := range consumeAll(t, brokers, repTopic) {
		for _, e := range exchangeMessages(t, m) {
			if e.Kind == pipeline.ExchangeWatermark && e.Watermark == math.MaxInt64 {
				final[fmt.Sprint(e.Partition, "/", e.Origin)] = true
			}
		}
	}
	if len(final) != parts*parts {
		t.Fatalf("%d of the %d (partition, origin) streams ended with the final watermark", len(final), parts*parts)
	}
}

// exchangeMessages decodes a message of the repartition topic.
func exchangeMessages(t *testing.T, c consumed) []pipeline.ExchangeMessage {
	t.Helper()
	m := &sarama.ConsumerMessage{Partition: c.partition, Offset: c.offset, Key: []byte(c.key), Value: c.value}
	for hk, hv := range c.headers {
		m.Headers = append(m.Headers, &sarama.RecordHeader{Key: []byte(hk), Value: []byte(hv)})
	}
	ems, err := kafka.DecodeExchangeMessage(m)
	if err != nil {
		t.Fatalf("repartition partition %d offset %d: %v", c.partition, c.offset, err)
	}
	for i, e := range ems {
		if e.More != (i < len(ems)-1) || e.Offset != c.offset || int32(e.Partition) != c.partition {
			t.Fatalf("message %d of the batch at %d/%d: more %v, at %d/%d", i, c.partition, c.offset, e.More, e.Partition, e.Offset)
		}
	}
	return ems
}

// positionAfter reports whether origin position a comes after b.
func positionAfter(a, b pipeline.ExchangePosition) bool {
	if a.Space != b.Space {
		return true
	}
	return a.Offset > b.Offset || (a.Offset == b.Offset && a.Index > b.Index)
}
