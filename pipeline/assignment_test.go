package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/state"
)

// groupTestConfig drives groupTestSource: script runs as its Read.
type groupTestConfig struct {
	script func(d Deliverer) error
	cl     *fakeChangelog
}

// groupTestSource is a GroupSource whose assignments a test scripts.
type groupTestSource struct{ cfg groupTestConfig }

func (s *groupTestSource) SplitPartitioned() bool { return true }

func (s *groupTestSource) Bind(b SourceBinding) (Changelog, error) {
	s.cfg.cl.binding = b
	return s.cfg.cl, nil
}

func (s *groupTestSource) Read(_ context.Context, _ Offsets, d Deliverer) error {
	return s.cfg.script(d)
}

// fakeChangelog records what it is asked to replicate and restore.
type fakeChangelog struct {
	mu       sync.Mutex
	binding  SourceBinding
	changed  map[int32]int // changes per partition (offsets: per split)
	restored []int
}

func (c *fakeChangelog) Append(b *state.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return b.Changes(func(key, _ []byte, _ bool) error {
		scope, id := state.RawKeyScope(key)
		if scope == state.ScopePartition || scope == state.ScopeSplit {
			c.changed[id]++
		}
		return nil
	})
}

func (c *fakeChangelog) Restore(_ *state.DB, p int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.restored = append(c.restored, p)
	return nil
}

// countOp counts each key's events in state and emits the count.
type countOp struct{ n *state.Counter }

func (o *countOp) Open(oc *OpenContext) error { o.n = NewCounter(oc, "n"); return nil }

func (o *countOp) OnEvent(c *Context, e *Event) error {
	n, err := o.n.Add(c.Key(), 1)
	if err != nil {
		return err
	}
	c.Emit(fmt.Sprintf("count_%d", n), nil)
	return nil
}

func init() {
	RegisterSource("test_group_source", func(cfg groupTestConfig) (Source, error) { return &groupTestSource{cfg: cfg}, nil })
}

func events(split int32, from, to int64, key string) []Message {
	var out []Message
	for off := from; off <= to; off++ {
		e := &Event{EventID: fmt.Sprintf("%s-%d-%d", key, split, off), Type: "page_viewed", UserID: key,
			Timestamp: time.Date(2026, 11, 28, 10, 0, int(off), 0, time.UTC)}
		out = append(out, Message{Offset: off, Event: e})
	}
	return out
}

