package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/pipeline"
)

// The Kafka end-to-end tests run real `sluice run` processes against a
// Kafka-protocol broker (kfake) in the test process, over TCP; with
// SLUICE_KAFKA_BROKERS (comma-separated host:port) they use that cluster.

func kafkaBrokers(t *testing.T) []string {
	t.Helper()
	if env := os.Getenv("SLUICE_KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ",")
	}
	b, err := kafka.StartDev(kafka.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return []string{b.Addr()}
}

// kafkaCounterSpec is counterSpec's pipeline, plus a sessionizer (timers)
// and a window counter by product behind an exchange (through the
// repartition topic), from and to Kafka, bounded; name names its topics
// and group.
func kafkaCounterSpec(t *testing.T, dir, name string, brokers []string) string {
	t.Helper()
	b, _ := json.Marshal(brokers)
	spec := fmt.Sprintf(`version: 1
name: %[1]s
source: {type: kafka, brokers: %[2]s, topic: %[1]s-events, group: %[1]s, bounded: true, session_timeout: 2s}
time: {max_out_of_orderness: 5s, idle_timeout: 24h}
partitions: 4
state: {dir: %[3]q, checkpoint_interval: 200ms}
dead_letter: {type: kafka, brokers: %[2]s, topic: %[1]s-dead}
%[4]ssinks:
  - {id: out, type: kafka, brokers: %[2]s, topic: %[1]s-out, inputs: [all, views_per_user, sessions, views_1h]}
`, name, b, filepath.Join(dir, "state"), counterOperators)
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	ps, err := pipeline.ParseSpec([]byte(spec), path)
	if err != nil {
		t.Fatal(err)
	}
	topics, err := kafka.PipelineTopics(ps)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range topics {
		if err := kafka.EnsureTopic(kafka.ClientConfig{Brokers: brokers}, tp.Name, tp.Partitions, tp.Configs); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

const counterOperators = `operators:
  - id: all
    type: key_counter
  - id: views
    type: filter
    with: {match: 'type == "product_viewed"'}
  - id: views_per_user
    type: key_counter
    inputs: [views]
  - id: sessions
    type: sessionizer
    with: {gap: 30m}
  - id: views_1h
    type: window_counter
    inputs: [views]
    with: {group_by: product.id, size: 1h, spike: {ratio: 2, baseline_windows: 3, min_count: 5}}
`

// fileCounterSpec is the same pipeline over a file.
func fileCounterSpec(t *testing.T, dir, events string) string {
	t.Helper()
	spec := fmt.Sprintf(`version: 1
name: reference
source: {type: file, path: %q}
time: {max_out_of_orderness: 5s, idle_timeout: 24h}
partitions: 4
state: {dir: %q, checkpoint_interval: 1s}
%ssinks:
  - {id: out, type: file, path: %q, inputs: [all, views_per_user, sessions, views_1h]}
`, events, filepath.Join(dir, "state"), counterOperators, filepath.Join(dir, "out.jsonl"))
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// kafkaReference runs the file pipeline and produces the events to the
// Kafka pipeline's topic with `sluice produce`.
func kafkaReference(t *testing.T, events, kafkaSpecPath string) (refDir string, want map[string]string) {
	t.Helper()
	refDir = t.TempDir()
	if _, stderr, err := sluice(t, "run", "--no-progress", fileCounterSpec(t, refDir, events)); err != nil {
		t.Fatalf("reference run: %v\n%s", err, stderr)
	}
	want = readRecords(t, filepath.Join(refDir, "out.jsonl"))
	types := map[string]int{}
	for _, line := range want {
		var r struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal([]byte(line), &r)
		types[r.Type]++
	}
	if types["window_result"] == 0 || types["demand_spike"] == 0 {
		t.Fatalf("the reference run emitted no records of the operator behind the exchange: %v", types)
	}
	in, err := os.Open(events)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd := exec.Command(sluiceBin, "produce", kafkaSpecPath)
	cmd.Stdin = in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("produce: %v\n%s", err, out)
	}
	return refDir, want
}

// outputRecords reads the output topic with `sluice consume` into
// records by id.
func outputRecords(t *testing.T, brokers []string, topic string) map[string]string {
	t.Helper()
	out, stderr, err := sluice(t, "consume", "--brokers", strings.Join(brokers, ","), "--topic", topic)
	if err != nil {
		t.Fatalf("consume: %v\n%s", err, stderr)
	}
	path := filepath.Join(t.TempDir(), "out.jsonl")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return readRecords(t, path)
}

func sameOutputs(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("the reference run emitted no records")
	}
	if len(got) != len(want) {
		t.Errorf("Kafka run: %d distinct records, file run: %d", len(got), len(want))
	}
	for id, line := range want {
		if got[id] != line {
			t.Fatalf("record %s: Kafka run %q, file run %q", id, got[id], line)
		}
	}
}

// proc is a running `sluice run` whose stderr is watched.
type proc struct {
	cmd  *exec.Cmd
	done chan error
	mu   sync.Mutex
	log  bytes.Buffer
	seen chan string
}

func startSluice(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(sluiceBin, args...), done: make(chan error, 1), seen: make(chan string, 1024)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.seen <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
		}
	})
	return p
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLine waits for a stderr line matching re and returns its submatches;
// it fails if the process ends first.
func (p *proc) waitLine(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	guard := time.After(2 * time.Minute)
	for {
		select {
		case line := <-p.seen:
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case err := <-p.done:
			p.done <- err
			t.Fatalf("sluice ended (%v) before logging %s:\n%s", err, re, p.stderr())
		case <-guard:
			t.Fatalf("sluice never logged %s:\n%s", re, p.stderr())
		}
	}
}

