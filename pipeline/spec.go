package pipeline

import "time"

// Spec is a pipeline description (DESIGN §3): what LoadSpec decodes from
// YAML, and what a Go program builds directly with the Builder.
type Spec struct {
	Version    int            `yaml:"version"`
	Name       string         `yaml:"name"`
	Source     ComponentSpec  `yaml:"source"`
	Time       TimeSpec       `yaml:"time"`
	State      StateSpec      `yaml:"state"`
	Partitions int            `yaml:"partitions"`
	DeadLetter *ComponentSpec `yaml:"dead_letter"`
	Operators  []OperatorSpec `yaml:"operators"`
	Sinks      []SinkSpec     `yaml:"sinks"`
	// File is the path the spec was read from, for error messages.
	File string `yaml:"-"`

	// meta records which fields the YAML or the Builder set explicitly, and
	// where, for defaults and error positions.
	meta *specMeta
}

// TimeSpec configures event time.
type TimeSpec struct {
	// MaxOutOfOrderness bounds disorder: watermark = max event time seen -
	// this. Default 5s.
	MaxOutOfOrderness Duration `yaml:"max_out_of_orderness"`
	// IdleTimeout is how long a source split may deliver nothing before its
	// watermark follows the wall clock. Default 30s.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// StateSpec configures the state store and checkpoints.
type StateSpec struct {
	// Dir is the Pebble directory. Default .sluice/state/<name>.
	Dir string `yaml:"dir"`
	// CheckpointInterval is the time between checkpoints. Default 1s.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// Sync is always, checkpoint (default) or never: whether a checkpoint
	// commit waits for the disk.
	Sync string `yaml:"sync"`
}

// ComponentSpec is a source, sink or dead-letter output: a type and the
// type's own settings, written inline beside `type` in YAML.
type ComponentSpec struct {
	Type string
	// Config is the type's settings: a YAML node when decoded from YAML, or
	// the connector's config struct (or a pointer to it) when built in Go.
	Config any
	// Pos is where the component was written, when it came from YAML.
	Pos Position
}

// OperatorSpec is one operator of the pipeline.
type OperatorSpec struct {
	ID     string
	Type   string
	Inputs []string
	// With is the operator's config: a YAML node when decoded from YAML, or
	// its config struct (or a pointer to it) when built in Go.
	With any
	// New, when set, makes the operator's instances directly and Type only
	// names it; it lets a Go program use an operator it did not register.
	New Factory
	// Pos is where the operator was written, when it came from YAML.
	Pos Position
}

// SinkSpec is one sink and the operators it writes the outputs of.
type SinkSpec struct {
	ID     string
	Inputs []string
	ComponentSpec
}

// Position is a place in a spec file.
type Position struct {
	File   string
	Line   int
	Column int
}

// Duration is a time.Duration written in Go syntax plus d (days) and w
// (weeks): "90s", "30m", "7d", "2w", "1d12h".
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
