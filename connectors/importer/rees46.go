package importer

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// rees46Columns are the columns of a REES46 CSV, found by their header
// names.
var rees46Columns = []string{
	"event_time", "event_type", "product_id", "category_id", "category_code",
	"brand", "price", "user_id", "user_session",
}

// ReadREES46 converts a REES46 "eCommerce behavior data from multi category
// store" CSV (with its header row; columns found by name) into events and
// calls fn with each one in input order.
//
// Row n (1-based, the header not counted) becomes event "rees46-<n>" of user
// user_id at event_time (UTC) about product {id: product_id, category:
// category_code, or category_id when the code is empty, brand, price}:
//
//   - view -> product_viewed;
//   - cart -> product_added, quantity 1;
//   - remove_from_cart -> product_removed, quantity 1;
//   - purchase -> order_completed with order {id: "rees46-order-<n>",
//     revenue: price} and products [the product, quantity 1] (the data set
//     has one row per purchased product and no order id).
//
// properties.user_session keeps the shop's own session id (when not empty)
// and properties.category_id the numeric category. Every event states
// consent {analytics, personalization} (see the package documentation).
func ReadREES46(r io.Reader, fn func(*pipeline.Event) error) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return errors.New("rees46: empty input, want a header row")
	}
	if err != nil {
		return fmt.Errorf("rees46: header: %w", err)
	}
	idx := make([]int, len(rees46Columns))
	for i, name := range rees46Columns {
		idx[i] = slices.Index(header, name)
		if idx[i] < 0 {
			return fmt.Errorf("rees46: header has no %q column (columns: %s)", name, strings.Join(header, ","))
		}
	}
	const (
		colTime = iota
		colType
		colProduct
		colCategoryID
		colCategoryCode
		colBrand
		colPrice
		colUser
		colSession
	)
	for n := 1; ; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("rees46: %w", err)
		}
		line, _ := cr.FieldPos(0)
		col := func(c int) string { return rec[idx[c]] }
		at, err := parseREES46Time(col(colTime))
		if err != nil {
			return fmt.Errorf("rees46: line %d: event_time: %w", line, err)
		}
		price, err := strconv.ParseFloat(col(colPrice), 64)
		if err != nil {
			return fmt.Errorf("rees46: line %d: price: %w", line, err)
		}
		if col(colProduct) == "" || col(colUser) == "" {
			return fmt.Errorf("rees46: line %d: empty product_id or user_id", line)
		}
		rowID := strconv.Itoa(n)
		e := &pipeline.Event{
			EventID:   "rees46-" + rowID,
			UserID:    col(colUser),
			Timestamp: at,
			Consent:   consent(),
			Product: pipeline.Product{
				ID:       col(colProduct),
				Category: col(colCategoryCode),
				Brand:    col(colBrand),
				Price:    price,
			},
			Properties: map[string]any{"category_id": col(colCategoryID)},
		}
		if e.Product.Category == "" {
			e.Product.Category = col(colCategoryID)
		}
		if s := col(colSession); s != "" {
			e.Properties["user_session"] = s
		}
		switch typ := col(colType); typ {
		case "view":
			e.Type = "product_viewed"
		case "cart":
			e.Type = "product_added"
			e.Product.Quantity = 1
		case "remove_from_cart":
			e.Type = "product_removed"
			e.Product.Quantity = 1
		case "purchase":
			e.Type = "order_completed"
			e.Order = pipeline.Order{ID: "rees46-order-" + rowID, Revenue: price}
			item := e.Product
			item.Quantity = 1
			e.Products = []pipeline.Product{item}
			e.Product = pipeline.Product{}
		default:
			return fmt.Errorf("rees46: line %d: unknown event_type %q", line, typ)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// parseREES46Time reads "2019-10-01 00:00:00 UTC".
func parseREES46Time(s string) (time.Time, error) {
	clock, ok := strings.CutSuffix(s, " UTC")
	if !ok {
		return time.Time{}, fmt.Errorf("%q: want YYYY-MM-DD HH:MM:SS UTC", s)
	}
	t, err := time.Parse(time.DateTime, clock)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want YYYY-MM-DD HH:MM:SS UTC", s)
	}
	return t, nil
}
