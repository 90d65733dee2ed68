package kafka

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/pipeline"
)

// ProduceConfig configures ProduceJSONL.
type ProduceConfig struct {
	ClientConfig
	// Topic is the topic to write to.
	Topic string
	// BatchSize caps the messages of one produce call. Default 1000.
	BatchSize int
}

// ProduceJSONL writes each non-blank line of r as one message to a topic,
// keyed by the event's key (user_id, else anonymous_id) and so partitioned
// as the pipeline partitions (FNV-1a, pipeline.PartitionOf). A line that is
// not a valid event is written too, without a key (to a random partition):
// the pipeline dead-letters it. It returns the number of messages written.
func ProduceJSONL(ctx context.Context, r io.Reader, cfg ProduceConfig) (int, error) {
	pub, err := NewPublisher(PublisherConfig{ClientConfig: cfg.ClientConfig, BatchSize: cfg.BatchSize})
	if err != nil {
		return 0, err
	}
	n, err := produceLines(ctx, r, cfg.Topic, pub)
	if cerr := pub.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func produceLines(ctx context.Context, r io.Reader, topic string, pub *Publisher) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var dec pipeline.EventDecoder
	var e pipeline.Event
	n := 0
	batch := make([]*sarama.ProducerMessage, 0, 256)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(append([]byte(nil), line...))}
		if dec.Decode(line, &e) == nil {
			m.Key = sarama.StringEncoder(e.Key())
		}
		batch = append(batch, m)
		if len(batch) == cap(batch) {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			if err := pub.Enqueue(batch); err != nil {
				return n, err
			}
			n += len(batch)
			batch = make([]*sarama.ProducerMessage, 0, 256)
		}
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("read input: %w", err)
	}
	if len(batch) > 0 {
		if err := pub.Enqueue(batch); err != nil {
			return n, err
		}
		n += len(batch)
	}
	return n, pub.Flush()
}