func (p *proc) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(3 * time.Minute):
		t.Fatalf("sluice did not end:\n%s", p.stderr())
		return nil
	}
}

var assignedRE = regexp.MustCompile(`msg="partitions assigned" partitions="\[([0-9 ]*)\]"`)

func parseParts(s string) []int {
	var out []int
	for f := range strings.FieldsSeq(s) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

// TestKafkaCrashRecovery SIGKILLs a real `sluice run` consuming from Kafka
// at several points and restarts it each time: the final state and the
// de-duplicated outputs equal those of the file run of the same events.
func TestKafkaCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 150k-event Kafka pipeline several times")
	}
	brokers := kafkaBrokers(t)
	events := genEvents(t, 150000, 3000)
	dir := t.TempDir()
	name := fmt.Sprintf("crash-%d", time.Now().UnixNano()%1e9)
	spec := kafkaCounterSpec(t, dir, name, brokers)
	refDir, want := kafkaReference(t, events, spec)

	rng := rand.New(rand.NewPCG(3, 4))
	kills := 0
	for attempt := 0; ; attempt++ {
		if attempt > 30 {
			t.Fatal("the crashed run never finished")
		}
		p := startSluice(t, "run", "--no-progress", spec)
		if kills < 4 {
			// Kill once the process owns its partitions and has been
			// processing for a while.
			p.waitLine(t, assignedRE)
			killed := false
			select {
			case err := <-p.done:
				if err != nil {
					t.Fatalf("run failed: %v\n%s", err, p.stderr())
				}
			case <-time.After(time.Duration(50+rng.IntN(400)) * time.Millisecond):
				_ = p.cmd.Process.Signal(syscall.SIGKILL)
				<-p.done
				kills++
				killed = true
			}
			if killed {
				continue
			}
			break
		}
		if err := p.wait(t); err != nil {
			t.Fatalf("final run failed: %v\n%s", err, p.stderr())
		}
		break
	}
	if kills == 0 {
		t.Fatal("the run finished before any kill: make the input larger")
	}
	t.Logf("killed %d times", kills)
	sameOutputs(t, outputRecords(t, brokers, name+"-out"), want)
	compareCounters(t, filepath.Join(refDir, "state"), filepath.Join(dir, "state"), want, 4)
}

// TestKafkaScaleOut runs two processes in one consumer group: they split
// the partitions; one is SIGKILLed, the other takes its partitions over,
// restores their state from the changelog, and the final outputs and state
// equal those of the file run.
func TestKafkaScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two Kafka pipeline processes and a failover")
	}
	brokers := kafkaBrokers(t)
	events := genEvents(t, 150000, 3000)
	dirA, dirB := t.TempDir(), t.TempDir()
	name := fmt.Sprintf("scale-%d", time.Now().UnixNano()%1e9)
	specA := kafkaCounterSpec(t, dirA, name, brokers)
	refDir, want := kafkaReference(t, events, specA)

	a := startSluice(t, "run", "--no-progress", specA)
	if got := parseParts(a.waitLine(t, assignedRE)[1]); len(got) != 4 {
		t.Fatalf("the first process got partitions %v, want all 4", got)
	}
	b := startSluice(t, "run", "--no-progress", "--state-dir", filepath.Join(dirB, "state"), specA)
	partsB := parseParts(b.waitLine(t, assignedRE)[1])
	partsA := parseParts(a.waitLine(t, assignedRE)[1])
	if len(partsA) != 2 || len(partsB) != 2 {
		t.Fatalf("the processes got partitions %v and %v, want two each", partsA, partsB)
	}
	// Let both work, then kill the first.
	time.Sleep(300 * time.Millisecond)
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	// The survivor takes the dead one's partitions over, restoring them.
	if got := parseParts(b.waitLine(t, assignedRE)[1]); len(got) != 4 {
		t.Fatalf("after the failover the survivor got partitions %v, want all 4", got)
	}
	if err := b.wait(t); err != nil {
		t.Fatalf("survivor failed: %v\n%s", err, b.stderr())
	}
	logB := b.stderr()
	for _, p := range partsA {
		re := regexp.MustCompile(fmt.Sprintf(`partition (restored|caught up) from the changelog.* partition=%d `, p))
		if !re.MatchString(logB) {
			t.Errorf("the survivor did not restore partition %d from the changelog:\n%s", p, logB)
		}
	}
	if slices.Equal(partsA, partsB) {
		t.Fatal("both processes had the same partitions")
	}
	sameOutputs(t, outputRecords(t, brokers, name+"-out"), want)
	// The survivor's store holds every partition, restored or its own.
	compareCounters(t, filepath.Join(refDir, "state"), filepath.Join(dirB, "state"), want, 4)
}
