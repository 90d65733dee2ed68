package kafka

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
// offset stored with q's state.
//
// A message is a batch of exchange messages (inputs and watermark markers)
// to one partition, in order: the producer, the broker and the reader pay
// their per-message costs once per batch, not once per exchanged input.
// Its header HeaderExchange holds the format version, exchangeFormat; its
// value the entries one after the other (see appendEntry).
const HeaderExchange = "sluice_exchange"

// exchangeFormat is the version of the batch format.
const exchangeFormat = "1"

// maxExchangeBatch is the size past which a batch is closed and the next
// entries to its partition go in another: well under the 1 MB a broker
// takes by default (message.max.bytes).
const maxExchangeBatch = 256 << 10

var (
	hkExchange   = []byte(HeaderExchange)
	exchangeHdrV = []byte(exchangeFormat)
)

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
	purge   *purger
}

type repReader struct {
	pc   sarama.PartitionConsumer
	stop chan struct{}
	done chan struct{}
}

// OpenRepartition connects to the repartition topic of a pipeline with
// nparts partitions, creating it if missing. What the pipeline has applied
// is deleted from the topic purgeDelay after the checkpoint that applied
// it (DefaultRepartitionPurgeDelay when 0).
func OpenRepartition(cc ClientConfig, topic string, nparts int, purgeDelay time.Duration, logger *slog.Logger) (*Repartition, error) {
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
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		pub.Close()
		consumer.Close()
		client.Close()
		return nil, fmt.Errorf("repartition %s: %w", topic, err)
	}
	if purgeDelay <= 0 {
		purgeDelay = DefaultRepartitionPurgeDelay
	}
	return &Repartition{
		topic: topic, nparts: nparts, pub: pub, client: client, consumer: consumer, logger: logger,
		readers: make(map[int]*repReader),
		purge:   newPurger(topic, admin, purgeDelay, logger), // admin shares (and would close) client
	}, nil
}

// Send implements pipeline.Repartition. The messages to each partition go
// in batches, one Kafka message per partition and call (or per
// maxExchangeBatch bytes), carved out of one buffer that the producer keeps
// until they are sent.
func (r *Repartition) Send(msgs []pipeline.ExchangeMessage) error {
	// First the most each partition's entries take, to lay the
	// partitions out in one buffer; then the entries.
	start := make([]int, r.nparts+1)
	for i := range msgs {
		m := &msgs[i]
		if m.Partition < 0 || m.Partition >= r.nparts {
			return fmt.Errorf("repartition %s: no partition %d", r.topic, m.Partition)
		}
		start[m.Partition+1] += maxEntrySize(m)
	}
	for p := range r.nparts {
		start[p+1] += start[p]
	}
	buf := make([]byte, start[r.nparts])
	end := slices.Clone(start[:r.nparts]) // where each partition's next entry goes
	first := slices.Clone(end)            // where each partition's open batch starts
	var pms []*sarama.ProducerMessage
	closeBatch := func(p int) {
		if end[p] > first[p] {
			pms = append(pms, &sarama.ProducerMessage{
				Topic: r.topic, Partition: int32(p),
				Headers: []sarama.RecordHeader{{Key: hkExchange, Value: exchangeHdrV}},
				Value:   sarama.ByteEncoder(buf[first[p]:end[p]:end[p]]),
			})
			first[p] = end[p]
		}
	}
	for i := range msgs {
		m := &msgs[i]
		p := m.Partition
		if end[p]-first[p] >= maxExchangeBatch {
			closeBatch(p)
		}
		end[p] += len(appendEntry(buf[end[p]:end[p]], m))
	}
	for p := range r.nparts {
		closeBatch(p)
	}
	return r.pub.Enqueue(pms)
}

// maxEntrySize is the most bytes appendEntry takes for m.
func maxEntrySize(m *pipeline.ExchangeMessage) int {
	return 1 + 4*binary.MaxVarintLen64 + len(m.OperatorID) + 1 + 3*binary.MaxVarintLen64 + len(m.Key) + binary.MaxVarintLen64 + len(m.Payload)
}

