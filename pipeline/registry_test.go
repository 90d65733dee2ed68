package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test_spec_* types below are registered for the spec, planner, builder
// and graph tests.

// testSpecOpConfig is the config of test_spec_op. Its Validate has a value
// receiver.
type testSpecOpConfig struct {
	Gap   Duration `yaml:"gap"`
	Limit int      `yaml:"limit"`
	Tags  []string `yaml:"tags"`
}

func (c testSpecOpConfig) Validate() error {
	if c.Limit < 0 {
		return fmt.Errorf("limit must be >= 0, got %d", c.Limit)
	}
	return nil
}

type testSpecOp struct {
	id  string
	cfg testSpecOpConfig
}

func (o *testSpecOp) Open(*OpenContext) error        { return nil }
func (o *testSpecOp) OnEvent(*Context, *Event) error { return nil }

// testSpecRekeyConfig is the config of test_spec_rekey, registered as a
// pointer type. Its Validate has a pointer receiver.
type testSpecRekeyConfig struct {
	By string `yaml:"by"`
}

func (c *testSpecRekeyConfig) Validate() error {
	if c.By == "" {
		return errors.New("by is required")
	}
	return nil
}

// testSpecRekeyOp groups by product id: the planner must mark it Rekeyed.
type testSpecRekeyOp struct {
	testSpecOp
	by string
}

func (o *testSpecRekeyOp) GroupKey(e *Event) (string, bool) { return e.Product.ID, e.Product.ID != "" }

// testSpecConnConfig is the config of the test connectors.
type testSpecConnConfig struct {
	Path  string `yaml:"path"`
	Batch int    `yaml:"batch"`
}

type testSpecSource struct{ cfg testSpecConnConfig }

func (s *testSpecSource) Read(context.Context, Offsets, Deliverer) error { return nil }

type testSpecSink struct{ cfg testSpecConnConfig }

func (s *testSpecSink) Write([]SinkRecord) error { return nil }
func (s *testSpecSink) Flush() error             { return nil }
func (s *testSpecSink) Close() error             { return nil }

type testSpecDead struct{ cfg testSpecConnConfig }

func (s *testSpecDead) WriteDeadLetters([]DeadLetter) error { return nil }
func (s *testSpecDead) Flush() error                        { return nil }
func (s *testSpecDead) Close() error                        { return nil }

var errTestOpen = errors.New("cannot open")

func init() {
	RegisterOperator("test_spec_op", func(id string, cfg testSpecOpConfig) (Factory, error) {
		if cfg.Gap < 0 {
			return nil, errors.New("gap must be > 0")
		}
		if cfg.Gap == 0 {
			cfg.Gap = Duration(30 * time.Minute)
		}
		return func() Operator { return &testSpecOp{id: id, cfg: cfg} }, nil
	})
	RegisterOperator("test_spec_rekey", func(id string, cfg *testSpecRekeyConfig) (Factory, error) {
		return func() Operator { return &testSpecRekeyOp{testSpecOp: testSpecOp{id: id}, by: cfg.By} }, nil
	})
	RegisterSource("test_spec_source", func(cfg testSpecConnConfig) (Source, error) {
		if cfg.Path == "fail" {
			return nil, errTestOpen
		}
		return &testSpecSource{cfg: cfg}, nil
	})
	RegisterSink("test_spec_sink", func(cfg testSpecConnConfig) (Sink, error) {
		return &testSpecSink{cfg: cfg}, nil
	})
	RegisterDeadLetter("test_spec_dead", func(cfg testSpecConnConfig) (DeadLetterSink, error) {
		return &testSpecDead{cfg: cfg}, nil
	})
}

func TestRegisteredTypes(t *testing.T) {
	for _, c := range []struct {
		name  string
		types []string
		want  []string
	}{
		{"operators", OperatorTypes(), []string{"test_spec_op", "test_spec_rekey"}},
		{"sources", SourceTypes(), []string{"test_spec_source"}},
		{"sinks", SinkTypes(), []string{"test_spec_sink"}},
		{"dead letters", DeadLetterTypes(), []string{"test_spec_dead"}},
	} {
		if !slices.IsSorted(c.types) {
			t.Errorf("%s: not sorted: %v", c.name, c.types)
		}
		for _, w := range c.want {
			if !slices.Contains(c.types, w) {
				t.Errorf("%s: %v lacks %q", c.name, c.types, w)
			}
		}
	}
}

func TestRegisterPanics(t *testing.T) {
	build := func(string, testSpecOpConfig) (Factory, error) { return nil, nil }
	for _, c := range []struct {
		name string
		f    func()
		want string
	}{
		{"duplicate", func() { RegisterOperator("test_spec_op", build) }, `operator type "test_spec_op" registered twice`},
		{"empty", func() { RegisterOperator("", build) }, "empty type name"},
		{"nil build", func() { RegisterOperator[testSpecOpConfig]("test_spec_nil", nil) }, "nil build function"},
		{"nil open", func() { RegisterSink[testSpecConnConfig]("test_spec_nil", nil) }, "nil open function"},
		{"duplicate source", func() {
			RegisterSource("test_spec_source", func(testSpecConnConfig) (Source, error) { return nil, nil })
		}, `source type "test_spec_source" registered twice`},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), c.want) {
					t.Fatalf("panic = %v, want one containing %q", r, c.want)
				}
			}()
			c.f()
		})
	}
}

