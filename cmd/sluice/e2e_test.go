package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/state"
)

// sluiceBin is the sluice binary built for these tests.
var sluiceBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sluiceBin = filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", sluiceBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sluice:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sluice runs the binary and returns its stdout and stderr.
func sluice(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(sluiceBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// genEvents writes n generated events to a file and returns its path.
func genEvents(t *testing.T, n, users int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	out, stderr, err := sluice(t, "gen", "--count", fmt.Sprint(n), "--users", fmt.Sprint(users), "--seed", "42")
	if err != nil {
		t.Fatalf("gen: %v\n%s", err, stderr)
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// counterSpec is a pipeline that counts every user's events and product
// views, with state, an exchange-free chain and one output per event.
func counterSpec(t *testing.T, dir, events string, partitions int, checkpoint string) string {
	t.Helper()
	spec := fmt.Sprintf(`version: 1
name: counter
source: {type: file, path: %q}
partitions: %d
state: {dir: %q, checkpoint_interval: %s}
dead_letter: {type: file, path: %q}
operators:
  - id: all
    type: key_counter
  - id: views
    type: filter
    with: {match: 'type == "product_viewed"'}
  - id: views_per_user
    type: key_counter
    inputs: [views]
sinks:
  - {id: out, type: file, path: %q, inputs: [all, views_per_user]}
`, events, partitions, filepath.Join(dir, "state"), checkpoint, filepath.Join(dir, "dead.jsonl"), filepath.Join(dir, "out.jsonl"))
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readRecords reads an output file into id -> line, failing on two lines
// with one id and different content.
func readRecords(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: bad output line %q: %v", path, sc.Text(), err)
		}
		line := sc.Text()
		if prev, dup := recs[r.ID]; dup && prev != line {
			t.Fatalf("record %s emitted twice with different content:\n%s\n%s", r.ID, prev, line)
		}
		recs[r.ID] = line
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestValidateReportsEveryError(t *testing.T) {
	spec := `version: 1
name: broken
source: {type: file, path: events.jsonl}
operators:
  - id: a
    type: key_counter
    colour: blue
  - id: b
    type: no_such_operator
  - id: c
    type: filter
    inputs: [nowhere]
    with: {match: 'true'}
  - id: d
    type: key_counter
    inputs: [e]
  - id: e
    type: key_counter
    inputs: [d]
`
	path := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := sluice(t, "validate", path)
	if err == nil {
		t.Fatalf("validate exited 0 on a broken spec; stderr:\n%s", stderr)
	}
	for _, want := range []struct{ line, what string }{
		{":7:", "colour"},
		{":9:", "no_such_operator"},
		{":12:", "nowhere"},
		{"", "cycle"},
	} {
		re := regexp.MustCompile(regexp.QuoteMeta(path+want.line) + `.*` + want.what)
		if want.line == "" {
			re = regexp.MustCompile(regexp.QuoteMeta(path) + `:\d+:\d+: .*` + want.what)
		}
		if !re.MatchString(stderr) {
			t.Errorf("validate output lacks %q with its line:\n%s", want.what, stderr)
		}
	}
}

func TestDeterministicAcrossPartitions(t *testing.T) {
	events := genEvents(t, 30000, 500)
	t.Run("counter", func(t *testing.T) {
		sameRecordsForEveryPartitionCount(t, func(dir string) string { return counterSpec(t, dir, events, 1, "100ms") })
	})
	t.Run("retail", func(t *testing.T) {
		sameRecordsForEveryPartitionCount(t, func(dir string) string { return retailSpec(t, dir, events) })
	})
}

// sameRecordsForEveryPartitionCount runs the spec makeSpec writes with 1, 4
// and 8 partitions and compares the records, ids included.
func sameRecordsForEveryPartitionCount(t *testing.T, makeSpec func(dir string) string) {
	var want map[string]string
	for _, parts := range []int{1, 4, 8} {
		dir := t.TempDir()
		spec := makeSpec(dir)
		if _, stderr, err := sluice(t, "run", "--no-progress", "--partitions", fmt.Sprint(parts), spec); err != nil {
			t.Fatalf("run with %d partitions: %v\n%s", parts, err, stderr)
		}
		got := readRecords(t, filepath.Join(dir, "out.jsonl"))
		if len(got) == 0 {
			t.Fatalf("no records with %d partitions", parts)
		}
		if want == nil {
			want = got
			continue
		}
		if len(got) != len(want) {
			t.Errorf("%d partitions: %d records, 1 partition: %d", parts, len(got), len(want))
		}
		for id, line := range want {
			if got[id] != line {
				t.Fatalf("%d partitions: record %s differs:\n got %s\nwant %s", parts, id, got[id], line)
			}
		}
	}
}

// TestBadInputIsDeadLetteredAndTheRestProcessed runs bad input amid
// enough good events that the file source delivers it in a batch of 1024
// lines, which is decoded on several goroutines.
func TestBadInputIsDeadLetteredAndTheRestProcessed(t *testing.T) {
	dir := t.TempDir()
	good := func(id, user string, ts string) string {
		return fmt.Sprintf(`{"event_id":%q,"type":"page_viewed","user_id":%q,"timestamp":%q}`, id, user, ts)
	}
	padded := 0 // good events around the interesting ones
	padding := func(n int) []string {
		var out []string
		for range n {
			out = append(out, good(fmt.Sprintf("pad-%d", padded), fmt.Sprintf("u%d", padded%50), "2026-11-28T09:00:00Z"))
			padded++
		}
		return out
	}
	lines := []string{
		good("ok-1", "u1", "2026-11-28T10:00:00Z"),
		`this is not json`,
		`{"type":"page_viewed","user_id":"u1","timestamp":"2026-11-28T10:00:01Z"}`,
		`{"event_id":"no-key","type":"page_viewed","timestamp":"2026-11-28T10:00:01Z"}`,
		`{"event_id":"bad-ts","type":"page_viewed","user_id":"u1","timestamp":"yesterday"}`,
		good("ok-2", "u2", "2026-11-28T10:00:03Z"),
		good("old", "u3", "1970-01-01T00:00:15Z"),
		`{"event_id":"wrong-type","type":"product_viewed","user_id":"u1","timestamp":"2026-11-28T10:00:04Z","product":{"id":"p1","price":"cheap"}}`,
		// The counter reads no context field, so the decoder skips them
		// all; it still checks them.
		`{"event_id":"skipped-wrong-type","type":"page_viewed","user_id":"u1","timestamp":"2026-11-28T10:00:04Z","context":{"user_agent":5}}`,
		`{"event_id":"skipped-escaped","type":"page_viewed","user_id":"u1","timestamp":"2026-11-28T10:00:04Z","context":{"page":{"title":"caf\u00e9 \"x\""},"ip":null}}`,
		good("ok-3", "u1", "2026-11-28T10:00:05Z"),
	}
	// The batch of the first 1024 lines holds the bad lines above; the
	// oversized one, longer than the source's read buffer, comes after.
	lines = slices.Concat(padding(300), lines, padding(1500),
		[]string{`{"event_id":"big","type":"page_viewed","user_id":"u1","timestamp":"2026-11-28T10:00:02Z","properties":{"blob":"` + strings.Repeat("x", 2<<20) + `"}}`},
		padding(500))
	events := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := counterSpec(t, dir, events, 4, "1s")
	_, stderr, err := sluice(t, "run", "--no-progress", spec)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	wantDead := map[string]string{
		"this is not json": "not JSON",
		`"type":"page_viewed","user_id":"u1","timestamp":"2026-11-28T10:00:01Z"`: "event_id",
		`"event_id":"no-key"`:             "user_id",
		`"event_id":"bad-ts"`:             "timestamp",
		`"event_id":"big"`:                "too large",
		`"event_id":"wrong-type"`:         "product.price",
		`"event_id":"skipped-wrong-type"`: "context.user_agent",
	}
	data, err := os.ReadFile(filepath.Join(dir, "dead.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	deadLines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(deadLines) != len(wantDead) {
		t.Fatalf("%d dead letters, want %d:\n%.2000s", len(deadLines), len(wantDead), data)
	}
	for frag, reason := range wantDead {
		found := false
		for _, l := range deadLines {
			var dl struct {
				Reason  string `json:"reason"`
				Payload string `json:"payload"`
			}
			if err := json.Unmarshal([]byte(l), &dl); err != nil {
				t.Fatalf("bad dead-letter line: %v", err)
			}
			if strings.Contains(dl.Payload, frag) {
				found = true
				if !strings.Contains(dl.Reason, reason) {
					t.Errorf("dead letter for %s: reason %q does not mention %q", frag, dl.Reason, reason)
				}
			}
		}
		if !found {
			t.Errorf("no dead letter for %s", frag)
		}
	}
	if want := fmt.Sprintf("%d events in", 5+padded); !strings.Contains(stderr, "7 dead-lettered") || !strings.Contains(stderr, want) {
		t.Errorf("summary does not count %d events and 7 dead letters:\n%s", 5+padded, stderr)
	}
	recs := readRecords(t, filepath.Join(dir, "out.jsonl"))
	ids := []string{"ok-1", "ok-2", "old", "ok-3", "skipped-escaped"}
	for i := range padded {
		ids = append(ids, fmt.Sprintf("pad-%d", i))
	}
	for _, id := range ids {
		if _, ok := recs[id+"/all/1"]; !ok {
			t.Errorf("valid event %s was not processed; records: %v", id, slices.Collect(mapsKeys(recs)))
		}
	}
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestCrashRecovery SIGKILLs a real `sluice run` at several points and
// restarts it each time: the final state and the de-duplicated outputs must
// equal those of an uninterrupted run. It runs a keyed-counter pipeline and
// the five-operator retail pipeline (timers, an exchange, erasures).
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs a 200k-event pipeline several times")
	}
	events := genEvents(t, 200000, 5000)
	t.Run("counter", func(t *testing.T) {
		crashAndCompare(t, func(dir string) string { return counterSpec(t, dir, events, 4, "200ms") })
	})
	t.Run("retail", func(t *testing.T) {
		crashAndCompare(t, func(dir string) string { return retailSpec(t, dir, events) })
	})
}

// retailSpec writes examples/retail.yaml with the events file as source
// and everything under dir.
func retailSpec(t *testing.T, dir, events string) string {
	t.Helper()
	spec := examples.Retail
	for _, r := range [][2]string{
		{"source: {type: generator, count: 200000, users: 5000, seed: 7}", fmt.Sprintf("source: {type: file, path: %q}", events)},
		{"dir: .sluice/state/retail, checkpoint_interval: 1s", fmt.Sprintf("dir: %q, checkpoint_interval: 200ms", filepath.Join(dir, "state"))},
		{"path: out/retail/dead.jsonl", fmt.Sprintf("path: %q", filepath.Join(dir, "dead.jsonl"))},
		{"path: out/retail/outputs.jsonl", fmt.Sprintf("path: %q", filepath.Join(dir, "out.jsonl"))},
	} {
		if !strings.Contains(spec, r[0]) {
			t.Fatalf("examples/retail.yaml no longer has %q", r[0])
		}
		spec = strings.Replace(spec, r[0], r[1], 1)
	}
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// crashAndCompare runs the spec that makeSpec writes into a directory once
// uninterrupted and once killed several times and restarted, and compares
// the de-duplicated outputs and the final state stores.
func crashAndCompare(t *testing.T, makeSpec func(dir string) string) {
	refDir := t.TempDir()
	if _, stderr, err := sluice(t, "run", "--no-progress", makeSpec(refDir)); err != nil {
		t.Fatalf("reference run: %v\n%s", err, stderr)
	}
	want := readRecords(t, filepath.Join(refDir, "out.jsonl"))

	dir := t.TempDir()
	spec := makeSpec(dir)
	rng := rand.New(rand.NewPCG(1, 2))
	kills := 0
	for attempt := 0; ; attempt++ {
		if attempt > 50 {
			t.Fatal("the crashed run never finished")
		}
		cmd := exec.Command(sluiceBin, "run", "--no-progress", spec)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if kills < 5 {
			delay := time.Duration(60+rng.IntN(300)) * time.Millisecond
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run failed: %v\n%s", err, stderr.String())
				}
			case <-time.After(delay):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-done
				kills++
				continue
			}
		} else if err := <-done; err != nil {
			t.Fatalf("final run failed: %v\n%s", err, stderr.String())
		}
		break
	}
	if kills == 0 {
		t.Fatal("the run finished before any kill: make the input larger")
	}
	t.Logf("killed %d times", kills)
	got := readRecords(t, filepath.Join(dir, "out.jsonl"))
	if len(got) != len(want) {
		t.Errorf("crashed run: %d distinct records, uninterrupted: %d", len(got), len(want))
	}
	for id, line := range want {
		if got[id] != line {
			t.Fatalf("record %s: crashed run %q, uninterrupted %q", id, got[id], line)
		}
	}
	compareStores(t, filepath.Join(refDir, "state"), filepath.Join(dir, "state"))
}

// compareStores compares every raw key and value of two state stores after
// compaction: the same state, timers, watermarks and offsets.
func compareStores(t *testing.T, refDir, dir string) {
	t.Helper()
	dump := func(dir string) map[string]string {
		db, err := state.Open(dir, state.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Compact(); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		if err := db.ScanRaw(func(k, v []byte) bool {
			out[string(k)] = string(v)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want, got := dump(refDir), dump(dir)
	if len(want) == 0 {
		t.Fatal("the uninterrupted run left no state")
	}
	diff := 0
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			if diff++; diff <= 5 {
				t.Errorf("state key %q: crashed run %q (present %v), uninterrupted %q", k, g, ok, v)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if diff++; diff <= 5 {
				t.Errorf("state key %q only in the crashed run", k)
			}
		}
	}
	if diff > 0 {
		t.Fatalf("%d state entries differ (of %d)", diff, len(want))
	}
	t.Logf("%d state entries equal", len(want))
}

// compareCounters reads the key_counter state of every key seen in the
// records from two stores and compares it.
func compareCounters(t *testing.T, refDir, dir string, recs map[string]string, parts int) {
	t.Helper()
	keys := map[string]bool{}
	for _, line := range recs {
		var r struct {
			Key string `json:"key"`
		}
		_ = json.Unmarshal([]byte(line), &r)
		keys[r.Key] = true
	}
	read := func(dir string) map[string][2]int64 {
		db, err := state.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		out := map[string][2]int64{}
		type tables struct{ all, views *state.Counter }
		byPart := map[int]tables{}
		for k := range keys {
			pi := pipeline.PartitionOf(k, parts)
			tb, ok := byPart[pi]
			if !ok {
				p := db.Partition(pi)
				tb = tables{state.NewCounter(p, "all/count"), state.NewCounter(p, "views_per_user/count")}
				byPart[pi] = tb
			}
			all, err1 := tb.all.Get(k)
			views, err2 := tb.views.Get(k)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			out[k] = [2]int64{all, views}
		}
		return out
	}
	want, got := read(refDir), read(dir)
	nonzero := 0
	for k, w := range want {
		if got[k] != w {
			t.Errorf("key %s: counters %v after crashes, %v uninterrupted", k, got[k], w)
		}
		if w[0] > 0 {
			nonzero++
		}
	}
	if nonzero == 0 {
		t.Fatal("no counter state found")
	}
}
