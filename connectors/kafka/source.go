package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/pipeline"
)

func init() {
	pipeline.RegisterSource("kafka", func(cfg SourceConfig) (pipeline.Source, error) { return OpenSource(cfg) })
}

// Source reads a topic through watermill-kafka's Subscriber in a consumer
// group; see SourceConfig. It implements pipeline.GroupSource.
//
// The offsets committed with the pipeline's state are the truth, not the
// group's: the source acknowledges every message as soon as it has it (the
// Subscriber hands out one message per partition and waits for its ack,
// so holding acks until a checkpoint would stall the partitions), and on
// every assignment it seeks each partition to the offset after the one its
// state reflects, in the group handler's Setup, reached through the
// Subscriber's Tracer hook. Payloads go to the pipeline raw: decoding
// happens there, so a message that is not an event is dead-lettered
// instead of blocking its partition.
type Source struct {
	cfg       SourceConfig
	logger    *slog.Logger
	nparts    int
	client    sarama.Client
	changelog *Changelog
	// repTopic names the repartition topic (pipeline-repartition);
	// repartition carries the exchanges once the runtime asked for it.
	repTopic    string
	repartition *Repartition

	// The read loop buffers messages (holding mu briefly) and acknowledges
	// them; the delivery loop hands the buffers to the pipeline (holding
	// dmu, and mu while it takes them). Setup and Cleanup hold both while
	// they assign and revoke, so that no delivery crosses an assignment.
	dmu       sync.Mutex
	mu        sync.Mutex
	reb       pipeline.Rebalancer
	d         pipeline.Deliverer
	owned     []bool
	buf       [][]pipeline.Message
	spare     [][]pipeline.Message
	buffered  int
	delivered []int64 // last offset delivered (or committed) per partition
	ends      []int64 // bounded: the end offset of each partition
	// remoteCheck is when the read loop last looked at the changelog for
	// the partitions other processes own (bounded).
	remoteCheck time.Time
	sub         *wkafka.Subscriber
	subCancel   context.CancelFunc

	kick chan struct{} // read loop → delivery loop: a first message is buffered
	full chan struct{} // read loop → delivery loop: BatchSize messages are buffered
	room chan struct{} // delivery loop → read loop: the buffers were taken
}

// OpenSource checks cfg; the source connects when the runtime binds it.
func OpenSource(cfg SourceConfig) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 1024
	}
	if cfg.Linger == 0 {
		cfg.Linger = pipeline.Duration(2 * time.Millisecond)
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = pipeline.Duration(10 * time.Second)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = cfg.SessionTimeout / 3
	}
	return &Source{cfg: cfg, logger: slog.Default()}, nil
}

// SplitPartitioned implements pipeline.PartitionedSource: Kafka partition
// p feeds pipeline partition p.
func (s *Source) SplitPartitioned() bool { return true }

// Bind implements pipeline.GroupSource: it connects, checks that the topic
// has one partition per pipeline partition, and opens the changelog.
func (s *Source) Bind(b pipeline.SourceBinding) (pipeline.Changelog, error) {
	s.nparts = b.Partitions
	if b.Logger != nil {
		s.logger = b.Logger
	}
	s.logger = s.logger.With("source", "kafka", "topic", s.cfg.Topic)
	sc, err := s.cfg.saramaConfig()
	if err != nil {
		return nil, err
	}
	if s.client, err = sarama.NewClient(s.cfg.Brokers, sc); err != nil {
		return nil, fmt.Errorf("kafka source: connect: %w", err)
	}
	admin, err := sarama.NewClusterAdminFromClient(s.client)
	if err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	if err := checkPartitions(admin, s.cfg.Topic, s.nparts); err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	topic := changelogTopic(b.Pipeline, s.cfg.ChangelogTopic)
	if s.changelog, err = OpenChangelog(s.cfg.ClientConfig, topic, s.nparts, s.logger); err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	s.repTopic = RepartitionTopic(b.Pipeline)
	s.owned = make([]bool, s.nparts)
	s.buf = make([][]pipeline.Message, s.nparts)
	s.spare = make([][]pipeline.Message, s.nparts)
	s.delivered = make([]int64, s.nparts)
	s.kick, s.full, s.room = make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{}, 1)
	return s.changelog, nil
}

