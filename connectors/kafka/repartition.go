package kafka

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/pipeline"
)

// The repartition topic carries a pipeline's exchanges between processes,
// as Kafka Streams' repartition topics do: it has one partition per
// pipeline partition, and the input of an operator that groups by another
// key than the event's goes to the partition that owns the group key,
// whichever process sends it. The process that owns pipeline partition q
// reads repartition partition q directly (no consumer group), from the
// offset stored with q's state. The value is the event's (or record's)
// JSON; headers say the rest.
const (
	// HeaderExchangeKind is "event", "record" or "watermark".
	HeaderExchangeKind = "sluice_kind"
	// HeaderExchangeOperator is the operator's index in the plan;
	// HeaderExchangeOperatorID its id.
	HeaderExchangeOperator   = "sluice_op"
	HeaderExchangeOperatorID = "sluice_op_id"
	// HeaderExchangeOrigin is the pipeline partition that sent it.
	HeaderExchangeOrigin = "sluice_origin"
	// HeaderExchangePosition is the input's origin position:
	// space/offset/index (space 0: a source offset, 1: a repartition
	// offset).
	HeaderExchangePosition = "sluice_pos"
	// HeaderExchangeKey is the input's group key (also the message key).
	HeaderExchangeKey = "sluice_key"
	// HeaderExchangeWatermark is a marker's watermark, Unix nanoseconds.
	HeaderExchangeWatermark = "sluice_wm"
)

// The header keys, shared by every message sent (sarama only reads them).
var (
	hkKind       = []byte(HeaderExchangeKind)
	hkOperator   = []byte(HeaderExchangeOperator)
	hkOperatorID = []byte(HeaderExchangeOperatorID)
	hkOrigin     = []byte(HeaderExchangeOrigin)
	hkPosition   = []byte(HeaderExchangePosition)
	hkKey        = []byte(HeaderExchangeKey)
	hkWatermark  = []byte(HeaderExchangeWatermark)
)

var kindNames = map[pipeline.ExchangeKind]string{
	pipeline.ExchangeEvent:     "event",
	pipeline.ExchangeRecord:    "record",
	pipeline.ExchangeWatermark: "watermark",
}

// Repartition implements pipeline.Repartition over a topic.
type Repartition struct {
	topic    string
	nparts   int
	pub      *Publisher
	client   sarama.Client
	consumer sarama.Consumer
	logger   *slog.Logger

	mu      sync.Mutex
	readers map[int]*repReader
}

type repReader struct {
	pc   sarama.PartitionConsumer
	stop chan struct{}
	done chan struct{}
}

