package connectors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/sluicehq/sluice/pipeline"
)

func init() {
	pipeline.RegisterSource("file", openFileSource)
	pipeline.RegisterSink("file", openFileSink)
}

// DefaultMaxLineBytes is the default cap on the bytes kept of one input
// line (16 MiB).
const DefaultMaxLineBytes = 16 << 20

const (
	// lineBatchLines and lineBatchBytes cap one delivered batch of lines.
	lineBatchLines = 1024
	lineBatchBytes = 4 << 20
	// readBufferSize is the read buffer of the line sources.
	readBufferSize = 1 << 20
	// writeBufferSize is the write buffer of the line sinks.
	writeBufferSize = 256 << 10
)

// FileSourceConfig configures the file source (YAML type "file"): a JSONL
// file of events, one per line, read once to its end (a bounded source).
//
// The source has one split, 0. A message's offset is the byte offset just
// past the end of its line, so a restart continues right after the last
// line that the committed state reflects. Empty lines (and lines of only
// spaces and tabs) are skipped; a trailing "\r" is removed.
type FileSourceConfig struct {
	// Path is the JSONL file to read.
	Path string `yaml:"path"`
	// MaxLineBytes caps the bytes kept of one line. A longer line is
	// delivered cut to this length, with a warning in the log, so it fails
	// to decode and goes to the dead-letter output; the reader's memory stays
	// bounded. Default DefaultMaxLineBytes.
	MaxLineBytes int `yaml:"max_line_bytes"`
}

// Validate checks the config.
func (c FileSourceConfig) Validate() error {
	if c.Path == "" {
		return errors.New("file source: path is required")
	}
	if c.MaxLineBytes < 0 {
		return fmt.Errorf("file source: max_line_bytes must not be negative, got %d", c.MaxLineBytes)
	}
	return nil
}

func openFileSource(cfg FileSourceConfig) (pipeline.Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Fail at start-up on a missing file; Read opens it again.
	fi, err := os.Stat(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("file source: %s is a directory", cfg.Path)
	}
	return &fileSource{path: cfg.Path, maxLine: maxLineBytes(cfg.MaxLineBytes)}, nil
}

func maxLineBytes(n int) int {
	if n <= 0 {
		return DefaultMaxLineBytes
	}
	return n
}

// fileSource reads a JSONL file from a resume offset to its end.
type fileSource struct {
	path    string
	maxLine int
}

// Read delivers the lines of the file after resume[0] and returns nil at the
// end of the file.
func (s *fileSource) Read(ctx context.Context, resume pipeline.Offsets, d pipeline.Deliverer) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("file source: %w", err)
	}
	defer f.Close()
	off := resume[0]
	if off != 0 {
		if err := seekToLine(f, off); err != nil {
			return fmt.Errorf("file source %s: %w", s.path, err)
		}
	}
	lr := newLineReader(f, off, s.maxLine, "file source "+s.path)
	return deliverLines(ctx, lr, new(lineBatch), d)
}

// seekToLine moves f to off, the committed offset, after checking that off
// is still the end of a line of f: a file that is now shorter, or whose
// offset falls inside a line, is not the file the state was built from.
func seekToLine(f *os.File, off int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if off < 0 || off > size {
		return fmt.Errorf("committed offset %d is beyond the end of the file (%d bytes): "+
			"was it truncated or replaced? (use a new state directory to read it from the start)", off, size)
	}
	if off < size {
		// The byte before off ends a line; or the file ended at off without
		// a newline and a writer has since completed that line with one.
		var around [2]byte
		if _, err := f.ReadAt(around[:], off-1); err != nil {
			return fmt.Errorf("check committed offset %d: %w", off, err)
		}
		if around[0] != '\n' && around[1] != '\n' {
			return fmt.Errorf("committed offset %d is not at the end of a line: "+
				"was the file replaced? (use a new state directory to read it from the start)", off)
		}
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seek to committed offset %d: %w", off, err)
	}
	return nil
}

// deliverLines delivers the lines of lr to split 0 of d, in batches, until
// lr ends (nil), ctx is done or an error.
func deliverLines(ctx context.Context, lr *lineReader, b *lineBatch, d pipeline.Deliverer) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := lr.fill(b); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err := d.Deliver(0, b.msgs); err != nil {
			return fmt.Errorf("%s: deliver: %w", lr.name, err)
		}
	}
}

