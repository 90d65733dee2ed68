package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/pipeline"
)

// recorder is the test's consumer: a Deliverer that copies what it is
// given, optionally failing once it has taken a number of messages.
type recorder struct {
	mu      sync.Mutex
	msgs    []pipeline.Message
	batches int
	// stopAfter, when positive, makes Deliver fail with errStop once at
	// least this many messages have been taken.
	stopAfter int
	// onDeliver, when set, runs after each batch is recorded.
	onDeliver func()
}

var errStop = errors.New("stop")

func (r *recorder) Deliver(split int32, batch []pipeline.Message) error {
	if split != 0 {
		return fmt.Errorf("unexpected split %d", split)
	}
	r.mu.Lock()
	r.batches++
	for _, m := range batch {
		r.msgs = append(r.msgs, pipeline.Message{Payload: bytes.Clone(m.Payload), Offset: m.Offset})
	}
	n := len(r.msgs)
	r.mu.Unlock()
	if r.onDeliver != nil {
		r.onDeliver()
	}
	if r.stopAfter > 0 && n >= r.stopAfter {
		return errStop
	}
	return nil
}

func (r *recorder) payloads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = string(m.Payload)
	}
	return out
}

func writeFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFileSource(t *testing.T, cfg FileSourceConfig, resume pipeline.Offsets, r *recorder) error {
	t.Helper()
	src, err := openFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src.Read(context.Background(), resume, r)
}

func checkOffsetsIncrease(t *testing.T, msgs []pipeline.Message) {
	t.Helper()
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Offset <= msgs[i-1].Offset {
			t.Fatalf("offset %d of message %d does not follow %d", msgs[i].Offset, i, msgs[i-1].Offset)
		}
	}
}

func TestFileSourceOffsets(t *testing.T) {
	content := "{\"a\":1}\n{\"b\":22}\r\n\n  \n{\"c\":333}\n"
	path := writeFile(t, content)
	var r recorder
	if err := readFileSource(t, FileSourceConfig{Path: path}, nil, &r); err != nil {
		t.Fatal(err)
	}
	want := []pipeline.Message{
		{Payload: []byte(`{"a":1}`), Offset: 8},
		{Payload: []byte(`{"b":22}`), Offset: 18},
		{Payload: []byte(`{"c":333}`), Offset: int64(len(content))},
	}
	if len(r.msgs) != len(want) {
		t.Fatalf("got %q, want 3 messages", r.payloads())
	}
	for i, w := range want {
		if g := r.msgs[i]; string(g.Payload) != string(w.Payload) || g.Offset != w.Offset {
			t.Errorf("message %d = %q@%d, want %q@%d", i, g.Payload, g.Offset, w.Payload, w.Offset)
		}
	}
}

// A run stopped after some lines, resumed from the offset of any delivered
// line, continues exactly after that line.
func TestFileSourceResume(t *testing.T) {
	var sb strings.Builder
	const lines = 5000
	for i := range lines {
		if i%7 == 3 {
			sb.WriteString("\n") // empty lines advance the offset only
		}
		fmt.Fprintf(&sb, `{"event_id":"e-%d","pad":"%s"}`+"\n", i, strings.Repeat("x", i%50))
	}
	path := writeFile(t, sb.String())

	var all recorder
	if err := readFileSource(t, FileSourceConfig{Path: path}, nil, &all); err != nil {
		t.Fatal(err)
	}
	if len(all.msgs) != lines {
		t.Fatalf("read %d lines, want %d", len(all.msgs), lines)
	}
	checkOffsetsIncrease(t, all.msgs)

	// Stop a run early: it delivered at least 1500 lines.
	stopped := recorder{stopAfter: 1500}
	if err := readFileSource(t, FileSourceConfig{Path: path}, nil, &stopped); !errors.Is(err, errStop) {
		t.Fatalf("Read = %v, want errStop", err)
	}
	for _, k := range []int{0, 1, 1234, len(stopped.msgs) - 1, lines - 2, lines - 1} {
		var rest recorder
		resume := pipeline.Offsets{0: all.msgs[k].Offset}
		if err := readFileSource(t, FileSourceConfig{Path: path}, resume, &rest); err != nil {
			t.Fatalf("resume after line %d: %v", k, err)
		}
		if len(rest.msgs) != lines-1-k {
			t.Fatalf("resume after line %d: got %d lines, want %d", k, len(rest.msgs), lines-1-k)
		}
		for i, m := range rest.msgs {
			w := all.msgs[k+1+i]
			if string(m.Payload) != string(w.Payload) || m.Offset != w.Offset {
				t.Fatalf("resume after line %d: message %d = %q@%d, want %q@%d", k, i, m.Payload, m.Offset, w.Payload, w.Offset)
			}
		}
	}
}

