// Package importer converts public retail clickstream data sets into Sluice
// events (DESIGN §2), so that tests, examples and benchmarks run on data
// nobody on this project wrote. `sluice import --format FORMAT FILE` writes
// the events as JSONL.
//
// Formats:
//
//   - rees46 (ReadREES46): the REES46 "eCommerce behavior data from multi
//     category store" CSV (Kaggle), with its header row.
//   - taobao (ReadTaobao): the Alibaba Tianchi "User Behavior Data from
//     Taobao" CSV, without header.
//   - otto (ReadOTTO): the OTTO recsys-dataset JSONL, one session a line.
//
// The behaviours map to the Sluice vocabulary: view, pv and clicks ->
// product_viewed; cart and carts -> product_added (quantity 1);
// remove_from_cart -> product_removed (quantity 1); purchase, buy and orders
// -> order_completed with one product; fav -> product_added_to_wishlist.
// Event ids and order ids are derived from the position of the row in the
// input, so converting the same file twice gives the same events.
//
// Conversion is faithful: every row becomes one event, in input order, with
// the time the row states, even an absurd one (the Taobao sample's row with
// timestamp 15, 1970-01-01T00:00:15Z); the pipeline decides what a 1970
// event is (late, or a session of its own). A row the converter cannot read
// (a wrong column count, an unknown behaviour, a malformed number or time)
// stops the conversion with an error naming the line: it means the input is
// not in the format, and guessing would corrupt the data set silently.
//
// Consent: the public data sets carry no consent information. They are
// published for research on the assumption that their subjects consented,
// so every imported event states consent {analytics: true,
// personalization: true}; a pipeline with a consent_filter on those
// purposes passes them all. Do not import real customer data this way.
package importer

import (
	"fmt"
	"io"
	"slices"

	"github.com/sluicehq/sluice/pipeline"
)

// The formats Read knows.
const (
	FormatREES46 = "rees46"
	FormatTaobao = "taobao"
	FormatOTTO   = "otto"
)

// readers maps each format to its converter.
var readers = map[string]func(io.Reader, func(*pipeline.Event) error) error{
	FormatREES46: ReadREES46,
	FormatTaobao: ReadTaobao,
	FormatOTTO:   ReadOTTO,
}

// Formats returns the names of the formats Read knows, sorted.
func Formats() []string {
	names := make([]string, 0, len(readers))
	for name := range readers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Read converts r, in the named format, into events and calls fn with each
// one in input order. fn may keep the event: each call gets a new one. Read
// stops at, and returns, the first error of the input or of fn.
func Read(format string, r io.Reader, fn func(*pipeline.Event) error) error {
	read, ok := readers[format]
	if !ok {
		return fmt.Errorf("importer: unknown format %q (want one of %v)", format, Formats())
	}
	return read(r, fn)
}

// consent returns the consent every imported event states (see the package
// documentation). Each event gets its own map.
func consent() map[string]bool {
	return map[string]bool{"analytics": true, "personalization": true}
}
