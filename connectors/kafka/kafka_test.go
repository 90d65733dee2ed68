package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/pipeline"
)

// TestEndToEndEqualsFileRun produces events to an 8-partition topic, runs
// the retail pipeline from it to an output topic, and compares the output
// with the run of the same pipeline over the same events in a file. The
// exchanges the run applied are purged from the repartition topic as it
// goes (with a purge delay of 1ms instead of 30s).
func TestEndToEndEqualsFileRun(t *testing.T) {
	brokers, _ := testBrokers(t)
	events := genEvents(t, 20000, 400)
	want := referenceRecords(t, events, 8)

	k := kafkaSpec{name: uniqueName(t), dir: t.TempDir(), brokers: brokers, partitions: 8, checkpoint: "200ms"}
	spec := strings.Replace(k.yaml(), "bounded: true", "bounded: true, repartition_purge_delay: 1ms", 1)
	createTopics(t, brokers, spec)
	if n := produce(t, brokers, k.name+"-events", events); n != 20000 {
		t.Fatalf("produced %d events", n)
	}
	st := runSpec(t, spec)
	if st.EventsIn != 20000 || st.DeadLetters != 0 {
		t.Fatalf("stats: %+v", st)
	}
	if st.Late != 0 {
		t.Errorf("%d events were dropped as late across the outage", st.Late)
	}
	sameRecords(t, topicRecords(t, brokers, k.name+"-out", 8), want)

	// Every partition of the repartition topic carried exchanges, and
	// the run deleted what it had applied: the oldest offsets moved.
	for _, r := range topicOffsets(t, brokers, kafka.RepartitionTopic(k.name)) {
		if r.newest == 0 || r.oldest == 0 || r.oldest > r.newest {
			t.Errorf("repartition partition %d: offsets %d to %d; want exchanges, some of them purged", r.partition, r.oldest, r.newest)
		}
	}
}

// TestPoisonMessageIsDeadLettered puts messages that are not events in the
// middle of a partition: each is dead-lettered with its reason, partition
// and offset, and the events after it in the same partition are processed.
func TestPoisonMessageIsDeadLettered(t *testing.T) {
	brokers, _ := testBrokers(t)
	events := genEvents(t, 4000, 100)
	want := referenceRecords(t, events, 8)

	k := kafkaSpec{name: uniqueName(t), dir: t.TempDir(), brokers: brokers, partitions: 8, checkpoint: "200ms"}
	spec := k.yaml()
	createTopics(t, brokers, spec)
	topic := k.name + "-events"
	// Half the events, then poison keyed like u-1 (so in u-1's partition),
	// then the rest.
	lines := readLines(t, events)
	half := writeLines(t, lines[:len(lines)/2])
	rest := writeLines(t, lines[len(lines)/2:])
	produce(t, brokers, topic, half)
	poison := []string{"this is not json", `{"event_id":"x","type":"page_viewed","user_id":"u-1","timestamp":"yesterday"}`}
	sendRaw(t, brokers, topic, "u-1", poison)
	produce(t, brokers, topic, rest)

	st := runSpec(t, spec)
	if st.EventsIn != 4000 || st.DeadLetters != 2 {
		t.Fatalf("events in %d, dead letters %d; want 4000 and 2", st.EventsIn, st.DeadLetters)
	}
	sameRecords(t, topicRecords(t, brokers, k.name+"-out", 8), want)
	dead := consumeAll(t, brokers, k.name+"-dead")
	if len(dead) != 2 {
		t.Fatalf("%d dead letters in the topic, want 2", len(dead))
	}
	wantPart := fmt.Sprint(pipeline.PartitionOf("u-1", 8))
	for i, d := range dead {
		if string(d.value) != poison[i] {
			t.Errorf("dead letter %d: payload %q, want %q", i, d.value, poison[i])
		}
		if d.headers[kafka.HeaderSplit] != wantPart || d.headers[kafka.HeaderOffset] == "" {
			t.Errorf("dead letter %d: split %q offset %q, want split %s", i, d.headers[kafka.HeaderSplit], d.headers[kafka.HeaderOffset], wantPart)
		}
	}
	if r := dead[0].headers[kafka.HeaderReason]; !strings.Contains(r, "not JSON") {
		t.Errorf("reason %q does not say it is not JSON", r)
	}
	if r := dead[1].headers[kafka.HeaderReason]; !strings.Contains(r, "timestamp") {
		t.Errorf("reason %q does not name the timestamp", r)
	}
}

