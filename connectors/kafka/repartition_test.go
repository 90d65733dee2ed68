package kafka_test

import (
	"context"
	"fmt"
	"math"
	"strconv"
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
	plan, err := pipeline.ParsePlan([]byte(spec), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := pipeline.NewRunner(plan)
	if err != nil {
		t.Fatal(err)
	}
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
	last := map[string]string{}
	for _, m := range first {
		if m.headers[kafka.HeaderExchangeKind] != "event" {
			continue
		}
		key := m.headers[kafka.HeaderExchangeKey]
		if want := int32(pipeline.PartitionOf(key, parts)); m.partition != want || m.key != key {
			t.Fatalf("exchanged event of group %q (message key %q) in partition %d, want %d", key, m.key, m.partition, want)
		}
		if m.headers[kafka.HeaderExchangeOperatorID] != "views_1h" {
			t.Fatalf("exchanged event for operator %q", m.headers[kafka.HeaderExchangeOperatorID])
		}
		stream := fmt.Sprint(m.partition, "/", m.headers[kafka.HeaderExchangeOrigin])
		pos := m.headers[kafka.HeaderExchangePosition]
		if prev, ok := last[stream]; ok && !positionAfter(t, pos, prev) {
			t.Fatalf("stream %s: position %s after %s", stream, pos, prev)
		}
		last[stream] = pos
		pm := &sarama.ProducerMessage{Topic: repTopic, Partition: m.partition, Key: sarama.StringEncoder(m.key), Value: sarama.ByteEncoder(m.value)}
		for hk, hv := range m.headers {
			pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: []byte(hk), Value: []byte(hv)})
		}
		dups = append(dups, pm)
	}
	if len(dups) == 0 {
		t.Fatal("no exchanged event in the repartition topic")
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
		if m.headers[kafka.HeaderExchangeKind] == "watermark" && m.headers[kafka.HeaderExchangeWatermark] == strconv.FormatInt(math.MaxInt64, 10) {
			final[fmt.Sprint(m.partition, "/", m.headers[kafka.HeaderExchangeOrigin])] = true
		}
	}
	if len(final) != parts*parts {
		t.Fatalf("%d of the %d (partition, origin) streams ended with the final watermark", len(final), parts*parts)
	}
}

// positionAfter reports whether origin position a (space/offset/index)
// comes after b in the same space.
func positionAfter(t *testing.T, a, b string) bool {
	t.Helper()
	parse := func(s string) [3]int64 {
		f := strings.Split(s, "/")
		if len(f) != 3 {
			t.Fatalf("bad position %q", s)
		}
		var out [3]int64
		for i := range f {
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				t.Fatalf("bad position %q", s)
			}
			out[i] = v
		}
		return out
	}
	pa, pb := parse(a), parse(b)
	if pa[0] != pb[0] {
		return true
	}
	return pa[1] > pb[1] || (pa[1] == pb[1] && pa[2] > pb[2])
}