// lineBatch is a batch of lines, reused from one batch to the next: the
// payloads are slices of one arena.
type lineBatch struct {
	arena []byte
	ends  []int // ends[i] is the end of msgs[i].Payload in arena
	msgs  []pipeline.Message
}

func (b *lineBatch) reset() {
	if cap(b.arena) > 4*lineBatchBytes {
		// Do not keep the memory of a rare huge line forever.
		b.arena = nil
	}
	b.arena = b.arena[:0]
	b.ends = b.ends[:0]
	b.msgs = b.msgs[:0]
}

// lineReader splits a byte stream into lines of any length, counting byte
// offsets. The file and stdin sources share it.
type lineReader struct {
	r       *bufio.Reader
	name    string // for errors and logs
	maxLine int
	off     int64 // offset of the next unread byte
	eof     bool
}

func newLineReader(r io.Reader, off int64, maxLine int, name string) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, readBufferSize), name: name, maxLine: maxLine, off: off}
}

// fill resets b and reads the next lines into it: it waits for one line,
// then takes those already buffered (never waiting for more), up to the
// batch caps. It returns io.EOF, with b empty, once the input has ended.
func (lr *lineReader) fill(b *lineBatch) error {
	b.reset()
	for len(b.msgs) < lineBatchLines && len(b.arena) < lineBatchBytes {
		if len(b.msgs) > 0 && !lr.lineBuffered() {
			break
		}
		ok, err := lr.appendLine(b)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
	}
	if len(b.msgs) == 0 {
		return io.EOF
	}
	start := 0
	for i, end := range b.ends {
		b.msgs[i].Payload = b.arena[start:end:end]
		start = end
	}
	return nil
}

// lineBuffered reports whether a whole line is already buffered, so that
// reading it cannot block.
func (lr *lineReader) lineBuffered() bool {
	n := lr.r.Buffered()
	if n == 0 {
		return false
	}
	p, _ := lr.r.Peek(n)
	return bytes.IndexByte(p, '\n') >= 0
}

// appendLine reads the next non-blank line, appends it to b.arena without
// its line ending and adds its message to b. It returns false at the end
// of the input.
func (lr *lineReader) appendLine(b *lineBatch) (bool, error) {
	for !lr.eof {
		start := len(b.arena)
		read := 0 // bytes of the line read, with its newline
		truncated := false
		for {
			frag, err := lr.r.ReadSlice('\n')
			read += len(frag)
			lr.off += int64(len(frag))
			data := frag
			if err == nil {
				data = frag[:len(frag)-1]
			}
			if room := lr.maxLine - (len(b.arena) - start); len(data) > room {
				data = data[:room]
				truncated = true
			}
			b.arena = append(b.arena, data...)
			if err == nil {
				break
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				lr.eof = true
				break
			}
			return false, fmt.Errorf("%s: read at byte %d: %w", lr.name, lr.off, err)
		}
		line := b.arena[start:]
		if n := len(line); n > 0 && line[n-1] == '\r' && !truncated {
			line = line[:n-1]
			b.arena = b.arena[:start+n-1]
		}
		if read == 0 || blank(line) {
			b.arena = b.arena[:start]
			continue
		}
		if truncated {
			slog.Warn("line longer than max_line_bytes delivered cut short",
				"source", lr.name, "offset", lr.off, "line_bytes", read, "max_line_bytes", lr.maxLine)
		}
		b.ends = append(b.ends, len(b.arena))
		b.msgs = append(b.msgs, pipeline.Message{Offset: lr.off})
		return true, nil
	}
	return false, nil
}

