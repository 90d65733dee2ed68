package connectors

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/sluicehq/sluice/pipeline"
)

func init() {
	pipeline.RegisterDeadLetter("file", openDeadLetterFile)
}

// DeadLetterFileConfig configures the file dead-letter output (YAML type
// "file"): one JSON object per line for each input the pipeline could not
// process:
//
//	{"reason":"not JSON: ...","split":0,"offset":1234,"payload":"<raw input>"}
//
// The raw input is a JSON string in "payload" when it is valid UTF-8, and
// otherwise base64 (standard, padded) in "payload_base64" instead. The file
// is appended to and made durable at each checkpoint, like the file sink.
type DeadLetterFileConfig struct {
	// Path is the JSONL file to append to. Missing parent directories are
	// created.
	Path string `yaml:"path"`
}

// Validate checks the config.
func (c DeadLetterFileConfig) Validate() error {
	if c.Path == "" {
		return errors.New("file dead letters: path is required")
	}
	return nil
}

func openDeadLetterFile(cfg DeadLetterFileConfig) (pipeline.DeadLetterSink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lw, err := openLineFile(cfg.Path, "file dead letters "+cfg.Path)
	if err != nil {
		return nil, err
	}
	return deadLetterWriter{lw}, nil
}

// deadLetterWriter is a pipeline.DeadLetterSink writing one JSON line per
// dead letter.
type deadLetterWriter struct{ *lineWriter }

// WriteDeadLetters appends the dead letters, one per line.
func (s deadLetterWriter) WriteDeadLetters(letters []pipeline.DeadLetter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%s: write after close", s.name)
	}
	for i := range letters {
		// Encode straight into the writer's free buffer when it fits.
		buf := appendDeadLetter(s.w.AvailableBuffer(), &letters[i])
		if _, err := s.w.Write(buf); err != nil {
			return fmt.Errorf("%s: write: %w", s.name, err)
		}
	}
	return s.endWrite()
}

// appendDeadLetter appends the JSON line of l to dst.
func appendDeadLetter(dst []byte, l *pipeline.DeadLetter) []byte {
	dst = append(dst, `{"reason":`...)
	dst = pipeline.AppendJSONString(dst, l.Reason)
	dst = append(dst, `,"split":`...)
	dst = strconv.AppendInt(dst, int64(l.Split), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, l.Offset, 10)
	if utf8.Valid(l.Payload) {
		dst = append(dst, `,"payload":`...)
		dst = pipeline.AppendJSONString(dst, string(l.Payload))
	} else {
		dst = append(dst, `,"payload_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, l.Payload)
		dst = append(dst, '"')
	}
	return append(dst, "}\n"...)
}
