package connectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sluicehq/sluice/pipeline"
)

func init() {
	pipeline.RegisterSource("stdin", openStdinSource)
	pipeline.RegisterSink("stdout", openStdoutSink)
	pipeline.RegisterDeadLetter("stderr", openStderrDeadLetter)
}

// StdinSourceConfig configures the stdin source (YAML type "stdin"): JSONL
// events on standard input, read until it ends.
//
// Lines are read as by the file source. Standard input cannot seek, and
// what a new run reads is new input: offsets continue after the committed
// one (a message's offset is the committed offset plus the bytes read up to
// the end of its line), so nothing new is ever skipped. A crash loses what
// was read but not yet committed.
//
// The source can be read once per process.
type StdinSourceConfig struct {
	// MaxLineBytes caps the bytes kept of one line, as for the file source.
	// Default DefaultMaxLineBytes.
	MaxLineBytes int `yaml:"max_line_bytes"`
}

// Validate checks the config.
func (c StdinSourceConfig) Validate() error {
	if c.MaxLineBytes < 0 {
		return fmt.Errorf("stdin source: max_line_bytes must not be negative, got %d", c.MaxLineBytes)
	}
	return nil
}

func openStdinSource(cfg StdinSourceConfig) (pipeline.Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &streamSource{r: os.Stdin, name: "stdin source", maxLine: maxLineBytes(cfg.MaxLineBytes)}, nil
}

// streamSource reads lines from a stream that cannot seek and whose reads
// may block for as long as the writer likes.
type streamSource struct {
	r       io.Reader
	name    string
	maxLine int
}

type filled struct {
	b   *lineBatch
	err error
}

// Read delivers the lines of the stream until it ends (nil) or ctx is done.
//
// A goroutine reads, so that Read returns when ctx is done even while a read
// is blocked; that goroutine then exits when its read returns. It fills one
// batch while Read delivers the other.
func (s *streamSource) Read(ctx context.Context, resume pipeline.Offsets, d pipeline.Deliverer) error {
	lr := newLineReader(s.r, max(resume[0], 0), s.maxLine, s.name)
	free := make(chan *lineBatch, 2)
	free <- new(lineBatch)
	free <- new(lineBatch)
	full := make(chan filled)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			var b *lineBatch
			select {
			case b = <-free:
			case <-done:
				return
			}
			err := lr.fill(b)
			select {
			case full <- filled{b, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f := <-full:
			if errors.Is(f.err, io.EOF) {
				return nil
			}
			if f.err != nil {
				return f.err
			}
			if err := d.Deliver(0, f.b.msgs); err != nil {
				return fmt.Errorf("%s: deliver: %w", s.name, err)
			}
			free <- f.b
		}
	}
}

// StdoutSinkConfig configures the stdout sink (YAML type "stdout"): one JSON
// record per line on standard output, written out at the end of every
// micro-batch. It has no settings.
type StdoutSinkConfig struct{}

func openStdoutSink(StdoutSinkConfig) (pipeline.Sink, error) {
	return recordSink{newStreamWriter(os.Stdout, "stdout sink")}, nil
}

// StderrDeadLetterConfig configures the stderr dead-letter output (YAML type
// "stderr"): dead letters as JSON lines on standard error, in the format of
// the file dead-letter output. It has no settings.
type StderrDeadLetterConfig struct{}

func openStderrDeadLetter(StderrDeadLetterConfig) (pipeline.DeadLetterSink, error) {
	return deadLetterWriter{newStreamWriter(os.Stderr, "stderr dead letters")}, nil
}
