package importer

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// ottoSession is one line of the OTTO recsys-dataset JSONL.
type ottoSession struct {
	Session *int64 `json:"session"`
	Events  []struct {
		AID  *int64  `json:"aid"`
		TS   *int64  `json:"ts"`
		Type *string `json:"type"`
	} `json:"events"`
}

// ReadOTTO converts the OTTO recsys-dataset JSONL (one session a line:
// {"session":S,"events":[{"aid":A,"ts":<Unix ms>,"type":"clicks"},...]})
// into events and calls fn with each one in input order.
//
// The i-th event (0-based) of session S becomes event "otto-S-i" of user
// "otto-S" at ts (UTC) about product {id: aid} (the data set has no
// categories or prices):
//
//   - clicks -> product_viewed;
//   - carts -> product_added, quantity 1;
//   - orders -> order_completed with order {id: "otto-S-order-i"} and
//     products [the product, quantity 1] (the data set has one entry per
//     ordered product).
//
// The data set's sessions are anonymous and have no user: each session is
// its own user, so its events share a key. Every event states consent
// {analytics, personalization} (see the package documentation).
func ReadOTTO(r io.Reader, fn func(*pipeline.Event) error) error {
	dec := json.NewDecoder(r)
	for n := 1; ; n++ {
		var s ottoSession
		if err := dec.Decode(&s); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("otto: session object %d: %w", n, err)
		}
		if s.Session == nil {
			return fmt.Errorf("otto: session object %d: missing \"session\"", n)
		}
		sid := strconv.FormatInt(*s.Session, 10)
		user := "otto-" + sid
		for i, se := range s.Events {
			if se.AID == nil || se.TS == nil || se.Type == nil {
				return fmt.Errorf(`otto: session %s: event %d: want "aid", "ts" and "type"`, sid, i)
			}
			id := user + "-" + strconv.Itoa(i)
			e := &pipeline.Event{
				EventID:   id,
				UserID:    user,
				Timestamp: time.UnixMilli(*se.TS).UTC(),
				Consent:   consent(),
				Product:   pipeline.Product{ID: strconv.FormatInt(*se.AID, 10)},
			}
			switch *se.Type {
			case "clicks":
				e.Type = "product_viewed"
			case "carts":
				e.Type = "product_added"
				e.Product.Quantity = 1
			case "orders":
				e.Type = "order_completed"
				e.Order.ID = user + "-order-" + strconv.Itoa(i)
				item := e.Product
				item.Quantity = 1
				e.Products = []pipeline.Product{item}
				e.Product = pipeline.Product{}
			default:
				return fmt.Errorf("otto: session %s: event %d: unknown type %q", sid, i, *se.Type)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}