// OpenRepartition connects to the repartition topic of a pipeline with
// nparts partitions, creating it if missing.
func OpenRepartition(cc ClientConfig, topic string, nparts int, logger *slog.Logger) (*Repartition, error) {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("repartition", topic)
	if err := EnsureTopic(cc, topic, nparts, nil); err != nil {
		return nil, fmt.Errorf("repartition: %w (create it with %d partitions)", err, nparts)
	}
	sc, err := cc.saramaConfig()
	if err != nil {
		return nil, err
	}
	sc.Consumer.Return.Errors = true
	sc.Consumer.MaxWaitTime = 50 * time.Millisecond
	sc.Consumer.Fetch.Default = 4 << 20
	client, err := sarama.NewClient(cc.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("repartition %s: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("repartition %s: %w", topic, err)
	}
	pub, err := NewPublisher(PublisherConfig{
		ClientConfig: cc,
		Acks:         "all",
		Idempotent:   true, // the receiver's de-duplication needs each partition in order
		Partitioner:  sarama.NewManualPartitioner,
		Logger:       logger,
	})
	if err != nil {
		consumer.Close()
		client.Close()
		return nil, fmt.Errorf("repartition %s: %w", topic, err)
	}
	return &Repartition{
		topic: topic, nparts: nparts, pub: pub, client: client, consumer: consumer, logger: logger,
		readers: make(map[int]*repReader),
	}, nil
}

// Send implements pipeline.Repartition.
func (r *Repartition) Send(msgs []pipeline.ExchangeMessage) error {
	// A few allocations per call, not per message: the messages, their
	// headers and the header values are carved out of shared arrays,
	// which the producer keeps until the messages are sent.
	pms := make([]sarama.ProducerMessage, len(msgs))
	ptrs := make([]*sarama.ProducerMessage, len(msgs))
	all := make([]sarama.RecordHeader, 0, 6*len(msgs))
	size := 0
	for i := range msgs {
		size += 96 + len(msgs[i].OperatorID) + len(msgs[i].Key)
	}
	buf := make([]byte, 0, size)
	for i := range msgs {
		m := &msgs[i]
		if m.Partition < 0 || m.Partition >= r.nparts {
			return fmt.Errorf("repartition %s: no partition %d", r.topic, m.Partition)
		}
		first := len(all)
		add := func(key []byte, start int) {
			all = append(all, sarama.RecordHeader{Key: key, Value: buf[start:len(buf):len(buf)]})
		}
		start := len(buf)
		buf = append(buf, kindNames[m.Kind]...)
		add(hkKind, start)
		start = len(buf)
		buf = strconv.AppendInt(buf, int64(m.Operator), 10)
		add(hkOperator, start)
		start = len(buf)
		buf = append(buf, m.OperatorID...)
		add(hkOperatorID, start)
		start = len(buf)
		buf = strconv.AppendInt(buf, int64(m.Origin), 10)
		add(hkOrigin, start)
		pm := &pms[i]
		*pm = sarama.ProducerMessage{Topic: r.topic, Partition: int32(m.Partition)}
		if m.Kind == pipeline.ExchangeWatermark {
			start = len(buf)
			buf = strconv.AppendInt(buf, m.Watermark, 10)
			add(hkWatermark, start)
		} else {
			start = len(buf)
			buf = strconv.AppendUint(buf, uint64(m.Position.Space), 10)
			buf = append(buf, '/')
			buf = strconv.AppendInt(buf, m.Position.Offset, 10)
			buf = append(buf, '/')
			buf = strconv.AppendUint(buf, uint64(m.Position.Index), 10)
			add(hkPosition, start)
			start = len(buf)
			buf = append(buf, m.Key...)
			add(hkKey, start)
			pm.Key = sarama.ByteEncoder(buf[start:len(buf):len(buf)])
			pm.Value = sarama.ByteEncoder(m.Payload)
		}
		pm.Headers = all[first:len(all):len(all)]
		ptrs[i] = pm
	}
	return r.pub.Enqueue(ptrs)
}

// Flush implements pipeline.Repartition.
func (r *Repartition) Flush() error { return r.pub.Flush() }

// Consume implements pipeline.Repartition.
func (r *Repartition) Consume(p int, after int64, deliver func([]pipeline.ExchangeMessage), fail func(error)) error {
	if p < 0 || p >= r.nparts {
		return fmt.Errorf("repartition %s: no partition %d", r.topic, p)
	}
	if err := r.Stop(p); err != nil {
		return err
	}
	low, err := r.client.GetOffset(r.topic, int32(p), sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("repartition %s: partition %d: oldest offset: %w", r.topic, p, err)
	}
	next := after + 1
	if next < low {
		if after >= 0 {
			r.logger.Error("exchanged inputs the state has not applied are gone from the repartition topic (retention); resuming at the oldest offset",
				"partition", p, "next", next, "oldest", low)
		}
		next = low
	}
	pc, err := r.consumer.ConsumePartition(r.topic, int32(p), next)
	if err != nil {
		return fmt.Errorf("repartition %s: partition %d: read from %d: %w", r.topic, p, next, err)
	}
	rd := &repReader{pc: pc, stop: make(chan struct{}), done: make(chan struct{})}
	r.mu.Lock()
	r.readers[p] = rd
	r.mu.Unlock()
	go r.read(p, rd, deliver, fail)
	return nil
}

// read delivers partition p's messages in batches until stopped.
func (r *Repartition) read(p int, rd *repReader, deliver func([]pipeline.ExchangeMessage), fail func(error)) {
	defer close(rd.done)
	const maxBatch = 1024
	batch := make([]pipeline.ExchangeMessage, 0, maxBatch)
	add := func(m *sarama.ConsumerMessage) {
		em, err := decodeExchange(m)
		if err != nil {
			r.logger.Warn("not a Sluice exchange message; skipped", "partition", p, "offset", m.Offset, "err", err)
			return
		}
		batch = append(batch, em)
	}
	for {
		select {
		case <-rd.stop:
			return
		case err := <-rd.pc.Errors():
			if err != nil {
				r.logger.Warn("repartition read error", "partition", p, "err", err)
			}
		case m, ok := <-rd.pc.Messages():
			if !ok {
				select {
				case <-rd.stop:
				default:
					fail(fmt.Errorf("repartition %s: partition %d: consumer closed", r.topic, p))
				}
				return
			}
			add(m)
		more:
			for len(batch) < maxBatch {
				select {
				case m, ok := <-rd.pc.Messages():
					if !ok {
						break more
					}
					add(m)
				default:
					break more
				}
			}
			if len(batch) > 0 {
				deliver(batch)
			}
			clear(batch)
			batch = batch[:0]
		}
	}
}

// Stop implements pipeline.Repartition.
func (r *Repartition) Stop(p int) error {
	r.mu.Lock()
	rd := r.readers[p]
	delete(r.readers, p)
	r.mu.Unlock()
	if rd == nil {
		return nil
	}
	close(rd.stop)
	<-rd.done
	if err := rd.pc.Close(); err != nil {
		var cerrs sarama.ConsumerErrors
		if !errors.As(err, &cerrs) {
			return fmt.Errorf("repartition %s: partition %d: close: %w", r.topic, p, err)
		}
	}
	return nil
}

// Close stops every reader, flushes and disconnects.
func (r *Repartition) Close() error {
	var errs []error
	for p := range r.nparts {
		errs = append(errs, r.Stop(p))
	}
	errs = append(errs, r.pub.Close(), r.consumer.Close(), r.client.Close())
	return errors.Join(errs...)
}

// internTable interns operator ids: a pipeline has a few.
type internTable struct {
	mu sync.Mutex
	m  map[string]string
}

var opIDs = internTable{m: map[string]string{}}

func (t *internTable) intern(b []byte) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(t.m) < 1024 {
		t.m[s] = s
	}
	return s
}