// TestGroupSourceAssignment scripts assignments and revocations: a
// partition is processed only while assigned, its state survives being
// given up and taken back, a reassigned split resumes after its committed
// offset, and the changelog sees the owned partitions' changes.
func TestGroupSourceAssignment(t *testing.T) {
	cl := &fakeChangelog{changed: map[int32]int{}}
	var mu sync.Mutex
	var records []string
	fail := func(format string, args ...any) error { return fmt.Errorf(format, args...) }
	script := func(d Deliverer) error {
		reb := d.(Rebalancer)
		if err := d.Deliver(0, events(0, 0, 0, "a")); err == nil {
			return fail("delivered to a split before any assignment")
		}
		offs, err := reb.Assign([]int32{0, 1})
		if err != nil {
			return err
		}
		if offs[0] != -1 || offs[1] != -1 {
			return fail("first assignment: offsets %v, want -1", offs)
		}
		if err := d.Deliver(0, events(0, 0, 2, "a")); err != nil {
			return err
		}
		if err := d.Deliver(1, events(1, 0, 1, "b")); err != nil {
			return err
		}
		if err := reb.Revoke([]int32{0}); err != nil {
			return err
		}
		if err := d.Deliver(0, events(0, 3, 3, "a")); err == nil || !strings.Contains(err.Error(), "not assigned") {
			return fail("delivery to a revoked split: %v", err)
		}
		if err := d.Deliver(1, events(1, 2, 2, "b")); err != nil {
			return err
		}
		if offs, err = reb.Assign([]int32{0}); err != nil {
			return err
		}
		if offs[0] != 2 {
			return fail("reassignment: offset %d, want 2", offs[0])
		}
		// Redelivered offset 2 is skipped; 3 and 4 continue the count.
		return d.Deliver(0, events(0, 2, 4, "a"))
	}
	b := NewBuilder("group-test", WithPartitions(2), WithStateDir(t.TempDir()), WithCheckpointInterval(time.Hour))
	b.Source("test_group_source", groupTestConfig{script: script, cl: cl})
	b.Custom("count", func() Operator { return &countOp{} })
	b.Sink("out", "test_spec_sink", nil, "count")
	plan, err := b.Plan()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(plan, WithRecordHook(func(p int, rec *Record) {
		mu.Lock()
		records = append(records, fmt.Sprintf("%d %s %s", p, rec.Key, rec.Type))
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"0 a count_1", "0 a count_2", "0 a count_3", "0 a count_4", "0 a count_5",
		"1 b count_1", "1 b count_2", "1 b count_3"}
	slices.Sort(records)
	if fmt.Sprint(records) != fmt.Sprint(want) {
		t.Errorf("records:\n%q\nwant\n%q", records, want)
	}
	if st := r.Stats(); st.Skipped != 1 || st.EventsIn != 8 {
		t.Errorf("stats: %d skipped, %d in; want 1 and 8", st.Skipped, st.EventsIn)
	}
	// Partitions are restored in parallel.
	slices.Sort(cl.restored)
	if fmt.Sprint(cl.restored) != "[0 0 1]" {
		t.Errorf("restored partitions %v, want 0 twice and 1 once", cl.restored)
	}
	if cl.changed[0] == 0 || cl.changed[1] == 0 || len(cl.changed) != 2 {
		t.Errorf("changelog changes by partition: %v", cl.changed)
	}
	if cl.binding.Pipeline != "group-test" || cl.binding.Partitions != 2 || cl.binding.Exchanges {
		t.Errorf("binding: %+v", cl.binding)
	}
}

// TestGroupSourceExchangesNeedEveryPartition: a pipeline with an exchange
// fails when a process is assigned only some partitions, since exchanges
// do not cross processes, and runs when it has them all.
func TestGroupSourceExchangesNeedEveryPartition(t *testing.T) {
	for _, tc := range []struct {
		splits []int32
		fails  bool
	}{{[]int32{0, 1}, false}, {[]int32{1}, true}} {
		cl := &fakeChangelog{changed: map[int32]int{}}
		var assignErr error
		script := func(d Deliverer) error {
			_, assignErr = d.(Rebalancer).Assign(tc.splits)
			return nil
		}
		b := NewBuilder("group-exchange", WithPartitions(2), WithStateDir(t.TempDir()))
		b.Source("test_group_source", groupTestConfig{script: script, cl: cl})
		b.Operator("by_product", "test_spec_rekey", &testSpecRekeyConfig{By: "product.id"})
		b.Sink("out", "test_spec_sink", nil, "by_product")
		plan, err := b.Plan()
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewRunner(plan)
		if err != nil {
			t.Fatal(err)
		}
		runErr := r.Run(context.Background())
		if !cl.binding.Exchanges {
			t.Error("the binding does not say the pipeline has exchanges")
		}
		if !tc.fails {
			if assignErr != nil || runErr != nil {
				t.Errorf("assigning %v: %v; run: %v", tc.splits, assignErr, runErr)
			}
			continue
		}
		if assignErr == nil || !strings.Contains(assignErr.Error(), "exchanges") || runErr == nil {
			t.Errorf("assigning %v of 2 partitions: %v; run: %v; want both to fail naming the exchanges", tc.splits, assignErr, runErr)
		}
	}
}

// wmProbeOp is behind an exchange (every event goes to the partition of
// key) and counts the events that reach it behind its watermark.
type wmProbeOp struct {
	key    string
	behind *atomic.Int64
}

func (o *wmProbeOp) Open(*OpenContext) error { return nil }

func (o *wmProbeOp) GroupKey(*Event) (string, bool) { return o.key, true }

func (o *wmProbeOp) OnEvent(c *Context, _ *Event) error {
	if c.TimeNanos() <= c.WatermarkNanos() {
		o.behind.Add(1)
	}
	return nil
}

// TestGroupSourceReassignedExchangeWatermark: when partitions are taken
// back, an operator behind an exchange does not start from its own
// partition's committed watermark, which may be ahead of another
// partition's: the events the other partition has yet to send it are not
// behind its watermark.
func TestGroupSourceReassignedExchangeWatermark(t *testing.T) {
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("k", i); PartitionOf(k, 2) == 0 {
			key = k
		}
	}
	at := func(split int32, off int64, ts time.Time) []Message {
		e := &Event{EventID: fmt.Sprintf("e-%d-%d", split, off), Type: "page_viewed", UserID: "u", Timestamp: ts}
		return []Message{{Offset: off, Event: e}}
	}
	base := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	script := func(d Deliverer) error {
		reb := d.(Rebalancer)
		if _, err := reb.Assign([]int32{0, 1}); err != nil {
			return err
		}
		// Partition 0's watermark runs half an hour ahead of partition 1's.
		if err := d.Deliver(0, at(0, 0, base.Add(30*time.Minute))); err != nil {
			return err
		}
		if err := d.Deliver(1, at(1, 0, base)); err != nil {
			return err
		}
		if err := reb.Revoke([]int32{0, 1}); err != nil {
			return err
		}
		if _, err := reb.Assign([]int32{0, 1}); err != nil {
			return err
		}
		// Ahead of partition 1's watermark, behind partition 0's.
		return d.Deliver(1, at(1, 1, base.Add(5*time.Minute)))
	}
	var behind atomic.Int64
	cl := &fakeChangelog{changed: map[int32]int{}}
	b := NewBuilder("group-exchange-wm", WithPartitions(2), WithStateDir(t.TempDir()),
		WithCheckpointInterval(time.Hour), WithMaxOutOfOrderness(time.Second))
	b.Source("test_group_source", groupTestConfig{script: script, cl: cl})
	b.Custom("probe", func() Operator { return &wmProbeOp{key: key, behind: &behind} })
	b.Sink("out", "test_spec_sink", nil, "probe")
	plan, err := b.Plan()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.EventsIn != 3 {
		t.Fatalf("%d events in, want 3", st.EventsIn)
	}
	if n := behind.Load(); n != 0 {
		t.Errorf("%d events reached the operator behind the exchange at or behind its watermark, want 0", n)
	}
}
