package decoders

import (
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/valyala/fastjson"
)

// fastjsonDecoder is the straightforward fastjson path: a reused Parser and
// a hand mapping onto pipeline.Event, copying every string (the input
// buffer is reused). It checks JSON types only where mapping needs them and
// does none of the contract validation.
type fastjsonDecoder struct {
	p fastjson.Parser
}

func (d *fastjsonDecoder) decode(data []byte, e *pipeline.Event) error {
	*e = pipeline.Event{}
	v, err := d.p.ParseBytes(data)
	if err != nil {
		return err
	}
	o, err := v.Object()
	if err != nil {
		return err
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "event_id":
			e.EventID = str(v)
		case "type":
			e.Type = str(v)
		case "user_id":
			e.UserID = str(v)
		case "anonymous_id":
			e.AnonymousID = str(v)
		case "timestamp":
			e.Timestamp = tm(v)
		case "received_at":
			e.ReceivedAt = tm(v)
		case "context":
			c := &e.Context
			c.Page.URL = str(v.Get("page", "url"))
			c.Page.Referrer = str(v.Get("page", "referrer"))
			c.Page.Title = str(v.Get("page", "title"))
			c.Channel = str(v.Get("channel"))
			c.UserAgent = str(v.Get("user_agent"))
			c.Locale = str(v.Get("locale"))
			c.IP = str(v.Get("ip"))
		case "consent":
			if o, err := v.Object(); err == nil && o.Len() > 0 {
				e.Consent = make(map[string]bool, o.Len())
				o.Visit(func(k []byte, v *fastjson.Value) { e.Consent[string(k)] = v.GetBool() })
			}
		case "product":
			product(&e.Product, v)
		case "products":
			a := v.GetArray()
			if len(a) > 0 {
				e.Products = make([]pipeline.Product, len(a))
				for i, x := range a {
					product(&e.Products[i], x)
				}
			}
		case "order":
			e.Order.ID = str(v.Get("id"))
			e.Order.Revenue = v.GetFloat64("revenue")
			e.Order.Currency = str(v.Get("currency"))
		case "search":
			e.Search.Query = str(v.Get("query"))
			e.Search.Results = v.GetInt("results")
		case "filters":
			a := v.GetArray()
			if len(a) > 0 {
				e.Filters = make([]pipeline.Filter, len(a))
				for i, x := range a {
					e.Filters[i] = pipeline.Filter{Field: str(x.Get("field")), Op: str(x.Get("op")), Value: str(x.Get("value"))}
				}
			}
		}
	})
	return nil
}

func product(p *pipeline.Product, v *fastjson.Value) {
	p.ID = str(v.Get("id"))
	p.SKU = str(v.Get("sku"))
	p.Category = str(v.Get("category"))
	p.Brand = str(v.Get("brand"))
	p.Price = v.GetFloat64("price")
	p.Currency = str(v.Get("currency"))
	p.Quantity = v.GetInt("quantity")
}

func str(v *fastjson.Value) string {
	if v == nil {
		return ""
	}
	b, _ := v.StringBytes()
	return string(b)
}

func tm(v *fastjson.Value) time.Time {
	var t time.Time
	if v != nil {
		b, _ := v.StringBytes()
		_ = t.UnmarshalText(b)
	}
	return t
}
