// Package decoders compares JSON decoders on a realistic retail event (the
// DESIGN §2 example), to justify the one pipeline.EventDecoder uses: a
// single-pass decoder written for Event. The peers: encoding/json and
// goccy/go-json decode into a tagged mirror of Event; valyala/fastjson is
// measured alone (parse only) and with a hand mapping onto Event. None of
// them validates the event contract as pipeline.EventDecoder does.
//
// It is a separate module so that the peers stay out of Sluice's own
// dependencies:
//
//	cd benchmarks/decoders && go test -bench . -benchmem
//
// It uses Sluice from this tree (a replace directive), so after Sluice's
// go.mod changes, run go mod tidy here first.
package decoders
