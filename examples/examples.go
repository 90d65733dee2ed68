// Package examples holds the example pipelines, embedded so that tests and
// benchmarks run them as they are written here.
package examples

import (
	_ "embed"
	"strings"
)

// Retail is examples/retail.yaml: the five retail operators over the
// synthetic generator.
//
//go:embed retail.yaml
var Retail string

// RetailKafka is examples/retail-kafka.yaml: the retail pipeline on Kafka.
//
//go:embed retail-kafka.yaml
var RetailKafka string

// Operators returns the `operators:` block of a spec written like the
// examples (top-level keys at column 0, the sinks after the operators), up
// to the `sinks:` line, for a test or benchmark that runs the example's
// operators between connectors of its own.
func Operators(spec string) string {
	_, rest, ok := strings.Cut(spec, "\noperators:\n")
	if !ok {
		return ""
	}
	block, _, _ := strings.Cut(rest, "\nsinks:")
	return "operators:\n" + block + "\n"
}
