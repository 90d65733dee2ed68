package kafka

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/IBM/sarama"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"

	"github.com/sluicehq/sluice/pipeline"
)

// Header names of dead-letter messages.
const (
	// HeaderReason says why the input could not be processed.
	HeaderReason = "sluice_reason"
	// HeaderSplit and HeaderOffset locate the input in its source (the
	// Kafka partition and offset for a Kafka source); -1 when an operator
	// rejected an event.
	HeaderSplit  = "sluice_split"
	HeaderOffset = "sluice_offset"
	// HeaderTruncated is set on a dead letter whose input was longer than
	// a Kafka message may be: the input's length in bytes; the value holds
	// its first maxDeadLetterBytes bytes.
	HeaderTruncated = "sluice_truncated"
)

// maxDeadLetterBytes is the most of an input that a dead letter carries,
// so that with its headers it stays within maxProducerBytes.
const maxDeadLetterBytes = maxProducerBytes - 64<<10

var uuidHeader = []byte(wkafka.UUIDHeaderKey)

func init() {
	pipeline.RegisterSink("kafka", func(cfg SinkConfig) (pipeline.Sink, error) { return OpenSink(cfg) })
	pipeline.RegisterDeadLetter("kafka", func(cfg DeadLetterConfig) (pipeline.DeadLetterSink, error) {
		return OpenDeadLetter(cfg)
	})
}

// Sink writes output records to a topic; see SinkConfig.
type Sink struct {
	topic string
	pub   *Publisher
}

// OpenSink connects a Sink.
func OpenSink(cfg SinkConfig) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pub, err := openPublisher(cfg, "sink")
	if err != nil {
		return nil, err
	}
	return &Sink{topic: cfg.Topic, pub: pub}, nil
}

// openPublisher connects the Publisher of a sink or dead-letter output
// (kind names it in logs and errors).
func openPublisher(cfg SinkConfig, kind string) (*Publisher, error) {
	pub, err := NewPublisher(PublisherConfig{
		ClientConfig: cfg.ClientConfig,
		Acks:         cfg.Acks,
		Compression:  cfg.Compression,
		BatchSize:    cfg.BatchSize,
		RetryTimeout: cfg.RetryTimeout.D(),
		Logger:       slog.Default().With(kind, "kafka", "topic", cfg.Topic),
	})
	if err != nil {
		return nil, fmt.Errorf("kafka %s %s: %w", strings.ReplaceAll(kind, "_", " "), cfg.Topic, err)
	}
	return pub, nil
}

// Write hands the records to the background sender: key = record key,
// value = record JSON, Watermill UUID header = record id. It allocates the
// messages of a call together.
func (s *Sink) Write(records []pipeline.SinkRecord) error {
	if len(records) == 0 {
		return nil
	}
	size := 0
	for i := range records {
		size += len(records[i].JSON) + len(records[i].Key) + len(records[i].ID)
	}
	arena := make([]byte, 0, size)
	msgs := make([]sarama.ProducerMessage, len(records))
	headers := make([]sarama.RecordHeader, len(records))
	ptrs := make([]*sarama.ProducerMessage, len(records))
	for i := range records {
		r := &records[i]
		arena = append(arena, r.JSON...)
		value := arena[len(arena)-len(r.JSON):]
		arena = append(arena, r.ID...)
		id := arena[len(arena)-len(r.ID):]
		headers[i] = sarama.RecordHeader{Key: uuidHeader, Value: id}
		msgs[i] = sarama.ProducerMessage{
			Topic:   s.topic,
			Key:     sarama.StringEncoder(r.Key),
			Value:   sarama.ByteEncoder(value),
			Headers: headers[i : i+1 : i+1],
		}
		ptrs[i] = &msgs[i]
	}
	if err := s.pub.Enqueue(ptrs); err != nil {
		return fmt.Errorf("kafka sink %s: %w", s.topic, err)
	}
	return nil
}

// Flush waits until every record written so far is acknowledged.
func (s *Sink) Flush() error {
	if err := s.pub.Flush(); err != nil {
		return fmt.Errorf("kafka sink %s: %w", s.topic, err)
	}
	return nil
}

// Close flushes and disconnects.
func (s *Sink) Close() error {
	if err := s.pub.Close(); err != nil {
		return fmt.Errorf("kafka sink %s: %w", s.topic, err)
	}
	return nil
}

// DeadLetterSink writes inputs the pipeline could not process to a topic;
// see DeadLetterConfig.
type DeadLetterSink struct {
	topic string
	pub   *Publisher
}

// OpenDeadLetter connects a DeadLetterSink.
func OpenDeadLetter(cfg DeadLetterConfig) (*DeadLetterSink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pub, err := openPublisher(cfg, "dead_letter")
	if err != nil {
		return nil, err
	}
	return &DeadLetterSink{topic: cfg.Topic, pub: pub}, nil
}

// WriteDeadLetters hands the letters to the background sender: value = the
// raw input, headers = reason, split and offset (and the input's length
// when it had to be truncated).
func (s *DeadLetterSink) WriteDeadLetters(letters []pipeline.DeadLetter) error {
	msgs := make([]*sarama.ProducerMessage, len(letters))
	for i := range letters {
		l := &letters[i]
		payload := l.Payload
		headers := []sarama.RecordHeader{
			{Key: []byte(HeaderReason), Value: []byte(l.Reason)},
			{Key: []byte(HeaderSplit), Value: strconv.AppendInt(nil, int64(l.Split), 10)},
			{Key: []byte(HeaderOffset), Value: strconv.AppendInt(nil, l.Offset, 10)},
		}
		if len(payload) > maxDeadLetterBytes {
			// The broker would refuse it, and the run would stop on one
			// bad input: keep its start and say how long it was.
			headers = append(headers, sarama.RecordHeader{Key: []byte(HeaderTruncated), Value: strconv.AppendInt(nil, int64(len(payload)), 10)})
			payload = payload[:maxDeadLetterBytes]
		}
		msgs[i] = &sarama.ProducerMessage{
			Topic:   s.topic,
			Value:   sarama.ByteEncoder(append([]byte(nil), payload...)),
			Headers: headers,
		}
	}
	if err := s.pub.Enqueue(msgs); err != nil {
		return fmt.Errorf("kafka dead letter %s: %w", s.topic, err)
	}
	return nil
}

// Flush waits until every letter written so far is acknowledged.
func (s *DeadLetterSink) Flush() error {
	if err := s.pub.Flush(); err != nil {
		return fmt.Errorf("kafka dead letter %s: %w", s.topic, err)
	}
	return nil
}

// Close flushes and disconnects.
func (s *DeadLetterSink) Close() error {
	if err := s.pub.Close(); err != nil {
		return fmt.Errorf("kafka dead letter %s: %w", s.topic, err)
	}
	return nil
}
