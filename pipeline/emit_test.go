package pipeline

import (
	"fmt"
	"testing"
	"time"
)

// emitTwice emits two records for each event.
type emitTwice struct{}

func (emitTwice) Open(*OpenContext) error { return nil }

func (emitTwice) OnEvent(c *Context, e *Event) error {
	c.Emit("first", nil)
	c.Emit("second", nil)
	return nil
}

// keepRecords keeps the records it is given, re-emitting each: what it
// keeps must stay as it was given, whatever is emitted after.
type keepRecords struct{ kept *[]*Record }

func (keepRecords) Open(*OpenContext) error        { return nil }
func (keepRecords) OnEvent(*Context, *Event) error { return nil }

func (k keepRecords) OnRecord(c *Context, r *Record) error {
	*k.kept = append(*k.kept, r)
	c.Emit("again", nil)
	return nil
}

// TestEmittedRecordsKeptByOperators checks that a record handed to an
// operator's OnRecord stays intact after the emit returns, while the
// runtime reuses its own copy of emitted records.
func TestEmittedRecordsKeptByOperators(t *testing.T) {
	var kept []*Record
	b := NewBuilder("emit-test", WithPartitions(1), WithStateDir(t.TempDir()))
	b.Source("test_spec_source", testSpecConnConfig{Path: "unused"})
	b.Custom("twice", func() Operator { return emitTwice{} })
	b.Custom("keep", func() Operator { return keepRecords{kept: &kept} }, "twice")
	b.Sink("out", "test_spec_sink", nil, "twice", "keep")
	plan, err := b.Plan()
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHarness(plan)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.Process(
		Event{EventID: "e1", Type: "page_viewed", UserID: "u1", Timestamp: at},
		Event{EventID: "e2", Type: "page_viewed", UserID: "u2", Timestamp: at.Add(time.Second)},
	)
	var got []string
	for _, r := range kept {
		got = append(got, fmt.Sprintf("%s %s %s %s", r.ID, r.Type, r.Key, r.Operator))
	}
	want := []string{
		"e1/twice/1 first u1 twice",
		"e1/twice/2 second u1 twice",
		"e2/twice/1 first u2 twice",
		"e2/twice/2 second u2 twice",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kept records:\n%q\nwant\n%q", got, want)
	}
	// Every record, the re-emitted ones included, reached the record hook.
	var ids []string
	for _, r := range h.Records() {
		ids = append(ids, r.ID+" "+r.Type)
	}
	wantIDs := "[e1/twice/1 first e1/twice/1/keep/1 again e1/twice/2 second e1/twice/2/keep/1 again " +
		"e2/twice/1 first e2/twice/1/keep/1 again e2/twice/2 second e2/twice/2/keep/1 again]"
	if fmt.Sprint(ids) != wantIDs {
		t.Errorf("records:\n%v\nwant\n%s", ids, wantIDs)
	}
}
