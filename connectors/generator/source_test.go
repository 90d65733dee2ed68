package generator

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pipeline"
)

// collector is a Deliverer that keeps copies of what it is given.
type collector struct {
	payloads [][]byte
	offsets  []int64
	batches  int
	maxBatch int
	// stopAfter, when positive, calls cancel after that many batches.
	stopAfter int
	cancel    context.CancelFunc
	err       error
}

func (c *collector) Deliver(split int32, batch []pipeline.Message) error {
	if split != 0 {
		return errors.New("split is not 0")
	}
	c.batches++
	c.maxBatch = max(c.maxBatch, len(batch))
	for _, m := range batch {
		c.payloads = append(c.payloads, bytes.Clone(m.Payload))
		c.offsets = append(c.offsets, m.Offset)
	}
	if c.stopAfter > 0 && c.batches == c.stopAfter {
		c.cancel()
	}
	return c.err
}

func read(t *testing.T, cfg Config, resume int64) *collector {
	t.Helper()
	src, err := NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	if err := src.Read(context.Background(), pipeline.Offsets{0: resume}, c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSourceMatchesWriteJSONL(t *testing.T) {
	cfg := Config{Count: 3000, Seed: 3}
	c := read(t, cfg, 0)
	want := bytes.Split(bytes.TrimSuffix(jsonl(t, cfg), []byte("\n")), []byte("\n"))
	if len(c.payloads) != len(want) {
		t.Fatalf("source delivered %d events, WriteJSONL wrote %d", len(c.payloads), len(want))
	}
	for i := range want {
		if !bytes.Equal(c.payloads[i], want[i]) {
			t.Fatalf("event %d differs:\n%s\n%s", i+1, c.payloads[i], want[i])
		}
		if c.offsets[i] != int64(i+1) {
			t.Fatalf("event %d has offset %d", i+1, c.offsets[i])
		}
	}
	if c.maxBatch != BatchSize || c.batches != 3 {
		t.Fatalf("%d batches of up to %d, want 3 of up to %d", c.batches, c.maxBatch, BatchSize)
	}
}

func TestSourceResume(t *testing.T) {
	cfg := Config{Count: 3000}
	full := read(t, cfg, 0)
	for _, n := range []int64{1, 1023, 1024, 1500, 2999, 3000, 5000} {
		c := read(t, cfg, n)
		want := full.payloads[min(n, int64(len(full.payloads))):]
		if len(c.payloads) != len(want) {
			t.Fatalf("resume %d: %d events, want %d", n, len(c.payloads), len(want))
		}
		for i := range want {
			if !bytes.Equal(c.payloads[i], want[i]) {
				t.Fatalf("resume %d: event %d differs", n, int64(i)+n+1)
			}
			if c.offsets[i] != n+int64(i)+1 {
				t.Fatalf("resume %d: event %d has offset %d", n, i, c.offsets[i])
			}
		}
	}
}

func TestSourcePacedSameEvents(t *testing.T) {
	// A rate far above what the machine can do paces nothing away.
	cfg := Config{Count: 2500}
	want := read(t, cfg, 0)
	cfg.Rate = 1e12
	got := read(t, cfg, 0)
	if !slices.EqualFunc(got.payloads, want.payloads, bytes.Equal) {
		t.Fatal("a paced source delivers other events")
	}
	var a, b bytes.Buffer
	if err := WriteJSONL(&a, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Rate = 0
	if err := WriteJSONL(&b, cfg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("paced WriteJSONL writes other events")
	}
}

func TestSourceUnboundedStopsWithContext(t *testing.T) {
	src, err := NewSource(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &collector{stopAfter: 5, cancel: cancel}
	if err := src.Read(ctx, nil, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read returned %v, want context.Canceled", err)
	}
	if c.batches != 5 || len(c.payloads) != 5*BatchSize {
		t.Fatalf("%d batches, %d events; want 5 full batches", c.batches, len(c.payloads))
	}
}

func TestSourceDeliverError(t *testing.T) {
	src, err := NewSource(Config{Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := src.Read(context.Background(), nil, &collector{err: boom}); !errors.Is(err, boom) {
		t.Fatalf("Read returned %v, want the Deliver error", err)
	}
}

func TestRegistered(t *testing.T) {
	if !slices.Contains(pipeline.SourceTypes(), "generator") {
		t.Fatalf("source types %v lack generator", pipeline.SourceTypes())
	}
	if _, err := NewSource(Config{Products: 1}); err == nil {
		t.Fatal("NewSource accepted fewer products than categories")
	}
}

func TestPlanFromYAML(t *testing.T) {
	spec := func(src string) []byte {
		return []byte("version: 1\nname: gen\nsource: " + src + "\noperators: []\nsinks: []\n")
	}
	p, err := pipeline.ParsePlan(spec("{type: generator, count: 10, max_disorder: 1s, start: 2026-12-01T10:00:00Z}"), "gen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := p.Source()
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	if err := src.Read(context.Background(), nil, c); err != nil {
		t.Fatal(err)
	}
	if len(c.payloads) != 10 || !bytes.Contains(c.payloads[0], []byte(`"timestamp":"2026-12-01T10:00:00.000Z"`)) {
		t.Fatalf("%d events, first %s", len(c.payloads), c.payloads[0])
	}
	for src, want := range map[string]string{
		"{type: generator, count: -3}":          "count -3 is negative",
		"{type: generator, bogus: 1}":           "bogus",
		"{type: generator, max_disorder: soon}": "max_disorder",
	} {
		if _, err := pipeline.ParsePlan(spec(src), "gen.yaml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error about %s", src, err, want)
		}
	}
}