// Repartition implements pipeline.RepartitionSource: the topic
// <pipeline>-repartition, with one partition per pipeline partition,
// carries the pipeline's exchanges between processes (created if missing).
func (s *Source) Repartition() (pipeline.Repartition, error) {
	if s.repartition != nil {
		return s.repartition, nil
	}
	if s.repTopic == "" {
		return nil, errors.New("kafka source: not bound")
	}
	rp, err := OpenRepartition(s.cfg.ClientConfig, s.repTopic, s.nparts, s.cfg.RepartitionPurgeDelay.D(), s.logger)
	if err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	s.repartition = rp
	return rp, nil
}

// Read consumes until ctx is done, or, when bounded, until every partition
// is read to its end offset.
func (s *Source) Read(ctx context.Context, _ pipeline.Offsets, d pipeline.Deliverer) error {
	reb, ok := d.(pipeline.Rebalancer)
	if !ok || s.client == nil {
		return errors.New("kafka source: not bound to a runtime (it needs pipeline.Runner)")
	}
	if s.cfg.Bounded {
		s.ends = make([]int64, s.nparts)
		for p := range s.nparts {
			end, err := s.client.GetOffset(s.cfg.Topic, int32(p), sarama.OffsetNewest)
			if err != nil {
				return fmt.Errorf("kafka source: end offset of partition %d: %w", p, err)
			}
			s.ends[p] = end
		}
	}
	s.mu.Lock()
	s.reb, s.d = reb, d
	s.mu.Unlock()

	sc, err := s.cfg.saramaConfig()
	if err != nil {
		return err
	}
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Return.Errors = true
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	sc.Consumer.Group.Session.Timeout = s.cfg.SessionTimeout.D()
	sc.Consumer.Group.Heartbeat.Interval = s.cfg.HeartbeatInterval.D()
	// Eager rebalancing: every assignment goes through Setup, where the
	// partitions are restored and sought.
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers:               s.cfg.Brokers,
		Unmarshaler:           rawUnmarshaler{},
		OverwriteSaramaConfig: sc,
		ConsumerGroup:         s.cfg.Group,
		ReconnectRetrySleep:   500 * time.Millisecond,
		Tracer:                tracer{s},
	}, wmLogger{s.logger})
	if err != nil {
		return fmt.Errorf("kafka source: %w", err)
	}
	subCtx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.sub, s.subCancel = sub, cancel
	s.mu.Unlock()
	msgs, err := sub.Subscribe(subCtx, s.cfg.Topic)
	if err != nil {
		return fmt.Errorf("kafka source: subscribe: %w", err)
	}
	return s.loop(ctx, msgs)
}

// loop reads messages with several goroutines, each buffering a message
// and then acknowledging it (the Subscriber hands out one message per
// partition and waits for its ack, so the readers cannot reorder a
// partition), while a delivery loop hands the buffers to the pipeline when
// BatchSize messages are buffered or Linger has passed since the first; so
// reading goes on while the pipeline decodes.
func (s *Source) loop(ctx context.Context, msgs <-chan *message.Message) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	errc := make(chan error, readers+2)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.deliverLoop(stop); err != nil {
			errc <- err
		}
	})
	var rg sync.WaitGroup
	for range readers {
		rg.Go(func() {
			if err := s.read(ctx, msgs); err != nil {
				errc <- err
			}
			cancel()
		})
	}
	defer func() {
		cancel()
		rg.Wait()
		close(stop)
		wg.Wait()
	}()
	var check <-chan time.Time
	if s.cfg.Bounded {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		check = t.C
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case err := <-errc:
				return err
			default:
				return nil
			}
		case err := <-errc:
			return err
		case <-check:
			if done, err := s.finished(); err != nil {
				return err
			} else if done {
				return nil
			}
		}
	}
}

// readers is the number of goroutines that take messages from the
// Subscriber: the Subscriber waits for each message's ack before it hands
// out the next of the same partition, so one reader leaves the partitions
// waiting on it.
const readers = 4