// TestRegistryConcurrent registers and lists types from many goroutines; run
// it with -race.
func TestRegistryConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 10 {
				RegisterSink(fmt.Sprintf("test_spec_conc_%d_%d", g, i), func(testSpecConnConfig) (Sink, error) { return nil, nil })
			}
		}()
		go func() {
			defer wg.Done()
			for range 10 {
				_ = SinkTypes()
				_, _ = lookupConnector(registry.sinks, "test_spec_sink")
			}
		}()
	}
	wg.Wait()
	types := SinkTypes()
	for g := range 8 {
		for i := range 10 {
			if name := fmt.Sprintf("test_spec_conc_%d_%d", g, i); !slices.Contains(types, name) {
				t.Fatalf("%s not registered", name)
			}
		}
	}
}

func TestDecodeConfig(t *testing.T) {
	at := Position{File: "x.yaml", Line: 7, Column: 3}
	node := func(src string) any {
		t.Helper()
		spec, err := ParseSpec([]byte("version: 1\nname: n\nsource: {type: s}\noperators:\n  - id: a\n    with: "+src+"\n"), "x.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return spec.Operators[0].With
	}
	for _, c := range []struct {
		name    string
		in      any
		want    testSpecOpConfig
		wantErr string
	}{
		{name: "nil", in: nil, want: testSpecOpConfig{}},
		{name: "value", in: testSpecOpConfig{Limit: 2}, want: testSpecOpConfig{Limit: 2}},
		{name: "pointer", in: &testSpecOpConfig{Limit: 3}, want: testSpecOpConfig{Limit: 3}},
		{name: "nil pointer", in: (*testSpecOpConfig)(nil), want: testSpecOpConfig{}},
		{name: "map", in: map[string]any{"gap": "1d", "tags": []string{"x"}}, want: testSpecOpConfig{Gap: Duration(24 * time.Hour), Tags: []string{"x"}}},
		{name: "map unknown field", in: map[string]any{"gapp": "1d"}, wantErr: `x.yaml:7:3: unknown field "gapp"`},
		{name: "map wrong type", in: map[string]any{"limit": "many"}, wantErr: `x.yaml:7:3: limit: expected an integer, got a string "many"`},
		{name: "node", in: node("{gap: 2w, limit: 1}"), want: testSpecOpConfig{Gap: Duration(14 * 24 * time.Hour), Limit: 1}},
		{name: "node unknown field", in: node("{gap: 2w, limt: 1}"), wantErr: `x.yaml:6:21: unknown field "limt"`},
		{name: "node bad duration", in: node("{gap: 2x}"), wantErr: `x.yaml:6:17: gap: invalid duration "2x": unknown unit "x" (want ns, us, ms, s, m, h, d or w)`},
		{name: "node wrong type", in: node("{tags: 3}"), wantErr: `x.yaml:6:18: tags: expected a list, got an integer`},
		{name: "node not a mapping", in: node("fast"), wantErr: `x.yaml:6:11: with: expected a mapping, got a string`},
		{name: "validate", in: testSpecOpConfig{Limit: -1}, wantErr: `x.yaml:7:3: limit must be >= 0, got -1`},
		{name: "validate node", in: node("{limit: -1}"), wantErr: `x.yaml:6:11: limit must be >= 0, got -1`},
		{name: "other type", in: 42, wantErr: `x.yaml:7:3: config must be a pipeline.testSpecOpConfig, a pointer to one, a YAML node or a map[string]any; got int`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, serr := decodeConfig[testSpecOpConfig](c.in, "x.yaml", at)
			if c.wantErr != "" {
				if serr == nil {
					t.Fatalf("no error, want %q", c.wantErr)
				}
				if serr.Error() != c.wantErr {
					t.Fatalf("error\n got %q\nwant %q", serr.Error(), c.wantErr)
				}
				return
			}
			if serr != nil {
				t.Fatal(serr)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestDecodeConfigPointerType(t *testing.T) {
	// A pointer config type gets a new value for a nil config, so that
	// Validate and build never see nil.
	_, serr := decodeConfig[*testSpecRekeyConfig](nil, "", Position{})
	if serr == nil || serr.Msg != "by is required" {
		t.Fatalf("nil config: error %v, want the Validate error", serr)
	}
	got, serr := decodeConfig[*testSpecRekeyConfig](map[string]any{"by": "product.id"}, "", Position{})
	if serr != nil || got == nil || got.By != "product.id" {
		t.Fatalf("map config: %+v, %v", got, serr)
	}
}

func TestDecodeConfigPointerTypeNode(t *testing.T) {
	spec, err := ParseSpec([]byte("operators:\n  - {id: v, with: {by: product.id, bye: 1}}\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, serr := decodeConfig[*testSpecRekeyConfig](spec.Operators[0].With, "p.yaml", Position{})
	if serr == nil || serr.Error() != `p.yaml:2:36: unknown field "bye"` {
		t.Fatalf("error %v", serr)
	}
}

func TestKnownHint(t *testing.T) {
	known := []string{"consent_filter", "sessionizer", "window_counter"}
	for _, c := range []struct {
		typ   string
		known []string
		want  string
	}{
		{"sessionizr", known, ` (did you mean "sessionizer"?)`},
		{"window_countr", known, ` (did you mean "window_counter"?)`},
		{"kafka", known, " (known: consent_filter, sessionizer, window_counter)"},
		{"kafka", nil, " (none is registered: import the package that registers them)"},
	} {
		if got := knownHint(c.typ, c.known); got != c.want {
			t.Errorf("knownHint(%q) = %q, want %q", c.typ, got, c.want)
		}
	}
}
