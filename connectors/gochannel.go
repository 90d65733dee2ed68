package connectors

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/sluicehq/sluice/pipeline"
)

func init() {
	pipeline.RegisterSource("channel", openChannelSource)
	pipeline.RegisterSink("channel", openChannelSink)
}

// DefaultChannel is the name a ChannelConfig without a name looks up.
const DefaultChannel = "default"

// channelSourceBatch caps one delivered batch of the channel source.
const channelSourceBatch = 256

var channels struct {
	sync.Mutex
	m map[string]*gochannel.GoChannel
}

// RegisterChannel makes ps the in-process pub/sub that "channel" sources and
// sinks of a spec with this name use. A later registration under the same
// name replaces the earlier one; a nil ps removes the name. Register before
// opening the pipeline. The caller keeps ownership of ps: the connectors
// never close it.
func RegisterChannel(name string, ps *gochannel.GoChannel) {
	channels.Lock()
	defer channels.Unlock()
	if ps == nil {
		delete(channels.m, name)
		return
	}
	if channels.m == nil {
		channels.m = make(map[string]*gochannel.GoChannel)
	}
	channels.m[name] = ps
}

func lookupChannel(name string) (*gochannel.GoChannel, error) {
	if name == "" {
		name = DefaultChannel
	}
	channels.Lock()
	defer channels.Unlock()
	ps, ok := channels.m[name]
	if !ok {
		return nil, fmt.Errorf("no channel named %q is registered (connectors.RegisterChannel)", name)
	}
	return ps, nil
}

// ChannelConfig configures a "channel" source or sink: a topic of an
// in-process Watermill GoChannel that the embedding program registered with
// RegisterChannel.
type ChannelConfig struct {
	// Name is the name the GoChannel was registered under. Default
	// DefaultChannel.
	Name string `yaml:"name"`
	// Topic is the topic to subscribe or publish to.
	Topic string `yaml:"topic"`
}

// Validate checks the config. Whether the channel is registered is only
// known when the pipeline is opened.
func (c ChannelConfig) Validate() error {
	if c.Topic == "" {
		return errors.New("channel: topic is required")
	}
	return nil
}

func openChannelSource(cfg ChannelConfig) (pipeline.Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("channel source: %w", err)
	}
	ps, err := lookupChannel(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("channel source: %w", err)
	}
	return NewChannelSource(ps, cfg.Topic), nil
}

func openChannelSink(cfg ChannelConfig) (pipeline.Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("channel sink: %w", err)
	}
	ps, err := lookupChannel(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("channel sink: %w", err)
	}
	return NewChannelSink(ps, cfg.Topic), nil
}

// NewChannelSource returns a source reading one topic of a Watermill
// subscriber, meant for an in-process gochannel.GoChannel. Each message's
// payload is one event.
//
// The source has one split, 0, and cannot seek. It acks each message as
// soon as the batch holding it is delivered, not at the checkpoint (a
// GoChannel subscriber waits for the ack of a message before it hands out
// the next), so delivery is at most once across a crash: acked messages
// that no checkpoint covered are lost, as is everything else in the memory
// of the crashed process. Offsets count the messages, continuing after the
// committed offset, so that the runtime never skips a new message as
// already processed.
//
// Messages arrive in publish order only when the GoChannel is made with
// BlockPublishUntilSubscriberAck (otherwise it hands each message over
// from its own goroutine). The source delivers the messages that are ready,
// up to 256 at a time, without waiting for more. Read returns nil when the
// subscription's channel closes (the GoChannel was closed), and ctx.Err()
// when ctx is done.
func NewChannelSource(sub message.Subscriber, topic string) pipeline.Source {
	return &channelSource{sub: sub, topic: topic}
}

type channelSource struct {
	sub   message.Subscriber
	topic string
}

// Read delivers the topic's messages until the subscription closes or ctx is
// done.
func (s *channelSource) Read(ctx context.Context, resume pipeline.Offsets, d pipeline.Deliverer) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.sub.Subscribe(sctx, s.topic)
	if err != nil {
		return fmt.Errorf("channel source %s: subscribe: %w", s.topic, err)
	}
	off := resume[0]
	batch := make([]pipeline.Message, 0, channelSourceBatch)
	msgs := make([]*message.Message, 0, channelSourceBatch)
	for {
		var m *message.Message
		var open bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, open = <-ch:
		}
		if !open {
			return ctx.Err()
		}
		off++
		batch = append(batch[:0], pipeline.Message{Payload: m.Payload, Offset: off})
		msgs = append(msgs[:0], m)
	ready:
		for len(batch) < channelSourceBatch {
			select {
			case m, open = <-ch:
				if !open {
					break ready
				}
				off++
				batch = append(batch, pipeline.Message{Payload: m.Payload, Offset: off})
				msgs = append(msgs, m)
			default:
				break ready
			}
		}
		if err := d.Deliver(0, batch); err != nil {
			return fmt.Errorf("channel source %s: deliver: %w", s.topic, err)
		}
		for _, m := range msgs {
			m.Ack()
		}
		clear(msgs) // let the payloads go while waiting
		if !open {
			return ctx.Err()
		}
	}
}

// NewChannelSink returns a sink publishing each record as one message to a
// topic of a Watermill publisher, meant for an in-process
// gochannel.GoChannel: the message's UUID is the record's id, its "key"
// metadata the record's key and its payload the record's JSON.
//
// Each Write is one Publish call. Flush has nothing to do: what Publish
// accepted is as visible as the publisher makes it (a GoChannel made with
// BlockPublishUntilSubscriberAck returns once subscribers acked). Close
// does not close the publisher, which the caller owns.
func NewChannelSink(pub message.Publisher, topic string) pipeline.Sink {
	return &channelSink{pub: pub, topic: topic}
}

type channelSink struct {
	pub   message.Publisher
	topic string
}

// Write publishes the records.
func (s *channelSink) Write(records []pipeline.SinkRecord) error {
	if len(records) == 0 {
		return nil
	}
	n := 0
	for i := range records {
		n += len(records[i].JSON)
	}
	// One buffer for all the payloads: the records' JSON is only valid
	// during Write, the messages live on.
	buf := make([]byte, 0, n)
	msgs := make([]*message.Message, len(records))
	for i := range records {
		r := &records[i]
		start := len(buf)
		buf = append(buf, r.JSON...)
		m := message.NewMessage(r.ID, buf[start:len(buf):len(buf)])
		m.Metadata.Set("key", r.Key)
		msgs[i] = m
	}
	if err := s.pub.Publish(s.topic, msgs...); err != nil {
		return fmt.Errorf("channel sink %s: publish: %w", s.topic, err)
	}
	return nil
}

// Flush does nothing: Write has handed everything to the publisher.
func (s *channelSink) Flush() error { return nil }

// Close does nothing: the publisher belongs to the caller.
func (s *channelSink) Close() error { return nil }