// blank reports whether a line holds only spaces, tabs and carriage
// returns.
func blank(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// FileSinkConfig configures the file sink (YAML type "file"): one JSON
// record per line.
//
// The sink appends to an existing file, so a restart after a crash
// continues the same file; records written after the last checkpoint are
// written again with the same ids. Flush (at each checkpoint) writes the
// buffer and fsyncs the file.
type FileSinkConfig struct {
	// Path is the JSONL file to append to. Missing parent directories are
	// created.
	Path string `yaml:"path"`
}

// Validate checks the config.
func (c FileSinkConfig) Validate() error {
	if c.Path == "" {
		return errors.New("file sink: path is required")
	}
	return nil
}

func openFileSink(cfg FileSinkConfig) (pipeline.Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lw, err := openLineFile(cfg.Path, "file sink "+cfg.Path)
	if err != nil {
		return nil, err
	}
	return recordSink{lw}, nil
}

// recordSink is a pipeline.Sink writing one record per line.
type recordSink struct{ *lineWriter }

// Write appends the records, one per line.
func (s recordSink) Write(records []pipeline.SinkRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%s: write after close", s.name)
	}
	for i := range records {
		if _, err := s.w.Write(records[i].JSON); err != nil {
			return fmt.Errorf("%s: write: %w", s.name, err)
		}
		if err := s.w.WriteByte('\n'); err != nil {
			return fmt.Errorf("%s: write: %w", s.name, err)
		}
	}
	return s.endWrite()
}

// lineWriter is a buffered, mutex-guarded JSONL output shared by the sinks
// and dead-letter outputs over files and standard streams.
type lineWriter struct {
	name string // for errors and logs

	mu     sync.Mutex
	w      *bufio.Writer
	closed bool

	f *os.File
	// durable: Flush and Close fsync f, and Close closes it.
	durable bool
	// eager: every write is flushed (a terminal or a pipe reader sees
	// outputs as they come).
	eager bool
}

// openLineFile opens path for appending, creating it and its parent
// directories if needed.
func openLineFile(path, name string) (*lineWriter, error) {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := endTornLine(f, name); err != nil {
		f.Close()
		return nil, err
	}
	return &lineWriter{name: name, w: bufio.NewWriterSize(f, writeBufferSize), f: f, durable: true}, nil
}

// endTornLine cuts a line that a crash left half written off the end of f.
// Everything after the last checkpoint's flush is replayed on restart and
// written again, so the torn line is not lost; cutting it keeps the file
// valid JSONL for whoever reads it.
func endTornLine(f *os.File, name string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	size := fi.Size()
	end := size
	buf := make([]byte, 64<<10)
	for end > 0 {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return fmt.Errorf("%s: read tail: %w", name, err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == size {
		return nil
	}
	slog.Warn("output file ends inside a line (a write cut short by a crash); cutting the torn line, which the replay writes again",
		"output", name, "bytes", size-end)
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("%s: cut torn line: %w", name, err)
	}
	return nil
}

// newStreamWriter writes to a standard stream, flushing every write; it
// neither syncs nor closes the stream.
func newStreamWriter(f *os.File, name string) *lineWriter {
	return &lineWriter{name: name, w: bufio.NewWriterSize(f, writeBufferSize), f: f, eager: true}
}

// endWrite finishes a write; lw.mu is held.
func (lw *lineWriter) endWrite() error {
	if !lw.eager {
		return nil
	}
	if err := lw.w.Flush(); err != nil {
		return fmt.Errorf("%s: write: %w", lw.name, err)
	}
	return nil
}

// Flush writes out everything written so far and, for a file, fsyncs it.
func (lw *lineWriter) Flush() error {
	lw.mu.Lock()
	if lw.closed {
		lw.mu.Unlock()
		return fmt.Errorf("%s: flush after close", lw.name)
	}
	err := lw.w.Flush()
	lw.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: flush: %w", lw.name, err)
	}
	// Sync outside the lock, so that writers do not wait for the disk: it
	// covers everything flushed above.
	if lw.durable {
		if err := lw.f.Sync(); err != nil {
			return fmt.Errorf("%s: sync: %w", lw.name, err)
		}
	}
	return nil
}

// Close flushes and, for a file, fsyncs and closes it. A standard stream is
// left open.
func (lw *lineWriter) Close() error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.closed {
		return nil
	}
	lw.closed = true
	err := lw.w.Flush()
	if err != nil {
		err = fmt.Errorf("%s: flush: %w", lw.name, err)
	}
	if !lw.durable {
		return err
	}
	if serr := lw.f.Sync(); serr != nil && err == nil {
		err = fmt.Errorf("%s: sync: %w", lw.name, serr)
	}
	if cerr := lw.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("%s: close: %w", lw.name, cerr)
	}
	return err
}
