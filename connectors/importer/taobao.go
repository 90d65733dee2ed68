package importer

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// ReadTaobao converts an Alibaba Tianchi "User Behavior Data from Taobao for
// Recommendation" CSV (no header; columns user_id, item_id, category_id,
// behavior, timestamp in Unix seconds) into events and calls fn with each
// one in input order.
//
// Line n (1-based) becomes event "taobao-<n>" of user user_id at the
// timestamp (UTC) about product {id: item_id, category: category_id} (the
// data set has no prices):
//
//   - pv -> product_viewed;
//   - cart -> product_added, quantity 1;
//   - fav -> product_added_to_wishlist;
//   - buy -> order_completed with order {id: "taobao-order-<n>"} (no
//     revenue) and products [the product, quantity 1].
//
// Times are converted as they are: the sample's dirty row with timestamp 15
// becomes an event at 1970-01-01T00:00:15Z. Every event states consent
// {analytics, personalization} (see the package documentation).
func ReadTaobao(r io.Reader, fn func(*pipeline.Event) error) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 5
	for n := 1; ; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("taobao: %w", err)
		}
		line, _ := cr.FieldPos(0)
		secs, err := strconv.ParseInt(rec[4], 10, 64)
		if err != nil {
			return fmt.Errorf("taobao: line %d: timestamp: %w", line, err)
		}
		if rec[0] == "" || rec[1] == "" {
			return fmt.Errorf("taobao: line %d: empty user_id or item_id", line)
		}
		rowID := strconv.Itoa(n)
		e := &pipeline.Event{
			EventID:   "taobao-" + rowID,
			UserID:    rec[0],
			Timestamp: time.Unix(secs, 0).UTC(),
			Consent:   consent(),
			Product:   pipeline.Product{ID: rec[1], Category: rec[2]},
		}
		switch behavior := rec[3]; behavior {
		case "pv":
			e.Type = "product_viewed"
		case "cart":
			e.Type = "product_added"
			e.Product.Quantity = 1
		case "fav":
			e.Type = "product_added_to_wishlist"
		case "buy":
			e.Type = "order_completed"
			e.Order.ID = "taobao-order-" + rowID
			item := e.Product
			item.Quantity = 1
			e.Products = []pipeline.Product{item}
			e.Product = pipeline.Product{}
		default:
			return fmt.Errorf("taobao: line %d: unknown behavior %q", line, behavior)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}