// appendEntry appends m to a batch: its kind (the pipeline.ExchangeKind
// value), operator index, operator id, origin, then for a marker its
// watermark, for an input its position (space, offset, index), group key
// and payload. Integers are varints; strings and payloads length-prefixed.
func appendEntry(dst []byte, m *pipeline.ExchangeMessage) []byte {
	dst = append(dst, byte(m.Kind))
	dst = binary.AppendUvarint(dst, uint64(m.Operator))
	dst = binary.AppendUvarint(dst, uint64(len(m.OperatorID)))
	dst = append(dst, m.OperatorID...)
	dst = binary.AppendUvarint(dst, uint64(m.Origin))
	if m.Kind == pipeline.ExchangeWatermark {
		return binary.AppendVarint(dst, m.Watermark)
	}
	dst = append(dst, m.Position.Space)
	dst = binary.AppendVarint(dst, m.Position.Offset)
	dst = binary.AppendUvarint(dst, uint64(m.Position.Index))
	dst = binary.AppendUvarint(dst, uint64(len(m.Key)))
	dst = append(dst, m.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Payload)))
	return append(dst, m.Payload...)
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
		var err error
		n := len(batch)
		if batch, err = appendExchangeMessages(batch, m); err != nil {
			clear(batch[n:])
			batch = batch[:n]
			r.logger.Warn("not a Sluice exchange message; skipped", "partition", p, "offset", m.Offset, "err", err)
		}
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

// Purge implements pipeline.RepartitionPurger: partition p's messages up
// to offset are deleted once the purge delay has passed.
func (r *Repartition) Purge(p int, offset int64) { r.purge.add(p, offset) }

// Close stops every reader and the purger, flushes and disconnects.
func (r *Repartition) Close() error {
	var errs []error
	for p := range r.nparts {
		errs = append(errs, r.Stop(p))
	}
	r.purge.close()
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

// DecodeExchangeMessage returns the exchange messages that a message of a
// repartition topic carries, in order; every one but the last has More
// set. Their payloads share m.Value's memory.
func DecodeExchangeMessage(m *sarama.ConsumerMessage) ([]pipeline.ExchangeMessage, error) {
	return appendExchangeMessages(nil, m)
}

// appendExchangeMessages appends the exchange messages of m to dst.
func appendExchangeMessages(dst []pipeline.ExchangeMessage, m *sarama.ConsumerMessage) ([]pipeline.ExchangeMessage, error) {
	format := ""
	for _, h := range m.Headers {
		if h != nil && string(h.Key) == HeaderExchange {
			format = string(h.Value)
		}
	}
	if format != exchangeFormat {
		return dst, fmt.Errorf("format %q, want %q in header %s", format, exchangeFormat, HeaderExchange)
	}
	d := entryDecoder{data: m.Value}
	first := len(dst)
	for len(d.data) > 0 && d.err == nil {
		em := pipeline.ExchangeMessage{Partition: int(m.Partition), Offset: m.Offset}
		em.Kind = pipeline.ExchangeKind(d.byte())
		if (em.Kind < pipeline.ExchangeEvent || em.Kind > pipeline.ExchangeWatermark) && d.err == nil {
			d.err = fmt.Errorf("unknown kind %d", em.Kind)
		}
		em.Operator = int(d.uvarint())
		em.OperatorID = opIDs.intern(d.bytes())
		em.Origin = int(d.uvarint())
		if em.Kind == pipeline.ExchangeWatermark {
			em.Watermark = d.varint()
		} else {
			em.Position.Space = d.byte()
			em.Position.Offset = d.varint()
			em.Position.Index = uint32(d.uvarint())
			em.Key = string(d.bytes())
			em.Payload = d.bytes()
		}
		dst = append(dst, em)
	}
	if d.err != nil {
		return dst, fmt.Errorf("entry %d: %w", len(dst)-first, d.err)
	}
	if len(dst) == first {
		return dst, errors.New("no entries")
	}
	for i := first; i < len(dst)-1; i++ {
		dst[i].More = true
	}
	return dst, nil
}

// entryDecoder reads the fields of batch entries; after an error it reads
// zeros.
type entryDecoder struct {
	data []byte
	err  error
}

var errTruncated = errors.New("truncated entry")

func (d *entryDecoder) byte() uint8 {
	if len(d.data) == 0 {
		d.err = cmp.Or(d.err, errTruncated)
		return 0
	}
	b := d.data[0]
	d.data = d.data[1:]
	return b
}

func (d *entryDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.data)
	if n <= 0 {
		d.err = cmp.Or(d.err, errTruncated)
		d.data = nil
		return 0
	}
	d.data = d.data[n:]
	return v
}

// varint reads what binary.AppendVarint wrote: a zig-zag encoded uvarint.
func (d *entryDecoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (d *entryDecoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.data)) {
		d.err = cmp.Or(d.err, errTruncated)
		d.data = nil
		return nil
	}
	b := d.data[:n:n]
	d.data = d.data[n:]
	return b
}

var _ pipeline.Repartition = (*Repartition)(nil)
