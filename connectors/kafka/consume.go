package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/IBM/sarama"
)

// ConsumeConfig configures Consume.
type ConsumeConfig struct {
	ClientConfig
	// Topic is the topic to read.
	Topic string
	// Follow goes on reading new messages until ctx is done; otherwise
	// Consume stops at the end offsets it found when it started.
	Follow bool
	// Headers writes each message as a JSON object with its partition,
	// offset, key, headers and value (as a string), instead of the value
	// alone.
	Headers bool
}

// Consume writes the messages of a topic to w, one per line, from the
// oldest offset of each partition (partition after partition unless
// following). It returns the number of messages written.
func Consume(ctx context.Context, w io.Writer, cfg ConsumeConfig) (int, error) {
	if err := cfg.ClientConfig.Validate(); err != nil {
		return 0, err
	}
	if cfg.Topic == "" {
		return 0, errors.New("topic is required")
	}
	sc, err := cfg.saramaConfig()
	if err != nil {
		return 0, err
	}
	sc.Consumer.Return.Errors = true
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return 0, fmt.Errorf("kafka: connect: %w", err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return 0, fmt.Errorf("kafka: %w", err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("kafka: partitions of %s: %w", cfg.Topic, err)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	var mu sync.Mutex
	n := 0
	write := func(m *sarama.ConsumerMessage) error {
		mu.Lock()
		defer mu.Unlock()
		var line []byte
		if cfg.Headers {
			hs := make(map[string]string, len(m.Headers))
			for _, h := range m.Headers {
				hs[string(h.Key)] = string(h.Value)
			}
			line, _ = json.Marshal(struct {
				Partition int32             `json:"partition"`
				Offset    int64             `json:"offset"`
				Key       string            `json:"key"`
				Headers   map[string]string `json:"headers"`
				Value     string            `json:"value"`
			}{m.Partition, m.Offset, string(m.Key), hs, string(m.Value)})
		} else {
			line = m.Value
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return err
		}
		n++
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	for i, p := range parts {
		low, err := client.GetOffset(cfg.Topic, p, sarama.OffsetOldest)
		if err != nil {
			return n, fmt.Errorf("kafka: %w", err)
		}
		high, err := client.GetOffset(cfg.Topic, p, sarama.OffsetNewest)
		if err != nil {
			return n, fmt.Errorf("kafka: %w", err)
		}
		if !cfg.Follow && high <= low {
			continue
		}
		pc, err := consumer.ConsumePartition(cfg.Topic, p, low)
		if err != nil {
			return n, fmt.Errorf("kafka: %w", err)
		}
		read := func() error {
			defer pc.Close()
			for {
				select {
				case m := <-pc.Messages():
					if err := write(m); err != nil {
						return err
					}
					if !cfg.Follow && m.Offset >= high-1 {
						return nil
					}
				case err := <-pc.Errors():
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		if !cfg.Follow {
			if err := read(); err != nil {
				return n, err
			}
			continue
		}
		wg.Go(func() { errs[i] = read() })
	}
	wg.Wait()
	return n, errors.Join(errs...)
}
