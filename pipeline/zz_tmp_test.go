package pipeline

import (
	"testing"
	"encoding/json"
	"github.com/valyala/fastjson"
)

func BenchmarkTmpFastjsonParse(b *testing.B) {
	data := []byte(benchEvent)
	var p fastjson.Parser
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ParseBytes(data); err != nil {
			b.Fatal(err)
		}
	}
}
func BenchmarkTmpStdlibAny(b *testing.B) {
	data := []byte(benchEvent)
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			b.Fatal(err)
		}
	}
}
