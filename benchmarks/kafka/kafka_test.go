// Package kafka benchmarks Sluice's Kafka path against a Kafka-protocol
// broker (kfake) in the same process, over TCP:
//
//	go test ./benchmarks/kafka -run '^$' -bench . -benchtime 1x
//
// BenchmarkKafka measures, in one run: the raw consume throughput of
// watermill-kafka's Subscriber (the ceiling: every message acknowledged,
// nothing else), an empty pipeline over the same events (the Kafka source
// and the decoder; one operator drops every event), the retail pipeline
// (examples/retail-kafka.yaml's operators) reading the same events from a
// topic and writing its records to another, and the pipeline's
// event-to-output latency at half of the rate it reached. Both pipelines
// are timed from start to shutdown (group join, final checkpoint, leaving
// the group); the raw consume up to its last message.
// SLUICE_KAFKA_BROKERS runs it against a real cluster;
// SLUICE_BENCH_CPUPROFILE=file writes a CPU profile of the retail
// pipeline's run alone.
package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/benchmarks"
	"github.com/sluicehq/sluice/connectors/generator"
	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/examples"
	_ "github.com/sluicehq/sluice/operators"
	"github.com/sluicehq/sluice/pipeline"
)

const (
	benchEvents = 200000
	benchUsers  = 5000
	partitions  = 8
)

// retailOperators are examples/retail-kafka.yaml's.
var retailOperators = examples.Operators(examples.RetailKafka)

func brokers(b *testing.B) []string {
	if env := os.Getenv("SLUICE_KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ",")
	}
	d, err := kafka.StartDev(kafka.DevConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.Close)
	return []string{d.Addr()}
}

var seq atomic.Int64

