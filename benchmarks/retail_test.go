package benchmarks

import (
	"context"
	"os"
	"reflect"
	"testing"

	"github.com/sluicehq/sluice/pipeline"
)

// The benchmark runs the operators of examples/retail.yaml, with the same
// ids, inputs and configs.
func TestRetailOperatorsMatchTheExample(t *testing.T) {
	data, err := os.ReadFile("../examples/retail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example, err := pipeline.ParseSpec(data, "retail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bench, err := pipeline.ParseSpec(retailSpec("in.jsonl", "out.jsonl", "dead.jsonl", "state", 8, "1s"), "bench-retail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(bench.Operators) != len(example.Operators) {
		t.Fatalf("%d operators, the example has %d", len(bench.Operators), len(example.Operators))
	}
	for i, want := range example.Operators {
		got := bench.Operators[i]
		if got.ID != want.ID || got.Type != want.Type || !reflect.DeepEqual(got.Inputs, want.Inputs) {
			t.Errorf("operator %d: %s %s %v, the example has %s %s %v", i, got.ID, got.Type, got.Inputs, want.ID, want.Type, want.Inputs)
		}
		if g, w := yamlText(got.With), yamlText(want.With); g != w {
			t.Errorf("operator %s: with\n%s\nthe example has\n%s", want.ID, g, w)
		}
	}
	if bench.Time != example.Time {
		t.Errorf("time %+v, the example has %+v", bench.Time, example.Time)
	}
}

// yamlText is the text of a `with` node, without its layout.
func yamlText(n any) string {
	s, ok := n.(interface{ String() string })
	if !ok {
		return ""
	}
	return compact(s.String())
}

func compact(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != ' ' && c != '\n' && c != '{' && c != '}' && c != ',' && c != '-' {
			out = append(out, c)
		}
	}
	return string(out)
}

func TestRetailRunsEveryEventAndMeasuresState(t *testing.T) {
	e, err := NewEndToEnd(EndToEndConfig{Events: 5000, Users: 200, Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, err := e.RunRetail(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 5000 || res.Records == 0 || res.OutputBytes == 0 {
		t.Errorf("events %d, records %d, output %d bytes; want 5000 events and some output", res.Events, res.Records, res.OutputBytes)
	}
	s := res.State
	if s.Users == 0 || s.Users > 200 || s.Keys < s.Users || s.UserEncodedBytes == 0 || s.EncodedBytes < s.UserEncodedBytes || s.DiskBytes == 0 {
		t.Errorf("state %+v", s)
	}
	if s.ActiveUsers != 0 {
		t.Errorf("%d open sessions after the input ended, want none", s.ActiveUsers)
	}
	// Stopped at the end of the input without ending it, the shoppers of
	// the last half hour of events still have a session, and more state
	// than the average shopper.
	live, err := e.RunRetailLive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if live.ActiveUsers == 0 || live.ActiveUsers > live.Users || live.ActiveUserEncodedBytes <= 0 ||
		live.ActiveUserEncodedBytes/live.ActiveUsers <= live.UserEncodedBytes/live.Users {
		t.Errorf("live state %+v", live)
	}
}

func BenchmarkRetail(b *testing.B) {
	e := input(b)
	res, err := e.RunRetail(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	report(b, res.Result)
	if res.State.Users > 0 {
		b.ReportMetric(float64(res.State.UserEncodedBytes)/float64(res.State.Users), "state-B/user")
	}
}