// TestDeadLetterTooLargeIsTruncated writes a dead letter longer than a
// Kafka message may be: it arrives with the start of the input and its
// length, and the sink goes on.
func TestDeadLetterTooLargeIsTruncated(t *testing.T) {
	brokers, _ := testBrokers(t)
	topic := uniqueName(t) + "-dead"
	if err := kafka.EnsureTopic(kafka.ClientConfig{Brokers: brokers}, topic, 1, nil); err != nil {
		t.Fatal(err)
	}
	dl, err := kafka.OpenDeadLetter(kafka.DeadLetterConfig{ClientConfig: kafka.ClientConfig{Brokers: brokers}, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 2<<20)
	letters := []pipeline.DeadLetter{
		{Reason: "event too large", Split: 0, Offset: 7, Payload: big},
		{Reason: "not JSON", Split: 0, Offset: 8, Payload: []byte("nope")},
	}
	if err := dl.WriteDeadLetters(letters); err != nil {
		t.Fatal(err)
	}
	if err := dl.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	dead := consumeAll(t, brokers, topic)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	d := dead[0]
	if len(d.value) >= 1_000_000 || len(d.value) < 900_000 || !bytes.HasPrefix(big, d.value) {
		t.Errorf("truncated dead letter: %d bytes, a prefix of the input: %v", len(d.value), bytes.HasPrefix(big, d.value))
	}
	if got := d.headers[kafka.HeaderTruncated]; got != fmt.Sprint(len(big)) {
		t.Errorf("header %s = %q, want %d", kafka.HeaderTruncated, got, len(big))
	}
	if d.headers[kafka.HeaderReason] != "event too large" || d.headers[kafka.HeaderOffset] != "7" {
		t.Errorf("headers %v", d.headers)
	}
	if string(dead[1].value) != "nope" || dead[1].headers[kafka.HeaderTruncated] != "" {
		t.Errorf("second dead letter: %q %v", dead[1].value, dead[1].headers)
	}
}

// TestBrokerRestart stops the broker in the middle of a run and starts it
// again on the same port with the same data: the pipeline reconnects and
// ends with the records of the file run, nothing lost.
func TestBrokerRestart(t *testing.T) {
	if os.Getenv("SLUICE_KAFKA_BROKERS") != "" {
		t.Skip("stops and starts the in-process broker")
	}
	port := freePort(t)
	dataDir := t.TempDir()
	b, err := kafka.StartDev(kafka.DevConfig{Port: port, DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	brokers := []string{b.Addr()}
	events := genEvents(t, 60000, 1000)
	want := referenceRecords(t, events, 8)

	// The broker stays down longer than the group's session timeout: the
	// group expires the member, which rejoins and is assigned anew.
	k := kafkaSpec{name: uniqueName(t), dir: t.TempDir(), brokers: brokers, partitions: 8, checkpoint: "200ms", session: "2s"}
	spec := k.yaml()
	createTopics(t, brokers, spec)
	produce(t, brokers, k.name+"-events", events)

	r := newRunner(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for r.Stats().EventsIn < 10000 {
		select {
		case err := <-done:
			t.Fatalf("the run ended before the broker stopped: %v", err)
		case <-time.After(2 * time.Millisecond):
		}
	}
	b.Close()
	stoppedAt := r.Stats().EventsIn
	time.Sleep(3 * time.Second)
	b2, err := kafka.StartDev(kafka.DevConfig{Port: port, DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b2.Close)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the run did not end")
	}
	st := r.Stats()
	t.Logf("broker stopped at %d events in; %d in at the end, %d skipped as already committed", stoppedAt, st.EventsIn, st.Skipped)
	if stoppedAt >= 60000 {
		t.Fatal("the run had read everything before the broker stopped")
	}
	sameRecords(t, topicRecords(t, brokers, k.name+"-out", 8), want)
}
