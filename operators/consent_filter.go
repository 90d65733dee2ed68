package operators

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/state"
)

// maxConsentPurposes bounds the purposes of a consent filter: the state of a
// key keeps one bit per purpose.
const maxConsentPurposes = 8

// ConsentFilterConfig configures a consent filter.
type ConsentFilterConfig struct {
	// Purposes are the consent purposes (keys of an event's `consent`
	// object, such as analytics or personalization) that must all be
	// granted for a key's events to pass. At least one, at most 8, no
	// duplicates. Purposes not listed are ignored.
	Purposes []string `yaml:"purposes"`
}

// Validate checks the config.
func (c ConsentFilterConfig) Validate() error {
	if len(c.Purposes) == 0 {
		return errors.New("purposes: at least one purpose is required")
	}
	if len(c.Purposes) > maxConsentPurposes {
		return fmt.Errorf("purposes: %d purposes, at most %d", len(c.Purposes), maxConsentPurposes)
	}
	for i, p := range c.Purposes {
		if p == "" {
			return fmt.Errorf("purposes[%d]: empty purpose", i)
		}
		for _, q := range c.Purposes[:i] {
			if p == q {
				return fmt.Errorf("purposes[%d]: %q listed twice", i, p)
			}
		}
	}
	return nil
}

func init() {
	pipeline.RegisterOperator("consent_filter", func(id string, cfg ConsentFilterConfig) (pipeline.Factory, error) {
		purposes := append([]string(nil), cfg.Purposes...)
		return func() pipeline.Operator { return &consentFilter{purposes: purposes} }, nil
	})
}

// Reasons a consent filter drops an event, indexes of consentFilter.dropped.
const (
	// dropNoConsent: the key has no consent on record for any configured
	// purpose.
	dropNoConsent = iota
	// dropNotGranted: a configured purpose is denied, or was never stated.
	dropNotGranted
	// dropWithdrawn: the event withdrew a configured purpose.
	dropWithdrawn
	// dropErasure: the event is an erasure_requested.
	dropErasure
	numDropReasons
)

// dropReasonNames names the drop reasons, by index.
var dropReasonNames = [numDropReasons]string{"no_consent", "not_granted", "consent_withdrawn", "erasure_requested"}

// consentFilter enforces consent before any stateful operator (DESIGN §7).
//
// It keeps, per key, the latest consent statement of each configured
// purpose: the `consent` object of any event (a consent_updated event
// carries it there too) states granted (true) or denied (false) for the
// purposes it names and leaves the others as they were. "Latest" is by
// event time: a statement older than the one on record for that purpose
// (an out-of-order event) does not replace it; at equal times the one
// processed last wins. Purposes not configured are not kept.
//
// An event passes on, unchanged, only if every configured purpose is
// granted for its key once the event's own statement is applied: an event
// that carries a grant passes on that grant, and an event that carries a
// denial of a configured purpose is dropped. (So an out-of-order event,
// whose statement is older than the one on record, passes only if both its
// own statement and the record grant.) Otherwise it is dropped, with one of
// these reasons:
//
//   - no_consent: the key has no statement on record for any configured
//     purpose;
//   - not_granted: some configured purpose is denied or was never stated;
//   - consent_withdrawn: the event withdrew a configured purpose (see
//     below);
//   - erasure_requested: the event is an erasure_requested.
//
// A withdrawal is a statement that turns a configured purpose from granted
// to denied. It, and any erasure_requested event (whatever the consent on
// record), makes the filter emit an `erasure` control record {key, reason}
// with reason "consent_withdrawn:<purpose>[,<purpose>...]" (purposes in
// config order) or "erasure_requested". The runtime then deletes every state
// entry and timer of the key in the partition, the filter's own consent
// record included, so the key has no consent on record afterwards and its
// events are dropped until it grants again; the record flows to the
// operators downstream and to the sinks as a tombstone. The events that
// cause an erasure are themselves dropped, so nothing downstream rebuilds
// state for the key from them.
//
// The filter has no timers and never treats an event as late: it passes or
// drops each event by the consent on record when the event is processed;
// the operators downstream decide about lateness. Keys are the event key
// (user_id, else anonymous_id), so an anonymous visitor and the user it
// identifies as have separate consent.
//
// State: one small binary value per key (two bitsets and the event time of
// each stated purpose), 2 bytes plus about 9 per stated purpose. Purposes
// are stored by their position in the config: a new purpose may be
// appended to the list, but reordering or removing purposes misreads the
// consent on record.
//
// Dropped events are counted per reason in the instance (dropped); the
// engine's metrics (a later issue) publish them. They are never written
// anywhere: a dropped event may belong to someone who did not consent.
type consentFilter struct {
	purposes []string
	all      uint8
	consent  *state.Value[*consentState]
	dropped  [numDropReasons]int64
}