// decodeExchange reads an exchange message's headers.
func decodeExchange(m *sarama.ConsumerMessage) (pipeline.ExchangeMessage, error) {
	em := pipeline.ExchangeMessage{Partition: int(m.Partition), Offset: m.Offset, Payload: m.Value}
	var err error
	num := func(v []byte) int64 {
		n, perr := strconv.ParseInt(string(v), 10, 64)
		if perr != nil && err == nil {
			err = perr
		}
		return n
	}
	seen := 0
	for _, h := range m.Headers {
		if h == nil {
			continue
		}
		switch string(h.Key) {
		case HeaderExchangeKind:
			seen++
			switch string(h.Value) {
			case "event":
				em.Kind = pipeline.ExchangeEvent
			case "record":
				em.Kind = pipeline.ExchangeRecord
			case "watermark":
				em.Kind = pipeline.ExchangeWatermark
			default:
				return em, fmt.Errorf("unknown kind %q", h.Value)
			}
		case HeaderExchangeOperator:
			seen++
			em.Operator = int(num(h.Value))
		case HeaderExchangeOperatorID:
			em.OperatorID = opIDs.intern(h.Value)
		case HeaderExchangeOrigin:
			seen++
			em.Origin = int(num(h.Value))
		case HeaderExchangeWatermark:
			em.Watermark = num(h.Value)
		case HeaderExchangeKey:
			em.Key = string(h.Value)
		case HeaderExchangePosition:
			v := h.Value
			i := bytes.IndexByte(v, '/')
			j := -1
			if i >= 0 {
				if k := bytes.IndexByte(v[i+1:], '/'); k >= 0 {
					j = i + 1 + k
				}
			}
			if j < 0 {
				return em, fmt.Errorf("bad position %q", v)
			}
			em.Position.Space = uint8(num(v[:i]))
			em.Position.Offset = num(v[i+1 : j])
			em.Position.Index = uint32(num(v[j+1:]))
		}
	}
	if err != nil {
		return em, err
	}
	if seen < 3 {
		return em, errors.New("missing headers")
	}
	return em, nil
}

var _ pipeline.Repartition = (*Repartition)(nil)
