// Package benchmarks is Sluice's benchmark harness, behind `sluice bench`
// and the Go benchmarks of this package:
//
//   - Engine: pre-decoded events from memory through a keyed counter
//     (key_counter) with 8 partitions, Pebble state and a checkpoint every
//     second, into a sink that counts the records and measures their
//     latency. It measures the runtime alone.
//   - EndToEnd: the same pipeline from a JSONL file to a JSONL file, beside
//     the limit loop (decode every line, encode one record for it, write it,
//     on all cores, nothing else), which bounds what any pipeline over the
//     file could do on the machine.
//   - Retail (EndToEnd.RunRetail): the five operators of
//     examples/retail.yaml over the same file into a JSONL file, and the
//     size of the state they leave.
//
// Each run reports events/s, heap allocations per event and the p50/p99
// event-to-output latency (an HdrHistogram). Latency at full speed is
// mostly queueing: the source runs as far ahead as the runtime lets it.
// The engine benchmark also runs at a fixed rate, which gives the latency
// an event sees when the pipeline keeps up.
//
//	go run ./cmd/sluice bench all
//	go test ./benchmarks -run '^$' -bench . -benchtime 2000000x
//
// The decoder comparison behind pipeline.EventDecoder is the separate
// module in benchmarks/decoders.
package benchmarks