func name(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

// retailOutputs are the retail operators whose records the benchmarks
// write out.
const retailOutputs = "sessions, views_1h, segments, abandonment"

// pipelineSpec is the retail pipeline from topic events to topic out.
func pipelineSpec(bs []string, pname, events, out, dir string, bounded bool) string {
	return kafkaSpec(bs, pname, events, dir, bounded, retailOperators, kafkaSink(bs, out, retailOutputs))
}

// kafkaSink is a sinks entry writing the records of inputs to topic.
func kafkaSink(bs []string, topic, inputs string) string {
	return fmt.Sprintf("  - {id: out, type: kafka, brokers: %s, topic: %s, inputs: [%s]}\n", brokersJSON(bs), topic, inputs)
}

// emptySpec is a pipeline that decodes the events of topic events and
// drops them all: the Kafka source's own cost, without operators, state
// or outputs.
func emptySpec(bs []string, pname, events, out, dir string) string {
	return kafkaSpec(bs, pname, events, dir, true,
		"operators:\n  - {id: none, type: filter, with: {match: 'type == \"none\"'}}\n",
		kafkaSink(bs, out, "none"))
}

// kafkaSpec is a pipeline from topic events with the given operators and
// sinks blocks.
func kafkaSpec(bs []string, pname, events, dir string, bounded bool, operators, sinks string) string {
	return fmt.Sprintf(`version: 1
name: %s
source: {type: kafka, brokers: %s, topic: %s, group: %s, bounded: %v}
time: {max_out_of_orderness: 5s, idle_timeout: 24h}
partitions: %d
state: {dir: %q, checkpoint_interval: 1s, sync: never}
%ssinks:
%s`, pname, brokersJSON(bs), events, pname, bounded, partitions, dir, operators, sinks)
}

func brokersJSON(bs []string) string {
	q, _ := json.Marshal(bs)
	return string(q)
}

func createTopics(b *testing.B, bs []string, spec string) {
	ps, err := pipeline.ParseSpec([]byte(spec), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	ts, err := kafka.PipelineTopics(ps)
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range ts {
		if err := kafka.EnsureTopic(kafka.ClientConfig{Brokers: bs}, t.Name, t.Partitions, t.Configs); err != nil {
			b.Fatal(err)
		}
	}
}

// produce writes the events of data to topic and returns their number.
func produce(b *testing.B, bs []string, topic string, data []byte) int {
	n, err := kafka.ProduceJSONL(context.Background(), bytes.NewReader(data), kafka.ProduceConfig{ClientConfig: kafka.ClientConfig{Brokers: bs}, Topic: topic})
	if err != nil || n != benchEvents {
		b.Fatalf("produced %d: %v", n, err)
	}
	return n
}

// eventsJSONL generates the benchmark's events.
func eventsJSONL(b *testing.B) []byte {
	var buf bytes.Buffer
	if err := generator.WriteJSONL(&buf, generator.Config{Count: benchEvents, Users: benchUsers, Seed: 7}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// rawConsume reads n messages of topic with watermill-kafka's Subscriber
// in a new group, acknowledging each, and returns the rate and the
// process's CPU time per message.
func rawConsume(b *testing.B, bs []string, topic string, n int) (float64, time.Duration) {
	sc := sarama.NewConfig()
	sc.Version = kafka.DefaultVersion
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Return.Errors = true
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers:               bs,
		Unmarshaler:           rawUnmarshaler{},
		OverwriteSaramaConfig: sc,
		ConsumerGroup:         name("raw"),
	}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	start, cpu := time.Now(), benchmarks.ProcessCPU()
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		m := <-msgs
		m.Ack()
	}
	return float64(n) / time.Since(start).Seconds(), (benchmarks.ProcessCPU() - cpu) / time.Duration(n)
}

type rawUnmarshaler struct{}

func (rawUnmarshaler) Unmarshal(m *sarama.ConsumerMessage) (*message.Message, error) {
	return message.NewMessage("", m.Value), nil
}

// benchLogger logs warnings, or everything down to debug (checkpoint
// durations and pauses) with SLUICE_BENCH_DEBUG=1.
func benchLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SLUICE_BENCH_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// runBounded runs the pipeline over the n events of its topic and returns
// the rate and the process's CPU time per event.
func runBounded(b *testing.B, spec string, n int) (float64, time.Duration) {
	plan, err := pipeline.ParsePlan([]byte(spec), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	logger := benchLogger()
	if path := os.Getenv("SLUICE_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	start, cpu := time.Now(), benchmarks.ProcessCPU()
	r, err := pipeline.NewRunner(plan, pipeline.WithLogger(logger))
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	if got := r.Stats().EventsIn; got != int64(n) {
		b.Fatalf("the pipeline took %d events, want %d", got, n)
	}
	return float64(n) / time.Since(start).Seconds(), (benchmarks.ProcessCPU() - cpu) / time.Duration(n)
}

// inputs are the events the latency run produces, in order: their lines
// and keys, and the index of each by a hash of its id. The bookkeeping is
// free of pointers but for the keys, so that the harness's own heap adds
// little to the garbage collections of the process it measures (a map of
// event ids to sent times doubled their mark time, and the latency's tail
// with it).
type inputs struct {
	lines [][]byte
	keys  []string
	index map[uint64]int32
}

func newInputs(b *testing.B, lines [][]byte) *inputs {
	var dec pipeline.EventDecoder
	var e pipeline.Event
	in := &inputs{lines: lines, keys: make([]string, len(lines)), index: make(map[uint64]int32, len(lines))}
	for i, l := range lines {
		if err := dec.Decode(l, &e); err != nil {
			b.Fatal(err)
		}
		in.keys[i] = strings.Clone(e.Key())
		in.index[idHash(e.EventID)] = int32(i)
	}
	return in
}

// idSeed seeds idHash.
var idSeed = maphash.MakeSeed()

// idHash is a 64-bit hash of an event id.
func idHash(id string) uint64 { return maphash.String(idSeed, id) }

// latencies are the event-to-output latencies of a run, in microseconds:
// from producing an event to reading back from the output topic a record
// it caused (total), and to the record's timestamp, which the sink's
// producer sets as it puts the record into a request (toSink: the broker
// hop to the reader left out; millisecond resolution).
type latencies struct {
	total, toSink *hdrhistogram.Histogram
}

// latency runs the pipeline unbounded while events are produced at rate
// per second for d, and measures the latencies.
func latency(b *testing.B, bs []string, in *inputs, rate float64, d time.Duration) latencies {
	dir := b.TempDir()
	pname := name("latency")
	events, out := pname+"-events", pname+"-out"
	spec := pipelineSpec(bs, pname, events, out, filepath.Join(dir, "state"), false)
	createTopics(b, bs, spec)
	plan, err := pipeline.ParsePlan([]byte(spec), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	r, err := pipeline.NewRunner(plan, pipeline.WithLogger(benchLogger()))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(ctx) }()

	// When each input was sent, in Unix nanoseconds (0: not yet).
	sent := make([]atomic.Int64, len(in.lines))
	lat := latencies{
		total:  hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3),
		toSink: hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3),
	}
	consumerCtx, stopConsumer := context.WithCancel(context.Background())
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		readOutputs(b, bs, out, consumerCtx, func(id string, ts time.Time) {
			at := time.Now().UnixNano()
			ev, _, _ := strings.Cut(id, "/")
			if i, ok := in.index[idHash(ev)]; ok {
				if t0 := sent[i].Load(); t0 != 0 {
					_ = lat.total.RecordValue((at - t0) / int64(time.Microsecond))
					_ = lat.toSink.RecordValue(max(ts.UnixNano()-t0, 0) / int64(time.Microsecond))
				}
			}
		})
	}()

	pub, err := kafka.NewPublisher(kafka.PublisherConfig{ClientConfig: kafka.ClientConfig{Brokers: bs}})
	if err != nil {
		b.Fatal(err)
	}
	// Warm up (group join, first assignment) before measuring.
	time.Sleep(2 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	produced := 0
	for time.Since(start) < d && produced < len(in.lines) {
		<-tick.C
		due := int(rate * time.Since(start).Seconds())
		var batch []*sarama.ProducerMessage
		now := time.Now().UnixNano()
		for ; produced < due && produced < len(in.lines); produced++ {
			sent[produced].Store(now)
			batch = append(batch, &sarama.ProducerMessage{Topic: events, Key: sarama.StringEncoder(in.keys[produced]), Value: sarama.ByteEncoder(in.lines[produced])})
		}
		if len(batch) > 0 {
			if err := pub.Enqueue(batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := pub.Close(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the last outputs
	stopConsumer()
	<-consumed
	cancel()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	return lat
}

// readOutputs calls fn with the id and the timestamp of every record
// written to topic until ctx is done.
func readOutputs(b *testing.B, bs []string, topic string, ctx context.Context, fn func(id string, ts time.Time)) {
	sc := sarama.NewConfig()
	sc.Version = kafka.DefaultVersion
	sc.Consumer.MaxWaitTime = 5 * time.Millisecond
	consumer, err := sarama.NewConsumer(bs, sc)
	if err != nil {
		b.Error(err)
		return
	}
	defer consumer.Close()
	var wg sync.WaitGroup
	for p := range int32(partitions) {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			b.Error(err)
			return
		}
		wg.Go(func() {
			defer pc.Close()
			for {
				select {
				case m := <-pc.Messages():
					for _, h := range m.Headers {
						if string(h.Key) == wkafka.UUIDHeaderKey {
							fn(string(h.Value), m.Timestamp)
						}
					}
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkKafka(b *testing.B) {
	bs := brokers(b)
	data := eventsJSONL(b)
	in := newInputs(b, bytes.Split(bytes.TrimSpace(data), []byte("\n")))
	for range b.N {
		dir := b.TempDir()
		pname := name("retail")
		events, out := pname+"-events", pname+"-out"
		spec := pipelineSpec(bs, pname, events, out, filepath.Join(dir, "state"), true)
		createTopics(b, bs, spec)
		n := produce(b, bs, events, data)
		raw, rawCPU := rawConsume(b, bs, events, n)
		empty, emptyCPU := runBounded(b, emptySpec(bs, name("empty"), events, pname+"-empty-out", filepath.Join(dir, "empty")), n)
		piped, pipedCPU := runBounded(b, spec, n)
		lat := latency(b, bs, in, piped/2, 10*time.Second)
		b.ReportMetric(raw, "raw_msgs/s")
		b.ReportMetric(piped, "pipeline_events/s")
		b.ReportMetric(100*piped/raw, "pipeline_%_of_raw")
		b.ReportMetric(100*empty/raw, "empty_pipeline_%_of_raw")
		b.ReportMetric(float64(emptyCPU)/1000, "empty_pipeline_cpu_µs/event")
		b.ReportMetric(float64(rawCPU)/1000, "raw_cpu_µs/msg")
		b.ReportMetric(float64(pipedCPU)/1000, "pipeline_cpu_µs/event")
		b.ReportMetric(piped/2, "latency_rate/s")
		b.ReportMetric(float64(lat.total.ValueAtQuantile(50))/1000, "p50_ms")
		b.ReportMetric(float64(lat.total.ValueAtQuantile(99))/1000, "p99_ms")
		b.ReportMetric(float64(lat.toSink.ValueAtQuantile(50))/1000, "p50_to_sink_producer_ms")
		b.ReportMetric(float64(lat.toSink.ValueAtQuantile(99))/1000, "p99_to_sink_producer_ms")
		b.ReportMetric(float64(lat.total.TotalCount()), "latency_samples")
	}
}

// BenchmarkKafkaBreakdown says where the retail pipeline's throughput goes
// on Kafka: against the raw consume of the same events, in one run, the
// empty pipeline, then the retail pipeline without views_1h (the operator
// whose events cross partitions through the repartition topic) and whole,
// each writing its records to a file or to a topic. Every pipeline keeps
// its state in Pebble and its changelog topic, checkpoints every second.
func BenchmarkKafkaBreakdown(b *testing.B) {
	bs := brokers(b)
	data := eventsJSONL(b)
	variants, err := breakdownVariants(bs, b.TempDir)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		events := name("breakdown") + "-events"
		if err := kafka.EnsureTopic(kafka.ClientConfig{Brokers: bs}, events, partitions, nil); err != nil {
			b.Fatal(err)
		}
		n := produce(b, bs, events, data)
		raw, rawCPU := rawConsume(b, bs, events, n)
		b.ReportMetric(raw, "raw_msgs/s")
		b.ReportMetric(float64(rawCPU)/1000, "raw_cpu_µs/msg")
		for _, v := range variants {
			spec := v.spec(name(strings.ReplaceAll(v.name, "_", "-")), events, filepath.Join(b.TempDir(), "state"))
			createTopics(b, bs, spec)
			rate, cpu := runBounded(b, spec, n)
			b.ReportMetric(100*rate/raw, v.name+"_%_of_raw")
			b.ReportMetric(float64(cpu)/1000, v.name+"_cpu_µs/event")
		}
	}
}

// variant is one of BenchmarkKafkaBreakdown's pipelines: its name, and
// its spec given its name, its topic of events and its state directory.
type variant struct {
	name string
	spec func(pname, events, dir string) string
}

// breakdownVariants are BenchmarkKafkaBreakdown's pipelines, from the
// cheapest to the whole retail pipeline; tmp gives the file sinks a
// directory.
func breakdownVariants(bs []string, tmp func() string) ([]variant, error) {
	noViews, err := withoutOperator(retailOperators, "views_1h")
	if err != nil {
		return nil, err
	}
	fileSink := func(inputs string) string {
		return fmt.Sprintf("  - {id: out, type: file, path: %q, inputs: [%s]}\n", filepath.Join(tmp(), "out.jsonl"), inputs)
	}
	const allButViews = "sessions, segments, abandonment"
	return []variant{
		{"empty", func(pname, events, dir string) string { return emptySpec(bs, pname, events, pname+"-out", dir) }},
		{"no_views_to_file", func(pname, events, dir string) string {
			return kafkaSpec(bs, pname, events, dir, true, noViews, fileSink(allButViews))
		}},
		{"no_views_to_kafka", func(pname, events, dir string) string {
			return kafkaSpec(bs, pname, events, dir, true, noViews, kafkaSink(bs, pname+"-out", allButViews))
		}},
		{"retail_to_file", func(pname, events, dir string) string {
			return kafkaSpec(bs, pname, events, dir, true, retailOperators, fileSink(retailOutputs))
		}},
		{"retail_to_kafka", func(pname, events, dir string) string {
			return kafkaSpec(bs, pname, events, dir, true, retailOperators, kafkaSink(bs, pname+"-out", retailOutputs))
		}},
	}, nil
}

// TestBenchmarkSpecs plans every pipeline the benchmarks run, so that a
// change to examples/retail-kafka.yaml that breaks one fails here and not
// only when someone benchmarks.
func TestBenchmarkSpecs(t *testing.T) {
	bs := []string{"127.0.0.1:9092"}
	dir := t.TempDir()
	variants, err := breakdownVariants(bs, t.TempDir)
	if err != nil {
		t.Fatal(err)
	}
	variants = append(variants, variant{"retail", func(pname, events, dir string) string {
		return pipelineSpec(bs, pname, events, pname+"-out", dir, false)
	}})
	for _, v := range variants {
		spec := v.spec("p-"+strings.ReplaceAll(v.name, "_", "-"), "events", dir)
		plan, err := pipeline.ParsePlan([]byte(spec), v.name+".yaml")
		if err != nil {
			t.Fatalf("%s: %v\n%s", v.name, err, spec)
		}
		var ids []string
		for _, op := range plan.Operators {
			ids = append(ids, op.ID)
		}
		hasViews := slices.Contains(ids, "views_1h")
		if want := strings.HasPrefix(v.name, "retail"); hasViews != want {
			t.Errorf("%s: operators %v: views_1h present %v, want %v", v.name, ids, hasViews, want)
		}
	}
}

// withoutOperator returns an operators block without operator id (written
// as examples/*.yaml write them: "  - id: <id>" opens an operator).
func withoutOperator(operators, id string) (string, error) {
	start := strings.Index(operators, "  - id: "+id+"\n")
	if start < 0 {
		return "", fmt.Errorf("no operator %q in %q", id, operators)
	}
	end := len(operators)
	if next := strings.Index(operators[start+1:], "  - id: "); next >= 0 {
		end = start + 1 + next
	}
	return operators[:start] + operators[end:], nil
}
