package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	ClientConfig
	// Marshaler turns Watermill messages into Kafka messages. Default:
	// watermill-kafka's DefaultMarshaler (no key: random partitions).
	Marshaler wkafka.Marshaler
	// Acks, Compression: see SinkConfig.
	Acks        string
	Compression string
	// Partitioner chooses partitions. Default: FNV-1a hash of the key
	// (sarama's hash partitioner), as pipeline.PartitionOf.
	Partitioner sarama.PartitionerConstructor
	// Idempotent makes the producer idempotent (acks all): the broker
	// drops a retried duplicate and keeps each partition's messages in
	// the order sent, across retries.
	Idempotent bool
	// BatchSize caps the messages of one produce call. Default 1000.
	BatchSize int
	// RetryTimeout is how long a failed send is retried. Default 2m.
	RetryTimeout time.Duration
	// Logger logs retries. Default slog.Default().
	Logger *slog.Logger
}

// Publisher is a batching Watermill message.Publisher over sarama's
// SyncProducer.SendMessages: watermill-kafka's own Publisher sends one
// message per round trip (about 10K msg/s), SendMessages a whole batch
// (about 125K msg/s; DESIGN §5a).
//
// Publish sends its messages in one batch and waits for them. Enqueue and
// Flush let a sink go on while a background sender sends whatever has
// accumulated, one SendMessages call after the other, so that batches grow
// with the load and latency stays low.
type Publisher struct {
	producer  sarama.SyncProducer
	marshaler wkafka.Marshaler
	batchSize int
	retryFor  time.Duration
	logger    *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	pending []*sarama.ProducerMessage
	queued  uint64 // messages enqueued so far
	sent    uint64 // messages sent (or failed) so far
	err     error  // the first send error; the publisher is broken after it
	closed  bool
	done    chan struct{}
}

// NewPublisher connects a Publisher.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if err := cfg.ClientConfig.Validate(); err != nil {
		return nil, err
	}
	sc, err := cfg.saramaConfig()
	if err != nil {
		return nil, err
	}
	if sc.Producer.RequiredAcks, err = parseAcks(cfg.Acks); err != nil {
		return nil, err
	}
	if sc.Producer.Compression, err = parseCompression(cfg.Compression); err != nil {
		return nil, err
	}
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Partitioner = cfg.Partitioner
	if sc.Producer.Partitioner == nil {
		sc.Producer.Partitioner = sarama.NewHashPartitioner
	}
	// Keep a key's messages in order across retries.
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 5
	if cfg.Idempotent {
		sc.Producer.Idempotent = true
		sc.Producer.RequiredAcks = sarama.WaitForAll
	}
	sc.Producer.Flush.Frequency = 0
	sc.Producer.MaxMessageBytes = maxProducerBytes
	producer, err := sarama.NewSyncProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	p := &Publisher{
		producer:  producer,
		marshaler: cfg.Marshaler,
		batchSize: cfg.BatchSize,
		retryFor:  cfg.RetryTimeout,
		logger:    cfg.Logger,
		done:      make(chan struct{}),
	}
	if p.marshaler == nil {
		p.marshaler = wkafka.DefaultMarshaler{}
	}
	if p.batchSize <= 0 {
		p.batchSize = 1000
	}
	if p.retryFor <= 0 {
		p.retryFor = 2 * time.Minute
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	p.cond = sync.NewCond(&p.mu)
	go p.sendLoop()
	return p, nil
}

// Publish implements message.Publisher: it marshals msgs for topic and
// sends them in batches, returning once the brokers acknowledged them.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	pms := make([]*sarama.ProducerMessage, 0, len(msgs))
	for _, m := range msgs {
		pm, err := p.marshaler.Marshal(topic, m)
		if err != nil {
			return fmt.Errorf("kafka publish: marshal message %s: %w", m.UUID, err)
		}
		pms = append(pms, pm)
	}
	if err := p.Enqueue(pms); err != nil {
		return err
	}
	return p.Flush()
}

