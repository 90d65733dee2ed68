package kafka_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	_ "github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/generator"
	"github.com/sluicehq/sluice/connectors/kafka"
	_ "github.com/sluicehq/sluice/operators"
	"github.com/sluicehq/sluice/pipeline"
)

// The tests run against a kfake broker in the test process, over TCP, or
// against the cluster that SLUICE_KAFKA_BROKERS names (comma-separated
// host:port); every test uses topics and groups of its own.

// testBrokers returns the brokers to use and, with kfake, the broker.
func testBrokers(t *testing.T) ([]string, *kafka.DevBroker) {
	t.Helper()
	if env := os.Getenv("SLUICE_KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ","), nil
	}
	b, err := kafka.StartDev(kafka.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return []string{b.Addr()}, b
}

var nameSeq atomic.Int64

// uniqueName names a test's pipeline, topics and group.
func uniqueName(t *testing.T) string {
	re := regexp.MustCompile(`[^a-zA-Z0-9]+`)
	return fmt.Sprintf("%s-%d-%d", strings.ToLower(re.ReplaceAllString(t.Name(), "-")), time.Now().UnixNano()%1e6, nameSeq.Add(1))
}

// retailOperators are most of the retail pipeline's, with a window
// counter by product behind an exchange (one process owns every partition
// in these tests).
const retailOperators = `operators:
  - id: consent
    type: consent_filter
    with: {purposes: [analytics]}
  - id: sessions
    type: sessionizer
    inputs: [consent]
    with: {gap: 30m}
  - id: abandonment
    type: abandonment_detector
    inputs: [consent]
  - id: views
    type: filter
    inputs: [consent]
    with: {match: 'type == "product_viewed"'}
  - id: views_per_user
    type: key_counter
    inputs: [views]
  - id: views_1h
    type: window_counter
    inputs: [consent]
    with: {match: 'type == "product_viewed"', group_by: product.id, size: 1h}
`

// kafkaSpec is the retail pipeline from and to Kafka, bounded.
type kafkaSpec struct {
	name, dir  string
	brokers    []string
	partitions int
	checkpoint string
	session    string
	// group defaults to name.
	group string
}

func (k kafkaSpec) yaml() string {
	group := k.group
	if group == "" {
		group = k.name
	}
	quoted := make([]string, len(k.brokers))
	for i, b := range k.brokers {
		quoted[i] = fmt.Sprintf("%q", b)
	}
	b := "[" + strings.Join(quoted, ", ") + "]"
	session := k.session
	if session == "" {
		session = "10s"
	}
	return fmt.Sprintf(`version: 1
name: %s
source: {type: kafka, brokers: %s, topic: %s-events, group: %s, bounded: true, session_timeout: %s}
time: {max_out_of_orderness: 5s, idle_timeout: 24h}
partitions: %d
state: {dir: %q, checkpoint_interval: %s}
dead_letter: {type: kafka, brokers: %s, topic: %s-dead}
%ssinks:
  - {id: out, type: kafka, brokers: %s, topic: %s-out, inputs: [sessions, abandonment, views_per_user, views_1h]}
`, k.name, b, k.name, group, session, k.partitions, filepath.Join(k.dir, "state"), k.checkpoint, b, k.name, retailOperators, b, k.name)
}

// fileSpec is the same pipeline over a file, for reference.
func fileSpec(dir, events string, partitions int) string {
	return fmt.Sprintf(`version: 1
name: reference
source: {type: file, path: %q}
time: {max_out_of_orderness: 5s, idle_timeout: 24h}
partitions: %d
state: {dir: %q, checkpoint_interval: 1s}
dead_letter: {type: file, path: %q}
%ssinks:
  - {id: out, type: file, path: %q, inputs: [sessions, abandonment, views_per_user, views_1h]}
`, events, partitions, filepath.Join(dir, "state"), filepath.Join(dir, "dead.jsonl"), retailOperators, filepath.Join(dir, "out.jsonl"))
}

// genEvents writes n generated events to a file.
func genEvents(t *testing.T, n, users int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	var buf bytes.Buffer
	if err := generator.WriteJSONL(&buf, generator.Config{Count: n, Users: users, Seed: 42}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runSpec runs a spec in this process to its end.
func runSpec(t *testing.T, yamlSpec string) pipeline.Stats {
	t.Helper()
	r := newRunner(t, yamlSpec)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the run did not end")
	}
	return r.Stats()
}

// newRunner plans yamlSpec and makes its Runner.
func newRunner(t *testing.T, yamlSpec string) *pipeline.Runner {
	t.Helper()
	plan, err := pipeline.ParsePlan([]byte(yamlSpec), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := pipeline.NewRunner(plan)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// referenceRecords runs the pipeline over the events file and returns its
// records by id.
func referenceRecords(t *testing.T, events string, partitions int) map[string]string {
	t.Helper()
	dir := t.TempDir()
	runSpec(t, fileSpec(dir, events, partitions))
	return readFileRecords(t, filepath.Join(dir, "out.jsonl"))
}

func readFileRecords(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		addRecord(t, recs, sc.Text())
	}
	return recs
}

// addRecord adds one output line by id, failing on an id seen with other
// content.
func addRecord(t *testing.T, recs map[string]string, line string) {
	t.Helper()
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil || r.ID == "" {
		t.Fatalf("bad output %q: %v", line, err)
	}
	if prev, dup := recs[r.ID]; dup && prev != line {
		t.Fatalf("record %s emitted twice with different content:\n%s\n%s", r.ID, prev, line)
	}
	recs[r.ID] = line
}

// produce writes the events file to the topic, keyed by event key.
func produce(t *testing.T, brokers []string, topic, events string) int {
	t.Helper()
	f, err := os.Open(events)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := kafka.ProduceJSONL(context.Background(), f, kafka.ProduceConfig{ClientConfig: kafka.ClientConfig{Brokers: brokers}, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// createTopics creates the topics of a spec.
func createTopics(t *testing.T, brokers []string, yamlSpec string) {
	t.Helper()
	spec, err := pipeline.ParseSpec([]byte(yamlSpec), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topics, err := kafka.PipelineTopics(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range topics {
		if err := kafka.EnsureTopic(kafka.ClientConfig{Brokers: brokers}, tp.Name, tp.Partitions, tp.Configs); err != nil {
			t.Fatal(err)
		}
	}
}

// consumed is a message read back from a topic.
type consumed struct {
	partition int32
	offset    int64
	key       string
	value     []byte
	headers   map[string]string
}

// consumeAll reads every message of a topic, from the oldest to the
// newest offset of each partition at the time of the call.
func consumeAll(t *testing.T, brokers []string, topic string) []consumed {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = kafka.DefaultVersion
	consumer, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var out []consumed
	for _, r := range topicOffsets(t, brokers, topic) {
		if r.newest <= r.oldest {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, r.partition, r.oldest)
		if err != nil {
			t.Fatal(err)
		}
		for m := range pc.Messages() {
			c := consumed{partition: r.partition, offset: m.Offset, key: string(m.Key), value: m.Value, headers: map[string]string{}}
			for _, h := range m.Headers {
				c.headers[string(h.Key)] = string(h.Value)
			}
			out = append(out, c)
			if m.Offset >= r.newest-1 {
				break
			}
		}
		pc.Close()
	}
	return out
}

// offsetRange is a partition's oldest and newest (next) offsets.
type offsetRange struct {
	partition      int32
	oldest, newest int64
}

// topicOffsets returns the offset range of each partition of topic.
func topicOffsets(t *testing.T, brokers []string, topic string) []offsetRange {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = kafka.DefaultVersion
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]offsetRange, len(parts))
	for i, p := range parts {
		low, err1 := client.GetOffset(topic, p, sarama.OffsetOldest)
		high, err2 := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		out[i] = offsetRange{p, low, high}
	}
	return out
}

// topicRecords reads an output topic into records by id, checking that
// each message's key and Watermill UUID are the record's.
func topicRecords(t *testing.T, brokers []string, topic string, partitions int) map[string]string {
	t.Helper()
	recs := map[string]string{}
	for _, m := range consumeAll(t, brokers, topic) {
		var r struct {
			ID  string `json:"id"`
			Key string `json:"key"`
		}
		if err := json.Unmarshal(m.value, &r); err != nil {
			t.Fatalf("bad output message %q: %v", m.value, err)
		}
		if m.key != r.Key || m.headers["_watermill_message_uuid"] != r.ID {
			t.Fatalf("message key %q / uuid %q do not match record key %q / id %q", m.key, m.headers["_watermill_message_uuid"], r.Key, r.ID)
		}
		if want := int32(pipeline.PartitionOf(r.Key, partitions)); m.partition != want {
			t.Fatalf("record of key %q in partition %d, want %d (FNV-1a)", r.Key, m.partition, want)
		}
		addRecord(t, recs, string(m.value))
	}
	return recs
}

// sameRecords fails unless got and want hold the same records.
func sameRecords(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("the reference run emitted no records")
	}
	missing, extra, differ := 0, 0, 0
	for id, line := range want {
		g, ok := got[id]
		switch {
		case !ok:
			if missing < 3 {
				t.Errorf("missing record %s", line)
			}
			missing++
		case g != line:
			if differ < 3 {
				t.Errorf("record %s differs:\n got %s\nwant %s", id, g, line)
			}
			differ++
		}
	}
	for id, line := range got {
		if _, ok := want[id]; !ok {
			if extra < 3 {
				t.Errorf("extra record %s", line)
			}
			extra++
		}
	}
	if missing+extra+differ > 0 {
		t.Fatalf("%d records: %d missing, %d extra, %d differ (want %d records)", len(got), missing, extra, differ, len(want))
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "lines-*.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// sendRaw writes values to a topic with a key, in order.
func sendRaw(t *testing.T, brokers []string, topic, key string, values []string) {
	t.Helper()
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{ClientConfig: kafka.ClientConfig{Brokers: brokers}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, v := range values {
		if err := pub.Enqueue([]*sarama.ProducerMessage{{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(v)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
