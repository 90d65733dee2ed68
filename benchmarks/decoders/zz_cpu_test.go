package decoders

import (
	"encoding/json"
	"fmt"
	"runtime"
	"syscall"
	"testing"

	gojson "github.com/goccy/go-json"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/valyala/fastjson"
)

func threadCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
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
		if v < best {
			best = v
		}
	}
	return best
}

func TestZZCPU(t *testing.T) {
	data := []byte(event)
	var p fastjson.Parser
	var d pipeline.EventDecoder
	var e pipeline.Event
	n := 200000
	fmt.Printf("fastjson-parse %.0f ns\n", cpuPerOp(n, func() { p.ParseBytes(data) }))
	fmt.Printf("sluice        %.0f ns\n", cpuPerOp(n, func() { d.Decode(data, &e) }))
	var fd fastjsonDecoder
	fmt.Printf("fj-mapping    %.0f ns\n", cpuPerOp(n, func() { fd.decode(data, &e) }))
	fmt.Printf("goccy         %.0f ns\n", cpuPerOp(n/2, func() { var w wireEvent; gojson.Unmarshal(data, &w) }))
	fmt.Printf("stdlib        %.0f ns\n", cpuPerOp(n/8, func() { var w wireEvent; json.Unmarshal(data, &w) }))
}
