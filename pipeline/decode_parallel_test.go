package pipeline

import (
	"bytes"
	"fmt"
	"reflect"
	"runtime"
	"testing"
)

// TestDecodeAllMatchesOneByOne decodes a large batch of raw events, bad
// ones, oversized ones, pre-decoded ones and ones at or below the committed
// offset on several goroutines, and checks every event and reason against
// decoding the batch one message at a time.
func TestDecodeAllMatchesOneByOne(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	const n = 3000
	batch := make([]Message, n)
	for i := range batch {
		m := &batch[i]
		m.Offset = int64(1000 + i)
		switch {
		case i%101 == 7:
			ev := decode(t, benchEvent)
			m.Event = &ev
		case i%37 == 5:
			m.Payload = []byte(fmt.Sprintf(`{"event_id":"e-%d","type":`, i))
		case i%500 == 11:
			m.Payload = append([]byte(`{"event_id":"`), bytes.Repeat([]byte("x"), MaxEventBytes)...)
		case i%53 == 3:
			m.Payload = []byte(fmt.Sprintf(`{"event_id":"e-%d","type":"product_viewed","user_id":"u-%d"}`, i, i%97))
		default:
			m.Payload = []byte(fmt.Sprintf(`{"event_id":"e-%d","type":"product_viewed","user_id":"u-%d","timestamp":"2026-11-28T10:%02d:%02d.%03dZ","consent":{"analytics":%v},"product":{"id":"p-%d","price":%d.5}}`,
				i, i%97, i/60%60, i%60, i%1000, i%3 != 0, i%211, i%90))
		}
	}
	ss := &splitState{committed: 1000 + 299}
	if !decodeAll(ss, batch) {
		t.Fatalf("a batch of %d was not decoded in parallel with GOMAXPROCS 4", n)
	}
	var dec EventDecoder
	var bad, good int
	for i := range batch {
		m := &batch[i]
		if m.Event != nil || m.Offset <= ss.committed {
			if ss.errs[i] != nil || !reflect.DeepEqual(ss.decoded[i], Event{}) {
				t.Errorf("message %d (pre-decoded or committed) was decoded: %v %+v", i, ss.errs[i], ss.decoded[i])
			}
			continue
		}
		var want Event
		werr := decodeMessage(&dec, m, &want)
		if fmt.Sprint(werr) != fmt.Sprint(ss.errs[i]) {
			t.Errorf("message %d: reason %v, want %v", i, ss.errs[i], werr)
		}
		if !reflect.DeepEqual(ss.decoded[i], want) {
			t.Errorf("message %d: %+v\nwant %+v", i, ss.decoded[i], want)
		}
		if werr != nil {
			bad++
		} else {
			good++
		}
	}
	if bad < 50 || good < 2000 {
		t.Errorf("%d bad and %d good raw events checked: the batch does not mix them as meant", bad, good)
	}

	small := batch[:2*minDecodeChunk-1]
	if decodeAll(ss, small) {
		t.Errorf("a batch of %d was decoded in parallel: chunks of at least %d", len(small), minDecodeChunk)
	}
	ev := decode(t, benchEvent)
	pre := make([]Message, 2*minDecodeChunk)
	for i := range pre {
		pre[i] = Message{Event: &ev, Offset: int64(5000 + i)}
	}
	if decodeAll(ss, pre) {
		t.Errorf("a batch of pre-decoded events went to the decoding goroutines")
	}
}
