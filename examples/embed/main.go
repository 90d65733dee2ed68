// Command embed shows Sluice embedded in a Go service: a custom operator
// registered from Go, a pipeline built with the Builder, events published on
// an in-process Watermill GoChannel and records read from another.
//
//	go run ./examples/embed
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/generator"
	_ "github.com/sluicehq/sluice/operators"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/state"
)

// BigSpenderConfig configures the big_spender operator.
type BigSpenderConfig struct {
	// Threshold is the lifetime revenue at which a shopper becomes a big
	// spender.
	Threshold float64 `yaml:"threshold"`
}

// bigSpender emits `big_spender` {revenue} once per shopper, at the order
// that takes the shopper's lifetime revenue to Threshold or more.
type bigSpender struct {
	threshold float64
	revenue   *state.Value[float64]
}

// EventFields tells the runtime that the operator reads none of an event's
// optional fields (page, user agent, brand...) and forwards no event, so
// they need not be decoded for it (pipeline.EventFieldsReader).
func (b *bigSpender) EventFields() (pipeline.EventFields, bool) { return 0, false }

func (b *bigSpender) Open(oc *pipeline.OpenContext) error {
	b.revenue = pipeline.NewValue(oc, "revenue", state.Float64Codec)
	return nil
}

func (b *bigSpender) OnEvent(ctx *pipeline.Context, e *pipeline.Event) error {
	if e.Type != "order_completed" {
		return nil
	}
	before, _, err := b.revenue.Get(ctx.Key())
	if err != nil {
		return err
	}
	after := before + e.Order.Revenue
	b.revenue.Put(ctx.Key(), after)
	if before < b.threshold && after >= b.threshold {
		ctx.Emit("big_spender", map[string]float64{"revenue": after})
	}
	return nil
}

func init() {
	// Registered like a built-in: usable from YAML as `type: big_spender`.
	pipeline.RegisterOperator("big_spender", func(id string, cfg BigSpenderConfig) (pipeline.Factory, error) {
		if cfg.Threshold <= 0 {
			return nil, fmt.Errorf("big_spender %q: threshold must be > 0", id)
		}
		return func() pipeline.Operator { return &bigSpender{threshold: cfg.Threshold} }, nil
	})
}

func main() {
	n, err := run(context.Background(), os.Stdout, 20000)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "%d big spenders\n", n)
}

// run publishes count generated events, runs the pipeline over them and
// prints the records; it returns how many there were.
func run(ctx context.Context, out *os.File, count int) (int, error) {
	logger := watermill.NopLogger{}
	in := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true, OutputChannelBuffer: 1024}, logger)
	results := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1 << 16}, logger)
	connectors.RegisterChannel("in", in)
	connectors.RegisterChannel("results", results)

	dir, err := os.MkdirTemp("", "sluice-embed")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	plan, err := pipeline.NewBuilder("embed", pipeline.WithPartitions(4), pipeline.WithStateDir(dir)).
		Source("channel", connectors.ChannelConfig{Name: "in", Topic: "events"}).
		Operator("consent", "consent_filter", map[string]any{"purposes": []string{"analytics"}}).
		Operator("big", "big_spender", BigSpenderConfig{Threshold: 300}, "consent").
		Sink("results", "channel", connectors.ChannelConfig{Name: "results", Topic: "records"}, "big").
		Plan()
	if err != nil {
		return 0, err
	}
	runner, err := pipeline.NewRunner(plan, pipeline.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return 0, err
	}
	records, err := results.Subscribe(ctx, "records")
	if err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()

	// The service's side: publish events as they happen...
	go func() {
		gen, _ := generator.New(generator.Config{Count: count, Users: 300, Seed: 3})
		var e pipeline.Event
		for gen.Next(&e) {
			msg := message.NewMessage(e.EventID, pipeline.AppendEventJSON(nil, &e))
			if err := in.Publish("events", msg); err != nil {
				return
			}
		}
		_ = in.Close() // the end of input: the run finishes
	}()
	if err := <-done; err != nil {
		return 0, err
	}
	_ = results.Close()
	// ...and read the records.
	n := 0
	for msg := range records {
		var r struct {
			Type string          `json:"type"`
			Key  string          `json:"key"`
			Time string          `json:"time"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(msg.Payload, &r); err != nil {
			return n, err
		}
		switch r.Type {
		case "big_spender":
			var d struct{ Revenue float64 }
			if err := json.Unmarshal(r.Data, &d); err != nil {
				return n, err
			}
			fmt.Fprintf(out, "%s became a big spender at %s (revenue %.2f)\n", r.Key, r.Time, d.Revenue)
			n++
		case pipeline.RecordErasure:
			// A tombstone: the shopper withdrew consent or asked to be
			// erased; a downstream store deletes what it holds of them.
			fmt.Fprintf(out, "%s erased at %s\n", r.Key, r.Time)
		}
		msg.Ack()
	}
	return n, nil
}
