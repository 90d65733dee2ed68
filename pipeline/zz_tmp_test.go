package pipeline

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fastjson"
)

func threadCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(1, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func cpuPerOp(n int, f func()) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	best := 1e18
	for r := 0; r < 7; r++ {
		t0 := threadCPU()
		for i := 0; i < n; i++ {
			f()
		}
		v := float64(threadCPU()-t0) / float64(n)
		best = min(best, v)
	}
	return best
}

func TestZZCPU(t *testing.T) {
	data := []byte(benchEvent)
	var p fastjson.Parser
	var d EventDecoder
	var e Event
	m := eventMapper{data: data}
	n := 100000
	fmt.Printf("fastjson-parse %.0f ns\n", cpuPerOp(n, func() { p.ParseBytes(data) }))
	fmt.Printf("skip           %.0f ns\n", cpuPerOp(n, func() { m.pos = 0; m.skip(0) }))
	fmt.Printf("decode         %.0f ns\n", cpuPerOp(n, func() { d.Decode(data, &e) }))
	buf := make([]byte, 0, 1024)
	fmt.Printf("append-event   %.0f ns\n", cpuPerOp(n, func() { buf = AppendEventJSON(buf[:0], &e) }))
}

func TestZZProf(t *testing.T) {
	data := []byte(benchEvent)
	var d EventDecoder
	var e Event
	for i := 0; i < 2000000; i++ {
		d.Decode(data, &e)
	}
}

var sinkMap map[string]bool
var sinkStr string
var sinkEv = new(Event)

func TestZZParts(t *testing.T) {
	n := 200000
	ts := []byte("2026-11-28T10:00:00.123Z")
	var tt time.Time
	fmt.Printf("time           %.0f ns\n", cpuPerOp(n, func() { tt.UnmarshalText(ts) }))
	fmt.Printf("map3           %.0f ns\n", cpuPerOp(n, func() { m := make(map[string]bool, 3); m["analytics"] = true; m["marketing"] = true; m["personalization"] = false; sinkMap = m }))
	arena := make([]byte, 150)
	fmt.Printf("str150         %.0f ns\n", cpuPerOp(n, func() { sinkStr = string(arena) }))
	fmt.Printf("zero-event     %.0f ns\n", cpuPerOp(n, func() { *sinkEv = Event{} }))
	data := []byte(benchEvent)
	var d EventDecoder
	d.Decode(data, sinkEv)
	fmt.Printf("validate       %.0f ns\n", cpuPerOp(n, func() { validateEvent(sinkEv, true) }))
	fmt.Printf("filters        %.0f ns\n", cpuPerOp(n, func() { sinkEv.Filters = append([]Filter(nil), Filter{}) }))
}

func TestZZEvent(t *testing.T) {
	data := []byte(benchEvent)
	n := 200000
	scratch := make([]byte, 0, len(data))
	var tmp []byte
	var cons []consentItem
	e := new(Event)
	fmt.Printf("event-only     %.0f ns\n", cpuPerOp(n, func() {
		*e = Event{}
		m := eventMapper{data: data, e: e, arena: scratch[:0], tmp: tmp[:0], consent: cons[:0]}
		m.event()
		tmp = m.tmp
		cons = m.consent
	}))
	fmt.Printf("event+finish   %.0f ns\n", cpuPerOp(n, func() {
		*e = Event{}
		m := eventMapper{data: data, e: e, arena: scratch[:0], tmp: tmp[:0], consent: cons[:0]}
		m.event()
		m.finish()
		tmp = m.tmp
		cons = m.consent
	}))
	var stack Event
	fmt.Printf("event-stackev  %.0f ns\n", cpuPerOp(n, func() {
		stack = Event{}
		m := eventMapper{data: data, e: &stack, arena: scratch[:0], tmp: tmp[:0], consent: cons[:0]}
		m.event()
		tmp = m.tmp
		cons = m.consent
	}))
}
