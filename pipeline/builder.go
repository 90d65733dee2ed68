package pipeline

import (
	"fmt"
	"runtime"
	"slices"
	"time"
)

// CustomOperatorType is the Type of an operator added with Builder.Custom.
const CustomOperatorType = "custom"

// Builder builds a pipeline spec in Go, equivalent to the YAML:
//
//	b := pipeline.NewBuilder("retail", pipeline.WithPartitions(8))
//	b.Source("file", file.Config{Path: "events.jsonl"})
//	b.Operator("consent", "consent_filter", consent.Config{Purposes: []string{"analytics"}})
//	b.Operator("sessions", "sessionizer", sessions.Config{Gap: pipeline.Duration(30 * time.Minute)}, "consent")
//	b.Custom("mine", myFactory, "consent")
//	b.Sink("out", "file", file.SinkConfig{Path: "out.jsonl"}, "sessions", "mine")
//	plan, err := b.Plan()
//
// Configs are the config structs (or pointers to them) that the operator and
// connector types registered, or map[string]any. The Builder checks
// nothing itself: Plan validates like NewPlan does for YAML, and reports
// each problem at the line of Go code that caused it.
type Builder struct {
	spec Spec
	meta *specMeta
	// set records which single-valued parts have been given, for "set
	// twice" errors.
	set map[string]Position
}

// BuilderOption sets a pipeline-wide setting of a Builder.
type BuilderOption func(*Builder)

// NewBuilder starts a spec (version 1) for the pipeline called name. The
// settings the options do not give take the spec defaults.
func NewBuilder(name string, opts ...BuilderOption) *Builder {
	at := callerPos()
	b := &Builder{
		spec: Spec{Version: 1, Name: name},
		meta: newSpecMeta(at),
		set:  map[string]Position{},
	}
	b.meta.fields[fieldKey{name: "version"}] = at
	b.meta.fields[fieldKey{name: "name"}] = at
	for _, o := range opts {
		o(b)
	}
	return b
}

// WithPartitions sets the partition count (1..4096; default 8).
func WithPartitions(n int) BuilderOption {
	return func(b *Builder) { b.spec.Partitions = n; b.explicit("partitions") }
}

// WithStateDir sets the state directory (default .sluice/state/<name>).
func WithStateDir(dir string) BuilderOption {
	return func(b *Builder) { b.spec.State.Dir = dir; b.explicit("state.dir") }
}

// WithCheckpointInterval sets the time between checkpoints (default 1s).
func WithCheckpointInterval(d time.Duration) BuilderOption {
	return func(b *Builder) {
		b.spec.State.CheckpointInterval = Duration(d)
		b.explicit("state.checkpoint_interval")
	}
}

// WithMaxOutOfOrderness sets how far behind the latest event time the
// watermark trails (default 5s; 0 is allowed: input in time order).
func WithMaxOutOfOrderness(d time.Duration) BuilderOption {
	return func(b *Builder) {
		b.spec.Time.MaxOutOfOrderness = Duration(d)
		b.explicit("time.max_out_of_orderness")
	}
}

// WithIdleTimeout sets how long a source split may be silent before its
// watermark follows the wall clock (default 30s).
func WithIdleTimeout(d time.Duration) BuilderOption {
	return func(b *Builder) {
		b.spec.Time.IdleTimeout = Duration(d)
		b.explicit("time.idle_timeout")
	}
}

// WithSync sets the state sync mode: SyncAlways, SyncCheckpoint (default)
// or SyncNever.
func WithSync(mode string) BuilderOption {
	return func(b *Builder) { b.spec.State.Sync = mode; b.explicit("state.sync") }
}

// explicit records that an option set field, at the NewBuilder call.
func (b *Builder) explicit(field string) {
	b.meta.fields[fieldKey{name: field}] = b.meta.root
}

// once reports a part given twice, as the YAML decoder does a duplicate key.
func (b *Builder) once(part string, at Position) {
	if first, dup := b.set[part]; dup {
		b.meta.errs = append(b.meta.errs, SpecError{Pos: at, Msg: fmt.Sprintf("%s is set twice (first at %s); the last one is used", part, first)})
		return
	}
	b.set[part] = at
}

// Source sets the source: a registered source type and its config.
func (b *Builder) Source(typ string, cfg any) *Builder {
	at := callerPos()
	b.once("source", at)
	b.spec.Source = ComponentSpec{Type: typ, Config: cfg, Pos: at}
	b.meta.fields[fieldKey{name: "source"}] = at
	return b
}

// Operator adds an operator of a registered type. with is its config; an
// operator without inputs reads the source.
func (b *Builder) Operator(id, typ string, with any, inputs ...string) *Builder {
	b.spec.Operators = append(b.spec.Operators, OperatorSpec{
		ID: id, Type: typ, With: with, Inputs: slices.Clone(inputs), Pos: callerPos(),
	})
	return b
}

// Custom adds an operator that is not registered: factory makes its
// instances. Its Type is CustomOperatorType.
func (b *Builder) Custom(id string, factory Factory, inputs ...string) *Builder {
	at := callerPos()
	if factory == nil {
		b.meta.errs = append(b.meta.errs, SpecError{Pos: at, Msg: fmt.Sprintf("operator %q: Custom needs a factory", id)})
		b.meta.bad[fieldKey{at, "type"}] = true
	}
	b.spec.Operators = append(b.spec.Operators, OperatorSpec{
		ID: id, Type: CustomOperatorType, New: factory, Inputs: slices.Clone(inputs), Pos: at,
	})
	return b
}

// Sink adds a sink of a registered type, with its config, that writes the
// outputs of the input operators.
func (b *Builder) Sink(id, typ string, cfg any, inputs ...string) *Builder {
	b.spec.Sinks = append(b.spec.Sinks, SinkSpec{
		ID:            id,
		Inputs:        slices.Clone(inputs),
		ComponentSpec: ComponentSpec{Type: typ, Config: cfg, Pos: callerPos()},
	})
	return b
}

// DeadLetter sets the dead-letter output: a registered type and its config.
func (b *Builder) DeadLetter(typ string, cfg any) *Builder {
	at := callerPos()
	b.once("dead_letter", at)
	b.spec.DeadLetter = &ComponentSpec{Type: typ, Config: cfg, Pos: at}
	b.meta.fields[fieldKey{name: "dead_letter"}] = at
	return b
}

// Spec returns a copy of the spec built so far.
func (b *Builder) Spec() *Spec {
	s := b.spec
	s.Operators = slices.Clone(b.spec.Operators)
	for i := range s.Operators {
		s.Operators[i].Inputs = slices.Clone(s.Operators[i].Inputs)
	}
	s.Sinks = slices.Clone(b.spec.Sinks)
	for i := range s.Sinks {
		s.Sinks[i].Inputs = slices.Clone(s.Sinks[i].Inputs)
	}
	if b.spec.DeadLetter != nil {
		dl := *b.spec.DeadLetter
		s.DeadLetter = &dl
	}
	s.meta = b.meta.clone()
	return &s
}

// Plan validates the spec and makes its Plan, like NewPlan.
func (b *Builder) Plan() (*Plan, error) { return NewPlan(b.Spec()) }

// callerPos returns the position of the code that called the Builder
// method calling callerPos.
func callerPos() Position {
	_, file, line, ok := runtime.Caller(2)
	if !ok {
		return Position{}
	}
	return Position{File: file, Line: line}
}
