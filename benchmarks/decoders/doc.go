// Package decoders compares JSON decoders on a realistic retail event, to
// justify the decoder pipeline.EventDecoder uses (fastjson with a hand-written
// mapping). It is a separate module so that the peers it measures
// (goccy/go-json) stay out of Sluice's own dependencies.
//
//	cd benchmarks/decoders && go test -bench . -benchmem
package decoders
