package connectors

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/sluicehq/sluice/pipeline"
)

// notifySub closes subscribed once the source has subscribed, so that the
// test publishes only then (a GoChannel drops messages nobody subscribed
// to).
type notifySub struct {
	message.Subscriber
	subscribed chan struct{}
}

func (s notifySub) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ch, err := s.Subscriber.Subscribe(ctx, topic)
	close(s.subscribed)
	return ch, err
}

func startChannelSource(t *testing.T, ps *gochannel.GoChannel, ctx context.Context, resume pipeline.Offsets, r *recorder) <-chan error {
	t.Helper()
	sub := notifySub{ps, make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- NewChannelSource(sub, "events").Read(ctx, resume, r) }()
	<-sub.subscribed
	return errc
}

// Records written to a channel sink come out of a channel source over the
// same GoChannel in order; the messages carry the records' ids and keys.
func TestChannelRoundTrip(t *testing.T) {
	ps := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	var r recorder
	errc := startChannelSource(t, ps, context.Background(), pipeline.Offsets{0: 41}, &r)

	// A second subscriber sees the messages themselves.
	msgs, err := ps.Subscribe(context.Background(), "events")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	type seen struct{ id, key, payload string }
	seenc := make(chan []seen, 1)
	go func() {
		var s []seen
		for m := range msgs {
			s = append(s, seen{m.UUID, m.Metadata.Get("key"), string(m.Payload)})
			m.Ack()
		}
		seenc <- s
	}()

	sink := NewChannelSink(ps, "events")
	recs := make([]pipeline.SinkRecord, 10)
	var buf []byte
	for b := range n / 10 {
		buf = buf[:0]
		for i := range recs {
			k := b*10 + i
			start := len(buf)
			buf = fmt.Appendf(buf, `{"n":%d}`, k)
			recs[i] = pipeline.SinkRecord{Key: fmt.Sprintf("u-%d", k%7), ID: fmt.Sprintf("id-%d", k), JSON: buf[start:]}
		}
		if err := sink.Write(recs); err != nil {
			t.Fatal(err)
		}
		for i := range buf {
			buf[i] = '#' // the sink must have copied
		}
	}
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}

	// Closing the GoChannel ends the source: a bounded run.
	if err := ps.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Read = %v, want nil", err)
	}
	if len(r.msgs) != n {
		t.Fatalf("source got %d messages, want %d", len(r.msgs), n)
	}
	for k, m := range r.msgs {
		if string(m.Payload) != fmt.Sprintf(`{"n":%d}`, k) || m.Offset != int64(42+k) {
			t.Fatalf("source message %d = %q@%d", k, m.Payload, m.Offset)
		}
	}
	s := <-seenc
	if len(s) != n {
		t.Fatalf("subscriber got %d messages, want %d", len(s), n)
	}
	for k, m := range s {
		if m.id != fmt.Sprintf("id-%d", k) || m.key != fmt.Sprintf("u-%d", k%7) || m.payload != fmt.Sprintf(`{"n":%d}`, k) {
			t.Fatalf("published message %d = %+v", k, m)
		}
	}
}

// Without BlockPublishUntilSubscriberAck messages come in any order and in
// batches of what is ready; each is delivered once, and offsets increase.
func TestChannelSourceUnordered(t *testing.T) {
	ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 512}, nil)
	defer ps.Close()
	const n = 3000
	all := make(chan struct{})
	var r recorder
	var once sync.Once
	r.onDeliver = func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.msgs) >= n {
			once.Do(func() { close(all) })
		}
	}
	var sizes []int
	d := batchSizes{&r, &sizes}
	ctx, cancel := context.WithCancel(context.Background())
	sub := notifySub{ps, make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- NewChannelSource(sub, "events").Read(ctx, nil, d) }()
	<-sub.subscribed
	for k := range n {
		if err := ps.Publish("events", message.NewMessage(fmt.Sprint(k), []byte(fmt.Sprint(k)))); err != nil {
			t.Fatal(err)
		}
	}
	<-all
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", err)
	}
	checkOffsetsIncrease(t, r.msgs)
	if r.msgs[0].Offset != 1 || r.msgs[n-1].Offset != n {
		t.Errorf("offsets from %d to %d, want 1 to %d", r.msgs[0].Offset, r.msgs[n-1].Offset, n)
	}
	got := r.payloads()
	sort.Slice(got, func(i, j int) bool { return len(got[i]) < len(got[j]) || len(got[i]) == len(got[j]) && got[i] < got[j] })
	for k, p := range got {
		if p != fmt.Sprint(k) {
			t.Fatalf("message %d is %q: lost or repeated messages", k, p)
		}
	}
	for _, s := range sizes {
		if s < 1 || s > channelSourceBatch {
			t.Fatalf("batch of %d", s)
		}
	}
}

// batchSizes records the size of each batch before passing it on.
type batchSizes struct {
	d     pipeline.Deliverer
	sizes *[]int
}

func (b batchSizes) Deliver(split int32, batch []pipeline.Message) error {
	*b.sizes = append(*b.sizes, len(batch))
	return b.d.Deliver(split, batch)
}

func TestChannelRegistry(t *testing.T) {
	ps := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	defer ps.Close()
	if _, err := openChannelSource(ChannelConfig{Topic: "t"}); err == nil {
		t.Fatal("unregistered default channel: want an error")
	}
	RegisterChannel(DefaultChannel, ps)
	RegisterChannel("other", ps)
	defer RegisterChannel(DefaultChannel, nil)
	defer RegisterChannel("other", nil)
	if _, err := openChannelSource(ChannelConfig{}); err == nil {
		t.Error("no topic: want an error")
	}
	if _, err := openChannelSource(ChannelConfig{Topic: "t"}); err != nil {
		t.Error(err)
	}
	if _, err := openChannelSink(ChannelConfig{Name: "other", Topic: "t"}); err != nil {
		t.Error(err)
	}
	if _, err := openChannelSink(ChannelConfig{Name: "missing", Topic: "t"}); err == nil {
		t.Error("unregistered channel: want an error")
	}
	RegisterChannel("other", nil)
	if _, err := openChannelSink(ChannelConfig{Name: "other", Topic: "t"}); err == nil {
		t.Error("removed channel: want an error")
	}
}