// consentState is the consent on record for a key: bit i of known is set
// when purpose i has a statement, bit i of granted when that statement is
// a grant, and at[i] is the statement's event time (Unix nanos). The table
// holds a pointer, so that reading it copies nothing and a statement
// updates it in place.
type consentState struct {
	known, granted uint8
	at             [maxConsentPurposes]int64
}

// EventFields implements pipeline.EventFieldsReader: the filter reads
// no optional field and forwards events.
func (c *consentFilter) EventFields() (pipeline.EventFields, bool) { return 0, true }

func (c *consentFilter) Open(oc *pipeline.OpenContext) error {
	c.all = uint8(1<<len(c.purposes) - 1)
	c.consent = pipeline.NewValue(oc, "consent", state.Codec[*consentState](consentCodec{}))
	return nil
}

func (c *consentFilter) OnEvent(ctx *pipeline.Context, e *pipeline.Event) error {
	key := ctx.Key()
	if e.Type == "erasure_requested" {
		c.dropped[dropErasure]++
		ctx.Erase("erasure_requested")
		return nil
	}
	st, _, err := c.consent.Get(key)
	if err != nil {
		return fmt.Errorf("consent_filter: read consent of the key: %w", err)
	}
	deniedHere := false
	if len(e.Consent) > 0 {
		t := e.Timestamp.UnixNano()
		var withdrawn uint8
		changed := false
		for i, p := range c.purposes {
			g, ok := e.Consent[p]
			if !ok {
				continue
			}
			deniedHere = deniedHere || !g
			bit := uint8(1) << i
			if st == nil {
				st = &consentState{}
			} else if st.known&bit != 0 {
				if t < st.at[i] {
					continue // older than the statement on record
				}
				was := st.granted&bit != 0
				if was && !g {
					withdrawn |= bit
				}
				if t == st.at[i] && was == g {
					continue // the statement on record, restated
				}
			}
			st.known |= bit
			if g {
				st.granted |= bit
			} else {
				st.granted &^= bit
			}
			st.at[i] = t
			changed = true
		}
		if changed {
			c.consent.Put(key, st)
		}
		if withdrawn != 0 {
			c.dropped[dropWithdrawn]++
			ctx.Erase(c.withdrawalReason(withdrawn))
			return nil
		}
	}
	switch {
	case st == nil || st.known == 0:
		c.dropped[dropNoConsent]++
	case st.granted == c.all && !deniedHere:
		ctx.Forward(e)
	default:
		c.dropped[dropNotGranted]++
	}
	return nil
}

// withdrawalReason names the withdrawn purposes of an erasure.
func (c *consentFilter) withdrawalReason(withdrawn uint8) string {
	var b strings.Builder
	b.WriteString("consent_withdrawn:")
	for i, p := range c.purposes {
		if withdrawn&(1<<i) == 0 {
			continue
		}
		if b.Len() > len("consent_withdrawn:") {
			b.WriteByte(',')
		}
		b.WriteString(p)
	}
	return b.String()
}

// Dropped returns the number of events this instance dropped, by reason
// (no_consent, not_granted, consent_withdrawn, erasure_requested).
func (c *consentFilter) Dropped() map[string]int64 {
	m := make(map[string]int64, numDropReasons)
	for i, n := range c.dropped {
		m[dropReasonNames[i]] = n
	}
	return m
}

// consentCodec encodes a consentState as the known and granted bytes, then
// the zig-zag varint event time of each known purpose in purpose order.
type consentCodec struct{}

func (consentCodec) Append(dst []byte, s *consentState) []byte {
	dst = append(dst, s.known, s.granted)
	for i := range maxConsentPurposes {
		if s.known&(1<<i) != 0 {
			dst = binary.AppendVarint(dst, s.at[i])
		}
	}
	return dst
}

func (consentCodec) Decode(src []byte) (*consentState, error) {
	if len(src) < 2 {
		return nil, fmt.Errorf("consent state: %d bytes, want at least 2", len(src))
	}
	s := &consentState{known: src[0], granted: src[1]}
	if s.granted&^s.known != 0 {
		return nil, errors.New("consent state: granted purpose without a statement")
	}
	src = src[2:]
	for i := range maxConsentPurposes {
		if s.known&(1<<i) == 0 {
			continue
		}
		v, n := binary.Varint(src)
		if n <= 0 {
			return nil, fmt.Errorf("consent state: malformed time of purpose %d", i)
		}
		s.at[i], src = v, src[n:]
	}
	if len(src) != 0 {
		return nil, fmt.Errorf("consent state: %d trailing bytes (%d purposes)", len(src), bits.OnesCount8(s.known))
	}
	return s, nil
}