// read buffers and acknowledges messages until ctx is done.
func (s *Source) read(ctx context.Context, msgs <-chan *message.Message) error {
	maxBuffered := 4 * s.cfg.BatchSize
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return errors.New("kafka source: subscriber closed")
			}
			n := s.buffer(m)
			m.Ack()
			switch {
			case n == 1:
				signal(s.kick)
			case n == s.cfg.BatchSize:
				signal(s.full)
			}
			for n >= maxBuffered {
				select {
				case <-s.room:
				case <-ctx.Done():
					return nil
				}
				s.mu.Lock()
				n = s.buffered
				s.mu.Unlock()
			}
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// buffer adds m to its partition's buffer, unless this process does not
// own the partition (a message of a revoked assignment) or, bounded, m is
// past the end, and returns the number of buffered messages. It runs
// before m is acknowledged: the Subscriber's handler waits for the ack, so
// by the time a session's Cleanup runs every message of that session is
// buffered or delivered, and Cleanup drops the buffers.
func (s *Source) buffer(m *message.Message) int {
	p, ok1 := wkafka.MessagePartitionFromCtx(m.Context())
	off, ok2 := wkafka.MessagePartitionOffsetFromCtx(m.Context())
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok1 || !ok2 || p < 0 || int(p) >= s.nparts || !s.owned[p] {
		return s.buffered
	}
	if s.ends != nil && off >= s.ends[p] {
		return s.buffered
	}
	s.buf[p] = append(s.buf[p], pipeline.Message{Payload: m.Payload, Offset: off})
	s.buffered++
	return s.buffered
}

// deliverLoop delivers the buffers, until stop is closed; then it delivers
// what is left and returns.
func (s *Source) deliverLoop(stop chan struct{}) error {
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	for {
		select {
		case <-s.kick:
		case <-stop:
			return s.deliver()
		}
		linger.Reset(s.cfg.Linger.D())
		select {
		case <-s.full:
			linger.Stop()
		case <-linger.C:
		case <-stop:
			return s.deliver()
		}
		if err := s.deliver(); err != nil {
			return err
		}
	}
}

// deliver hands every buffer to the pipeline.
func (s *Source) deliver() error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.mu.Lock()
	if s.buffered == 0 {
		s.mu.Unlock()
		return nil
	}
	s.buf, s.spare = s.spare, s.buf
	s.buffered = 0
	// Drop stale signals: what they announced is being delivered.
	select {
	case <-s.full:
	default:
	}
	s.mu.Unlock()
	signal(s.room)
	for p, b := range s.spare {
		if len(b) == 0 {
			continue
		}
		err := s.d.Deliver(int32(p), b)
		last := b[len(b)-1].Offset
		clear(b)
		s.spare[p] = b[:0]
		if err != nil {
			return fmt.Errorf("kafka source: %w", err)
		}
		s.mu.Lock()
		s.delivered[p] = last
		s.mu.Unlock()
	}
	return nil
}

// finished reports whether every partition is read to its end offset: by
// this process for the partitions it owns, by the group (as the changelog
// shows) for the others.
func (s *Source) finished() (bool, error) {
	s.mu.Lock()
	owned := slices.Clone(s.owned)
	delivered := slices.Clone(s.delivered)
	s.mu.Unlock()
	// The partitions this process owns first: they need no request.
	for p := range s.nparts {
		if owned[p] && delivered[p] < s.ends[p]-1 {
			return false, nil
		}
	}
	// The others through the changelog, at most twice a second.
	if time.Since(s.remoteCheck) < 500*time.Millisecond {
		return false, nil
	}
	s.remoteCheck = time.Now()
	for p := range s.nparts {
		last := s.ends[p] - 1
		if owned[p] {
			continue
		}
		off, ok, err := s.changelog.LastCheckpoint(p)
		if err != nil {
			s.logger.Warn("read the changelog's last checkpoint", "partition", p, "err", err)
			return false, nil
		}
		if !ok || off < last {
			low, err := s.client.GetOffset(s.cfg.Topic, int32(p), sarama.OffsetOldest)
			if err != nil || low <= last {
				return false, nil
			}
		}
	}
	return true, nil
}