// Enqueue hands messages to the background sender. It blocks while too
// many messages wait, and fails once a send has failed for good.
func (p *Publisher) Enqueue(msgs []*sarama.ProducerMessage) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.err == nil && !p.closed && len(p.pending) >= 32*p.batchSize {
		p.cond.Wait()
	}
	if p.err != nil {
		return p.err
	}
	if p.closed {
		return errors.New("kafka publish: publisher closed")
	}
	p.pending = append(p.pending, msgs...)
	p.queued += uint64(len(msgs))
	p.cond.Broadcast()
	return nil
}

// Flush waits until every message enqueued before the call is
// acknowledged, and returns the first send error if any.
func (p *Publisher) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	target := p.queued
	for p.err == nil && p.sent < target {
		p.cond.Wait()
	}
	return p.err
}

// Close flushes, stops the sender and closes the producer.
func (p *Publisher) Close() error {
	ferr := p.Flush()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	<-p.done
	if err := p.producer.Close(); err != nil {
		return errors.Join(ferr, fmt.Errorf("kafka producer: close: %w", err))
	}
	return ferr
}

// sendLoop sends what is pending, batch after batch, until Close.
func (p *Publisher) sendLoop() {
	defer close(p.done)
	var batch []*sarama.ProducerMessage
	for {
		p.mu.Lock()
		for len(p.pending) == 0 && !p.closed {
			p.cond.Wait()
		}
		if len(p.pending) == 0 {
			p.mu.Unlock()
			return
		}
		n := min(len(p.pending), p.batchSize)
		batch = append(batch[:0], p.pending[:n]...)
		rest := copy(p.pending, p.pending[n:])
		clear(p.pending[rest:])
		p.pending = p.pending[:rest]
		broken := p.err != nil
		p.cond.Broadcast()
		p.mu.Unlock()

		var err error
		if !broken {
			err = sendWithRetry(p.producer, batch, p.retryFor, p.logger, "kafka publish")
		}
		clear(batch)
		p.mu.Lock()
		if err != nil && p.err == nil {
			p.err = err
		}
		p.sent += uint64(n)
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

// sendWithRetry sends msgs, sending again those that failed until they
// all succeed or retryFor passes (a broker restarting); errors that cannot
// pass fail at once. what names the sender in errors and logs.
func sendWithRetry(producer sarama.SyncProducer, msgs []*sarama.ProducerMessage, retryFor time.Duration, logger *slog.Logger, what string) error {
	deadline := time.Now().Add(retryFor)
	backoff := 100 * time.Millisecond
	for {
		err := producer.SendMessages(msgs)
		if err == nil {
			return nil
		}
		var perrs sarama.ProducerErrors
		if !errors.As(err, &perrs) {
			return fmt.Errorf("%s: %w", what, err)
		}
		failed := make([]*sarama.ProducerMessage, 0, len(perrs))
		for _, pe := range perrs {
			if !retriable(pe.Err) {
				return fmt.Errorf("%s to %s: %w", what, pe.Msg.Topic, pe.Err)
			}
			failed = append(failed, pe.Msg)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d messages still failing after %s: %w", what, len(failed), retryFor, perrs[0].Err)
		}
		logger.Warn(what+" failed; retrying", "messages", len(failed), "err", perrs[0].Err, "in", backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
		msgs = failed
	}
}

// retriable reports whether a produce error may go away by itself (a
// broker restarting, a leader moving).
func retriable(err error) bool {
	var kerr sarama.KError
	if errors.As(err, &kerr) {
		switch kerr {
		case sarama.ErrMessageSizeTooLarge, sarama.ErrInvalidMessage, sarama.ErrTopicAuthorizationFailed,
			sarama.ErrClusterAuthorizationFailed, sarama.ErrInvalidTopic, sarama.ErrUnsupportedVersion,
			sarama.ErrInvalidRecord:
			return false
		}
	}
	// The producer refuses a message over Producer.MaxMessageBytes with a
	// ConfigurationError: it never passes by itself.
	var cerr sarama.ConfigurationError
	return !errors.As(err, &cerr) && !errors.Is(err, sarama.ErrMessageSizeTooLarge)
}

var _ message.Publisher = (*Publisher)(nil)
