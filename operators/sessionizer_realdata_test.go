package operators

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/connectors/importer"
	"github.com/sluicehq/sluice/pipeline"
)

// rees46Sample is the REES46 sample (4,999 real events of 2019-10-01,
// 00:00-02:28 UTC), kept with the importer's test data.
const rees46Sample = "../connectors/importer/testdata/rees46-2019-oct-head5000.csv"

// TestSessionizerREES46 runs a consent filter and a 30-minute sessionizer
// over the REES46 sample, checks the sessions against a sessionization
// computed independently here, and compares them with the shop's own
// user_session ids.
//
// Measured (for the README): of the shop's 1,898 sessions, 1,639 (86.4%)
// are reproduced exactly (the same set of events); of our 1,753 sessions,
// 1,639 (93.5%) equal a shop session. Nearly all the difference is the
// shop starting a new session id within a visit: 112 of our sessions hold
// events of several shop sessions (a new id minutes after the last event);
// the other 2 are the halves of the one shop session that keeps its id
// across a gap of 30 minutes or more.
func TestSessionizerREES46(t *testing.T) {
	f, err := os.Open(rees46Sample)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []pipeline.Event
	if err := importer.ReadREES46(f, func(e *pipeline.Event) error {
		events = append(events, *e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The sample is in time order already; keep input order among equal
	// times.
	sort.SliceStable(events, func(i, j int) bool { return events[i].Timestamp.Before(events[j].Timestamp) })

	spec := fmt.Sprintf(`version: 1
name: rees46
source: {type: none}
partitions: 4
state: {dir: %q}
operators:
  - id: consent
    type: consent_filter
    with: {purposes: [analytics]}
  - id: sessions
    type: sessionizer
    inputs: [consent]
    with: {gap: 30m}
`, t.TempDir())
	h := harnessOfSpec(t, spec, "rees46.yaml")
	h.Process(events...)
	h.EndOfInput()
	if dead := h.DeadLetters(); len(dead) > 0 {
		t.Fatalf("%d dead letters, first: %s", len(dead), dead[0].Reason)
	}

	// Our sessions, as the sessionizer reported them: a session of a key
	// holds the key's events from its start to its end (a key's sessions
	// never overlap).
	type span struct {
		key        string
		start, end time.Time
		count      int
	}
	var ours []span
	started := map[string]bool{}
	for _, r := range h.Records() {
		switch r.Type {
		case RecordSessionStarted:
			started[r.Key] = true
		case RecordSessionEnded:
			s := r.Data.(*EndedSession).Summary()
			ours = append(ours, span{key: r.Key, start: s.Start, end: s.End, count: s.EventCount})
			if want := r.Key + ":" + fmt.Sprint(s.Start.UnixMilli()); s.SessionID != want {
				t.Errorf("session id %s, want %s (events come in order)", s.SessionID, want)
			}
		}
	}
	byKey := map[string][]int{} // key -> indexes into events
	for i := range events {
		byKey[events[i].Key()] = append(byKey[events[i].Key()], i)
	}
	ourSets := make([]string, len(ours))
	for i, s := range ours {
		var ids []string
		for _, j := range byKey[s.key] {
			if at := events[j].Timestamp; !at.Before(s.start) && !at.After(s.end) {
				ids = append(ids, events[j].EventID)
			}
		}
		if len(ids) != s.count {
			t.Fatalf("session %s %v-%v: event_count %d, but %d events in its span", s.key, s.start, s.end, s.count, len(ids))
		}
		ourSets[i] = setKey(ids)
	}

	// The same sessions computed here, directly from the definition.
	var want []string
	for _, idx := range byKey {
		var cur []string
		for n, j := range idx {
			if n > 0 && events[j].Timestamp.Sub(events[idx[n-1]].Timestamp) >= 30*time.Minute {
				want = append(want, setKey(cur))
				cur = nil
			}
			cur = append(cur, events[j].EventID)
		}
		want = append(want, setKey(cur))
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(ourSets))
	if !slices.Equal(got, want) {
		t.Fatalf("the sessionizer found %d sessions, the definition gives %d (or they differ)", len(got), len(want))
	}
	if len(started) != len(byKey) {
		t.Errorf("session_started for %d keys, want all %d", len(started), len(byKey))
	}

	// The shop's sessions.
	shop := map[string][]string{}
	for i := range events {
		s := events[i].Properties["user_session"].(string)
		shop[s] = append(shop[s], events[i].EventID)
	}
	shopSets := map[string]bool{}
	for _, ids := range shop {
		shopSets[setKey(ids)] = true
	}
	same := 0
	for _, s := range ourSets {
		if shopSets[s] {
			same++
		}
	}
	reproduced := float64(same) / float64(len(shopSets))
	precise := float64(same) / float64(len(ourSets))
	t.Logf("REES46 sample, gap 30m: %d events, %d users; shop sessions %d, ours %d, identical %d",
		len(events), len(byKey), len(shopSets), len(ourSets), same)
	t.Logf("shop sessions reproduced exactly: %.1f%%; our sessions equal to a shop session: %.1f%%",
		100*reproduced, 100*precise)
	// Lower bounds under the measured 86.4% and 93.5%: a regression in the
	// sessionizer or the importer shows here.
	if reproduced < 0.80 || precise < 0.90 {
		t.Errorf("shares fell: reproduced %.3f (want >= 0.80), precise %.3f (want >= 0.90)", reproduced, precise)
	}
}

// setKey returns a canonical string for a set of event ids.
func setKey(ids []string) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return strings.Join(ids, ",")
}
