package operators

import (
	"fmt"
	"strconv"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/state"
)

// KeyCounterConfig configures a key counter.
type KeyCounterConfig struct {
	// Match, when set, counts only the events for which this expression is
	// true; by default every event counts.
	Match string `yaml:"match"`
}

func init() {
	pipeline.RegisterOperator("key_counter", func(id string, cfg KeyCounterConfig) (pipeline.Factory, error) {
		var m *pipeline.Match
		if cfg.Match != "" {
			var err error
			if m, err = pipeline.CompileMatch(cfg.Match); err != nil {
				return nil, fmt.Errorf("key_counter %q: match: %w", id, err)
			}
		}
		return func() pipeline.Operator {
			kc := &keyCounter{}
			if m != nil {
				kc.matcher = m.NewMatcher()
			}
			return kc
		}, nil
	})
}

// keyCounter counts the events of each key and emits the running count:
// one `key_count` record {count} per counted event. It is the smallest
// stateful operator, and the one the engine benchmark runs.
type keyCounter struct {
	matcher *pipeline.Matcher
	counts  *state.Counter
}

// EventFields implements pipeline.EventFieldsReader: the counter reads
// no optional field and forwards no event.
func (k *keyCounter) EventFields() (pipeline.EventFields, bool) { return 0, false }

func (k *keyCounter) Open(oc *pipeline.OpenContext) error {
	k.counts = pipeline.NewCounter(oc, "count")
	return nil
}

func (k *keyCounter) OnEvent(ctx *pipeline.Context, e *pipeline.Event) error {
	if k.matcher != nil {
		ok, err := k.matcher.Match(e)
		if err != nil || !ok {
			return err
		}
	}
	n, err := k.counts.Add(ctx.Key(), 1)
	if err != nil {
		return err
	}
	ctx.Emit("key_count", keyCount(n))
	return nil
}

// keyCount is the payload of a key_count record.
type keyCount int64

// AppendJSON encodes {"count":n} without reflection.
func (n keyCount) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"count":`...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '}')
}
