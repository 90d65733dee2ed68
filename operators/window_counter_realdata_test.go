package operators

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/connectors/importer"
	"github.com/sluicehq/sluice/pipeline"

	// The file source, sink and dead-letter output of the Runner test.
	_ "github.com/sluicehq/sluice/connectors"
)

// taobaoSample is the project's copy of the Taobao sample
// (../shared/data/taobao-userbehavior-96k.csv, gzipped): 96,169 rows, time
// ordered but for one dirty row with timestamp 15 (1970).
const taobaoSample = "../connectors/importer/testdata/taobao-userbehavior-96k.csv.gz"

// realDataBound is the max_out_of_orderness of the real-data runs.
// TestWindowCounterTaobao measures the sample's disorder and checks that
// every row but the dirty one is within it.
const realDataBound = 5 * time.Minute

// realDataWith counts product views per category in 1h tumbling windows.
const realDataWith = `{match: 'type == "product_viewed"', group_by: product.category, size: 1h}`

func readTaobaoSample(t *testing.T) []byte {
	t.Helper()
	f, err := os.Open(taobaoSample)
	if err != nil {
		t.Skipf("Taobao sample not available: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// taobaoWindow is a (category, window start in Unix seconds) pair.
type taobaoWindow struct {
	category string
	start    int64
}

// taobaoOracle is what the test computes from the CSV by itself.
type taobaoOracle struct {
	counts map[taobaoWindow]int
	// late lists the 1-based rows of product views too late for their
	// window.
	late []int
	// maxDisorder is the largest lag of a row behind the latest earlier
	// row, among the rows within the bound; outliers are the rows beyond
	// it.
	maxDisorder time.Duration
	outliers    []int
	views       int
}

// countTaobao parses the CSV itself (user_id, item_id, category_id,
// behavior, unix seconds) and counts the pv rows per category and hour.
//
// A row is late when the watermark has passed its window's end by the time
// it is processed. The watermark never exceeds the latest earlier event
// time minus the bound, so a row within the bound (lag <= bound) is never
// late: its window ends after it, and it is at or after that watermark.
// The engine only moves the watermark between batches, so a row beyond the
// bound is late for the engine when its window end is at or before the
// latest event time of the earlier batches minus the bound; the dirty row
// (1970) is the last of the file and 47 years behind, so any batch before it
// makes it late, and the model's per-row rule (latest earlier row) agrees.
func countTaobao(t *testing.T, raw []byte, bound time.Duration) taobaoOracle {
	t.Helper()
	o := taobaoOracle{counts: map[taobaoWindow]int{}}
	r := csv.NewReader(bytes.NewReader(raw))
	r.FieldsPerRecord = 5
	maxBefore := int64(-1 << 63)
	for row := 1; ; row++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		secs, err := strconv.ParseInt(rec[4], 10, 64)
		if err != nil {
			t.Fatalf("row %d: %v", row, err)
		}
		if maxBefore != -1<<63 {
			if lag := time.Duration(maxBefore-secs) * time.Second; lag > bound {
				o.outliers = append(o.outliers, row)
			} else if lag > o.maxDisorder {
				o.maxDisorder = lag
			}
		}
		if rec[3] == "pv" {
			o.views++
			start := secs - ((secs%3600)+3600)%3600
			if maxBefore != -1<<63 && start+3600 <= maxBefore-int64(bound/time.Second) {
				o.late = append(o.late, row)
			} else {
				o.counts[taobaoWindow{rec[2], start}]++
			}
		}
		maxBefore = max(maxBefore, secs)
	}
	return o
}

// TestWindowCounterTaobao counts product views per category and hour over
// the Taobao sample through the engine, with 4 partitions so that the
// events cross the exchange, and compares the results with the counts
// computed from the CSV by the test itself. Events come from
// importer.ReadTaobao; the watermark follows the events in batches of 1,000
// as a source's would (max event time - bound). The sample is time-ordered,
// so a second run shuffles it in blocks of 500 rows (about 36 s of data) to
// put real data out of order, within the bound.
func TestWindowCounterTaobao(t *testing.T) {
	raw := readTaobaoSample(t)
	want := countTaobao(t, raw, realDataBound)
	t.Logf("sample: %d product views in %d (category, hour) windows; disorder within the bound at most %s; rows beyond %s: %v",
		want.views, len(want.counts), want.maxDisorder, realDataBound, want.outliers)
	// The bound must cover the data's disorder: only the dirty row is
	// beyond it.
	if len(want.outliers) != 1 || len(want.late) != 1 || want.outliers[0] != want.late[0] {
		t.Fatalf("rows beyond the bound %v, late views %v: want only the dirty row", want.outliers, want.late)
	}
	dirtyID := "taobao-" + strconv.Itoa(want.late[0])

	var events []pipeline.Event
	if err := importer.ReadTaobao(bytes.NewReader(raw), func(e *pipeline.Event) error {
		events = append(events, *e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	shuffled := slices.Clone(events)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(shuffled); i += 500 {
		block := shuffled[i:min(i+500, len(shuffled))]
		rng.Shuffle(len(block), func(a, b int) { block[a], block[b] = block[b], block[a] })
	}
	for _, tc := range []struct {
		name   string
		events []pipeline.Event
	}{{"file_order", events}, {"shuffled", shuffled}} {
		t.Run(tc.name, func(t *testing.T) {
			// Measure the disorder of what is fed: the dirty row must be the
			// only event beyond the bound.
			var maxT time.Time
			var lag time.Duration
			var beyond []string
			for i, e := range tc.events {
				if i > 0 && maxT.Sub(e.Timestamp) > realDataBound {
					beyond = append(beyond, e.EventID)
				} else if i > 0 {
					lag = max(lag, maxT.Sub(e.Timestamp))
				}
				if e.Timestamp.After(maxT) {
					maxT = e.Timestamp
				}
			}
			t.Logf("disorder within the bound at most %s; beyond it: %v", lag, beyond)
			if !slices.Equal(beyond, []string{dirtyID}) {
				t.Fatalf("events beyond the bound %v, want only %s", beyond, dirtyID)
			}
			got, results, dead := runTaobaoHarness(t, tc.events)
			if !maps.Equal(got, want.counts) {
				diff := 0
				for w, n := range want.counts {
					if got[w] != n && diff < 10 {
						t.Errorf("category %s hour %s: count %d, want %d", w.category, time.Unix(w.start, 0).UTC().Format(time.DateTime), got[w], n)
						diff++
					}
				}
				t.Fatalf("%d windows with results, want %d", len(got), len(want.counts))
			}
			wantDead := []string{dirtyID + `: late for operator "wc": ` + wcLateReason}
			if !slices.Equal(dead, wantDead) {
				t.Errorf("dead letters %q, want %q", dead, wantDead)
			}
			t.Logf("engine: %d window results, equal to the model; dead letters: %q", results, dead)
		})
	}
}

// runTaobaoHarness runs events through a window counter by category and
// hour with 4 partitions, in batches of 1,000 each followed by the
// watermark max event time - bound, and returns the counts, the number of
// results and the dead letters.
func runTaobaoHarness(t *testing.T, events []pipeline.Event) (map[taobaoWindow]int, int, []string) {
	h := newWindowCounterHarness(t, 4, realDataWith)
	var run wcRun
	got := map[taobaoWindow]int{}
	results := 0
	collect := func() {
		for _, r := range h.Records() {
			if r.Type != "window_result" {
				t.Fatalf("unexpected record %s", r.Type)
			}
			d := r.Data.(*windowResult)
			w := taobaoWindow{d.group, d.start / int64(time.Second)}
			if _, dup := got[w]; dup {
				t.Errorf("two results for %v", w)
			}
			if d.end-d.start != int64(time.Hour) || !r.Time.Equal(pipeline.TimeFromNanos(d.end)) {
				t.Errorf("window %v: end %v, record time %v", w, d.end, r.Time)
			}
			got[w] = int(d.count)
			results++
		}
		run.collect(h)
	}
	var maxT time.Time
	for start := 0; start < len(events); start += 1000 {
		chunk := events[start:min(start+1000, len(events))]
		for i := range chunk {
			if chunk[i].Timestamp.After(maxT) {
				maxT = chunk[i].Timestamp
			}
		}
		h.Process(chunk...)
		collect()
		h.AdvanceWatermark(maxT.Add(-realDataBound))
		collect()
	}
	h.EndOfInput()
	collect()
	return got, results, run.dead
}

// TestWindowCounterTaobaoRunner runs the same count through the Runner: the
// sample as a JSONL file source, 4 partitions, the watermark made by the
// runtime, results in a file sink and the dirty row in the dead-letter file.
func TestWindowCounterTaobaoRunner(t *testing.T) {
	raw := readTaobaoSample(t)
	want := countTaobao(t, raw, realDataBound)
	dir := t.TempDir()
	var jsonl []byte
	if err := importer.ReadTaobao(bytes.NewReader(raw), func(e *pipeline.Event) error {
		jsonl = append(pipeline.AppendEventJSON(jsonl, e), '\n')
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(in, jsonl, 0o644); err != nil {
		t.Fatal(err)
	}
	out, dead := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "dead.jsonl")
	// idle_timeout is long: the sample is from 2017, and an idle split's
	// watermark would jump to the wall clock, making everything late.
	spec := fmt.Sprintf(`version: 1
name: taobao
source: {type: file, path: %q}
time: {max_out_of_orderness: %s, idle_timeout: 1h}
state: {dir: %q, checkpoint_interval: 100ms}
partitions: 4
dead_letter: {type: file, path: %q}
operators:
  - id: wc
    type: window_counter
    with: %s
sinks:
  - {id: out, type: file, path: %q, inputs: [wc]}
`, in, realDataBound, filepath.Join(dir, "state"), dead, realDataWith, out)
	plan, err := pipeline.ParsePlan([]byte(spec), "taobao.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := pipeline.NewRunner(plan, pipeline.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	stats := r.Stats()

	got := map[taobaoWindow]int{}
	forEachLine(t, out, func(line []byte) {
		var rec struct {
			ID   string `json:"id"`
			Type string `json:"type"`
			Data struct {
				Start time.Time `json:"window_start"`
				Group string    `json:"group"`
				Count int       `json:"count"`
			} `json:"data"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		w := taobaoWindow{rec.Data.Group, rec.Data.Start.Unix()}
		if _, dup := got[w]; dup {
			t.Errorf("two results for %v (%s)", w, rec.ID)
		}
		got[w] = rec.Data.Count
	})
	if !maps.Equal(got, want.counts) {
		t.Errorf("%d windows with results, want %d; the counts differ", len(got), len(want.counts))
	}
	var deadIDs []string
	forEachLine(t, dead, func(line []byte) {
		var l struct {
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var e pipeline.Event
		var dec pipeline.EventDecoder
		if err := dec.Decode([]byte(l.Payload), &e); err != nil {
			t.Fatalf("dead letter payload: %v", err)
		}
		deadIDs = append(deadIDs, e.EventID)
	})
	if wantDead := []string{"taobao-" + strconv.Itoa(want.late[0])}; !slices.Equal(deadIDs, wantDead) {
		t.Errorf("dead letters %v, want %v", deadIDs, wantDead)
	}
	if stats.Late != 1 {
		t.Errorf("stats: %d late, want 1", stats.Late)
	}
	t.Logf("runner: %d events in, %d results equal to the model, late %d, %d checkpoints", stats.EventsIn, len(got), stats.Late, stats.Checkpoints)
}

// forEachLine calls fn with each line of a file.
func forEachLine(t *testing.T, path string, fn func([]byte)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}