func TestFileSourceResumeMismatch(t *testing.T) {
	path := writeFile(t, "{\"a\":1}\n{\"b\":2}\n")
	for _, off := range []int64{3, 100} {
		var r recorder
		err := readFileSource(t, FileSourceConfig{Path: path}, pipeline.Offsets{0: off}, &r)
		if err == nil || len(r.msgs) != 0 {
			t.Errorf("resume at %d: err %v, %d messages; want an error and none", off, err, len(r.msgs))
		}
	}
	// Resuming at the very end delivers nothing.
	var r recorder
	if err := readFileSource(t, FileSourceConfig{Path: path}, pipeline.Offsets{0: 16}, &r); err != nil || len(r.msgs) != 0 {
		t.Errorf("resume at end: err %v, %d messages", err, len(r.msgs))
	}
}

// A last line without newline is delivered; once the file grows with its
// newline and more lines, a resume from its offset continues after it.
func TestFileSourceLastLineWithoutNewline(t *testing.T) {
	path := writeFile(t, "{\"a\":1}\n{\"b\":2}")
	var r recorder
	if err := readFileSource(t, FileSourceConfig{Path: path}, nil, &r); err != nil {
		t.Fatal(err)
	}
	if got := r.payloads(); len(got) != 2 || got[1] != `{"b":2}` || r.msgs[1].Offset != 15 {
		t.Fatalf("got %q (last offset %d)", got, r.msgs[len(r.msgs)-1].Offset)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\n{\"c\":3}\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var rest recorder
	if err := readFileSource(t, FileSourceConfig{Path: path}, pipeline.Offsets{0: 15}, &rest); err != nil {
		t.Fatal(err)
	}
	if got := rest.payloads(); len(got) != 1 || got[0] != `{"c":3}` {
		t.Fatalf("after resume got %q", got)
	}
}

func TestFileSourceLongLines(t *testing.T) {
	long := `{"pad":"` + strings.Repeat("y", 2<<20) + `"}`
	content := "{\"a\":1}\n" + long + "\n{\"b\":2}\n" + long
	path := writeFile(t, content)
	var r recorder
	if err := readFileSource(t, FileSourceConfig{Path: path}, nil, &r); err != nil {
		t.Fatal(err)
	}
	got := r.payloads()
	if len(got) != 4 || got[0] != `{"a":1}` || got[1] != long || got[2] != `{"b":2}` || got[3] != long {
		t.Fatalf("got %d lines of lengths %v", len(got), lens(got))
	}
	if off := r.msgs[1].Offset; off != int64(8+len(long)+1) {
		t.Errorf("offset of the long line = %d, want %d", off, 8+len(long)+1)
	}

	// Past max_line_bytes a line is cut, and the next line is whole.
	var cut recorder
	if err := readFileSource(t, FileSourceConfig{Path: path, MaxLineBytes: 1000}, nil, &cut); err != nil {
		t.Fatal(err)
	}
	got = cut.payloads()
	if len(got) != 4 || got[1] != long[:1000] || got[2] != `{"b":2}` || got[3] != long[:1000] {
		t.Fatalf("with max_line_bytes 1000 got lengths %v", lens(got))
	}
	if cut.msgs[3].Offset != int64(len(content)) {
		t.Errorf("last offset %d, want %d", cut.msgs[3].Offset, len(content))
	}
}

func lens(s []string) []int {
	out := make([]int, len(s))
	for i, x := range s {
		out[i] = len(x)
	}
	return out
}

func TestFileSourceBatches(t *testing.T) {
	var sb strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&sb, "{\"i\":%d}\n", i)
	}
	path := writeFile(t, sb.String())
	var r recorder
	if err := readFileSource(t, FileSourceConfig{Path: path}, nil, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.msgs) != 3000 {
		t.Fatalf("got %d messages", len(r.msgs))
	}
	// 3000 lines need at least 3 batches of at most 1024.
	if r.batches < 3 || r.batches > 3000 {
		t.Errorf("%d batches", r.batches)
	}
	for i, p := range r.payloads() {
		if want := fmt.Sprintf("{\"i\":%d}", i); p != want {
			t.Fatalf("message %d = %q, want %q", i, p, want)
		}
	}
}