// setup is the group handler's Setup: the runtime takes the claimed
// partitions (restoring their state if need be), and each is sought to the
// offset after the one its state reflects.
func (s *Source) setup(sess sarama.ConsumerGroupSession) error {
	claims := sess.Claims()[s.cfg.Topic]
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	offs, err := s.reb.Assign(claims)
	if err != nil {
		s.logger.Error("assignment failed; the session is retried", "err", err)
		return err
	}
	for _, p := range claims {
		s.owned[p] = true
		s.delivered[p] = offs[p]
	}
	for _, p := range claims {
		next := offs[p] + 1
		low, err := s.client.GetOffset(s.cfg.Topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("kafka source: oldest offset of partition %d: %w", p, err)
		}
		if next < low {
			s.logger.Warn("events the state has not seen are gone from the topic (retention); resuming at the oldest offset",
				"partition", p, "next", next, "oldest", low)
			next = low
		}
		// Move the group's position either way: MarkOffset only moves it
		// forward, ResetOffset only backward.
		sess.MarkOffset(s.cfg.Topic, p, next, "")
		sess.ResetOffset(s.cfg.Topic, p, next, "")
	}
	s.logger.Info("assigned", "partitions", claims, "generation", sess.GenerationID())
	return nil
}

// cleanup is the group handler's Cleanup, after every ConsumeClaim of the
// session returned: the buffered messages are dropped (the next owner reads
// them again from the committed offsets) and the runtime gives the
// partitions up after a checkpoint.
func (s *Source) cleanup(sess sarama.ConsumerGroupSession) error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []int32
	for p, own := range s.owned {
		if own {
			parts = append(parts, int32(p))
		}
		s.owned[p] = false
		clear(s.buf[p])
		s.buf[p] = s.buf[p][:0]
	}
	s.buffered = 0
	if len(parts) == 0 {
		return nil
	}
	if err := s.reb.Revoke(parts); err != nil {
		return err
	}
	s.logger.Info("revoked", "partitions", parts, "generation", sess.GenerationID())
	return nil
}

// Close leaves the group and disconnects.
func (s *Source) Close() error {
	s.mu.Lock()
	sub, cancel := s.sub, s.subCancel
	s.sub, s.subCancel = nil, nil
	s.mu.Unlock()
	var errs []error
	if sub != nil {
		errs = append(errs, sub.Close())
		cancel()
	}
	if s.repartition != nil {
		errs = append(errs, s.repartition.Close())
		s.repartition = nil
	}
	if s.changelog != nil {
		errs = append(errs, s.changelog.Close())
		s.changelog = nil
	}
	if s.client != nil {
		errs = append(errs, s.client.Close())
		s.client = nil
	}
	return errors.Join(errs...)
}

// rawUnmarshaler hands the payload over as it is: decoding is the
// pipeline's, so that it can never fail here (an unmarshal error would
// block the partition).
type rawUnmarshaler struct{}

func (rawUnmarshaler) Unmarshal(m *sarama.ConsumerMessage) (*message.Message, error) {
	return message.NewMessage("", m.Value), nil
}

// tracer is the Subscriber's Tracer hook: it wraps the consumer group
// handler to see assignments (Setup) and revocations (Cleanup).
type tracer struct{ s *Source }

func (t tracer) WrapConsumer(c sarama.Consumer) sarama.Consumer { return c }

func (t tracer) WrapPartitionConsumer(pc sarama.PartitionConsumer) sarama.PartitionConsumer {
	return pc
}

func (t tracer) WrapConsumerGroupHandler(h sarama.ConsumerGroupHandler) sarama.ConsumerGroupHandler {
	return groupHandler{inner: h, s: t.s}
}

func (t tracer) WrapSyncProducer(_ *sarama.Config, p sarama.SyncProducer) sarama.SyncProducer {
	return p
}

type groupHandler struct {
	inner sarama.ConsumerGroupHandler
	s     *Source
}

func (h groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	if err := h.s.setup(sess); err != nil {
		return err
	}
	return h.inner.Setup(sess)
}

func (h groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	return errors.Join(h.inner.Cleanup(sess), h.s.cleanup(sess))
}

func (h groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	return h.inner.ConsumeClaim(sess, claim)
}

var _ pipeline.RepartitionSource = (*Source)(nil)

// Config returns the source's settings, defaults applied.
func (s *Source) Config() SourceConfig { return s.cfg }