func TestFileSourceContextDone(t *testing.T) {
	path := writeFile(t, strings.Repeat("{\"a\":1}\n", 5000))
	src, err := openFileSource(FileSourceConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := recorder{onDeliver: cancel}
	if err := src.Read(ctx, nil, &r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", err)
	}
	if r.batches != 1 {
		t.Errorf("%d batches after cancel, want 1", r.batches)
	}
}

func TestFileSourceConfig(t *testing.T) {
	if _, err := openFileSource(FileSourceConfig{}); err == nil {
		t.Error("no path: want an error")
	}
	if _, err := openFileSource(FileSourceConfig{Path: filepath.Join(t.TempDir(), "missing.jsonl")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v", err)
	}
	if err := (FileSourceConfig{Path: "x", MaxLineBytes: -1}).Validate(); err == nil {
		t.Error("negative max_line_bytes: want an error")
	}
}

// chunks is a reader that returns one chunk per Read call, then io.EOF.
type chunks []string

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*c)[0])
	if n < len((*c)[0]) {
		(*c)[0] = (*c)[0][n:]
	} else {
		*c = (*c)[1:]
	}
	return n, nil
}

// A stream source whose input comes in pieces delivers the whole lines it
// has without reading more (more input could be a long time coming); its
// offsets continue after the committed one, so a new run's input is never
// skipped as already processed.
func TestStreamSourcePieces(t *testing.T) {
	in := chunks{"{\"a\":1}\n{\"b\"", ":2}\n\n{\"c\":3}\n{\"d\"", ":4}"}
	src := &streamSource{r: &in, name: "test", maxLine: DefaultMaxLineBytes}
	var sizes []int
	var r recorder
	if err := src.Read(context.Background(), pipeline.Offsets{0: 999}, batchSizes{&r, &sizes}); err != nil {
		t.Fatal(err)
	}
	want := []pipeline.Message{
		{Payload: []byte(`{"a":1}`), Offset: 999 + 8},
		{Payload: []byte(`{"b":2}`), Offset: 999 + 16},
		{Payload: []byte(`{"c":3}`), Offset: 999 + 25},
		{Payload: []byte(`{"d":4}`), Offset: 999 + 32},
	}
	if len(r.msgs) != len(want) {
		t.Fatalf("got %q", r.payloads())
	}
	for i, w := range want {
		if g := r.msgs[i]; string(g.Payload) != string(w.Payload) || g.Offset != w.Offset {
			t.Errorf("message %d = %q@%d, want %q@%d", i, g.Payload, g.Offset, w.Payload, w.Offset)
		}
	}
	// Batches end where the buffered input ends inside a line.
	if fmt.Sprint(sizes) != "[1 2 1]" {
		t.Errorf("batch sizes %v, want [1 2 1]", sizes)
	}
}

// Read returns when ctx is done, even while the read is blocked.
func TestStreamSourceContextDone(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	defer pr.Close()
	src := &streamSource{r: pr, name: "test", maxLine: DefaultMaxLineBytes}
	ctx, cancel := context.WithCancel(context.Background())
	r := recorder{onDeliver: cancel}
	if _, err := pw.WriteString("{\"a\":1}\n"); err != nil {
		t.Fatal(err)
	}
	if err := src.Read(ctx, nil, &r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", err)
	}
	if got := r.payloads(); len(got) != 1 {
		t.Fatalf("got %q", got)
	}
}

func TestFileSinkConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "out.jsonl")
	sink, err := openFileSink(FileSinkConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	const workers, batches, per = 8, 50, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var buf []byte
			recs := make([]pipeline.SinkRecord, per)
			for b := range batches {
				buf = buf[:0]
				for i := range recs {
					start := len(buf)
					buf = fmt.Appendf(buf, `{"id":"w%d-%d-%d","data":"%s"}`, w, b, i, strings.Repeat("z", i))
					recs[i] = pipeline.SinkRecord{ID: "x", JSON: buf[start:]}
				}
				if err := sink.Write(recs); err != nil {
					t.Error(err)
					return
				}
				// The worker reuses buf: the sink must have copied.
				for i := range buf {
					buf[i] = '#'
				}
				if b%10 == 0 && w == 0 {
					if err := sink.Flush(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	checkSinkFile(t, path, workers*batches*per)
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Write([]pipeline.SinkRecord{{JSON: []byte("{}")}}); err == nil {
		t.Error("Write after Close: want an error")
	}

	// Reopening appends; a torn last line (a crash mid-write) is cut first:
	// the replay after the crash writes it again.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"id":"torn`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sink, err = openFileSink(FileSinkConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Write([]pipeline.SinkRecord{{JSON: []byte(`{"id":"after"}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("torn")) || !bytes.HasSuffix(data, []byte("}\n{\"id\":\"after\"}\n")) {
		t.Fatalf("file ends %q", data[max(0, len(data)-60):])
	}
}

// checkSinkFile checks that path holds n distinct, whole JSON lines.
func checkSinkFile(t *testing.T, path string, n int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	seen := make(map[string]bool, n)
	for _, l := range lines {
		var rec struct {
			ID   string `json:"id"`
			Data string `json:"data"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if seen[rec.ID] || strings.Trim(rec.Data, "z") != "" {
			t.Fatalf("bad or repeated line %q", l)
		}
		seen[rec.ID] = true
	}
}

// The stdout sink writes each batch out at once, and leaves its stream
// open.
func TestStreamSinkWritesThrough(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stream")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sink := recordSink{newStreamWriter(f, "test")}
	if err := sink.Write([]pipeline.SinkRecord{{JSON: []byte(`{"a":1}`)}, {JSON: []byte(`{"b":2}`)}}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "{\"a\":1}\n{\"b\":2}\n" {
		t.Fatalf("stream holds %q (%v) before any Flush", got, err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("x"); err != nil {
		t.Fatalf("stream closed by the sink: %v", err)
	}
}

// discard is a Deliverer that counts messages and bytes.
type discard struct{ msgs, bytes int }

func (d *discard) Deliver(_ int32, batch []pipeline.Message) error {
	d.msgs += len(batch)
	for i := range batch {
		d.bytes += len(batch[i].Payload)
	}
	return nil
}

// BenchmarkFileSource reads a 10 MB file of 25,000 lines of 400 bytes; one
// op is one whole read of the file.
func BenchmarkFileSource(b *testing.B) {
	line := `{"event_id":"e-0000000","type":"product_viewed","user_id":"u-123",`
	line += `"timestamp":"2026-11-28T10:00:00.123Z","product":{"id":"p-1","category":"apparel.outerwear","price":49.9},"pad":"`
	line += strings.Repeat("x", 400-len(line)-3) + `"}` + "\n"
	if len(line) != 400 {
		b.Fatalf("line of %d bytes", len(line))
	}
	const lines = 25_000
	path := writeFile(b, strings.Repeat(line, lines))
	src, err := openFileSource(FileSourceConfig{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(lines * 400)
	b.ReportAllocs()
	var d discard
	for b.Loop() {
		if err := src.Read(context.Background(), nil, &d); err != nil {
			b.Fatal(err)
		}
	}
	if d.msgs != b.N*lines {
		b.Fatalf("read %d lines, want %d", d.msgs, b.N*lines)
	}
	b.ReportMetric(float64(d.msgs)/b.Elapsed().Seconds(), "lines/s")
}
