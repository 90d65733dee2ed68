package pipeline

import (
	"fmt"
	"strconv"
	"strings"
)

// FieldFunc reads one field of an event as a string, for group_by. ok is
// false when the event has no value there (absent or empty).
type FieldFunc func(e *Event) (value string, ok bool)

// propertiesPrefix starts the paths of free-form properties.
const propertiesPrefix = "properties."

// stringFields are the string paths CompileField knows, besides
// properties.<name>.
var stringFields = map[string]func(e *Event) string{
	"type":             func(e *Event) string { return e.Type },
	"key":              func(e *Event) string { return e.Key() },
	"user_id":          func(e *Event) string { return e.UserID },
	"anonymous_id":     func(e *Event) string { return e.AnonymousID },
	"event_id":         func(e *Event) string { return e.EventID },
	"product.id":       func(e *Event) string { return e.Product.ID },
	"product.sku":      func(e *Event) string { return e.Product.SKU },
	"product.category": func(e *Event) string { return e.Product.Category },
	"product.brand":    func(e *Event) string { return e.Product.Brand },
	"product.currency": func(e *Event) string { return e.Product.Currency },
	"order.id":         func(e *Event) string { return e.Order.ID },
	"search.query":     func(e *Event) string { return e.Search.Query },
	"context.channel":  func(e *Event) string { return e.Context.Channel },
	"context.locale":   func(e *Event) string { return e.Context.Locale },
	"context.page.url": func(e *Event) string { return e.Context.Page.URL },
}

// stringFieldNames lists the paths of stringFields in documentation order.
var stringFieldNames = []string{
	"type", "key", "user_id", "anonymous_id", "event_id",
	"product.id", "product.sku", "product.category", "product.brand", "product.currency",
	"order.id", "search.query", "context.channel", "context.locale", "context.page.url",
}

// CompileField returns the reader of the event field at path, for group_by.
// The paths are type, key (user_id, else anonymous_id), user_id,
// anonymous_id, event_id, product.id, product.sku, product.category,
// product.brand, product.currency, order.id, search.query, context.channel,
// context.locale, context.page.url and properties.<name>. An empty string
// reads as absent. A property reads as its string, its number formatted
// with strconv 'g' (shortest), or its bool; any other value (object, array,
// null) reads as absent. An unknown path is an error that lists the valid
// ones.
func CompileField(path string) (FieldFunc, error) {
	if get, ok := stringFields[path]; ok {
		return func(e *Event) (string, bool) {
			v := get(e)
			return v, v != ""
		}, nil
	}
	if name, ok := propertyName(path); ok {
		return func(e *Event) (string, bool) {
			return propertyString(e.Properties[name])
		}, nil
	}
	return nil, fmt.Errorf("unknown field %q: valid fields are %s, %s<name>",
		path, strings.Join(stringFieldNames, ", "), propertiesPrefix)
}

// propertyName returns the property name of a properties.<name> path.
func propertyName(path string) (string, bool) {
	name, ok := strings.CutPrefix(path, propertiesPrefix)
	return name, ok && name != ""
}

// propertyString formats a property value for grouping.
func propertyString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != ""
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32), true
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// numberFieldNames lists the paths CompileNumber knows, besides
// properties.<name>.
var numberFieldNames = []string{"product.price", "product.quantity", "order.revenue", "search.results"}

// CompileNumber returns the reader of the numeric event field at path, for
// sum aggregations. The paths are product.price and product.quantity
// (present when the event has a product id), order.revenue (present when it
// has an order id), search.results (present when it has a search query) and
// properties.<name> (present when the property is a number). An unknown
// path is an error that lists the valid ones.
func CompileNumber(path string) (func(e *Event) (float64, bool), error) {
	switch path {
	case "product.price":
		return func(e *Event) (float64, bool) { return e.Product.Price, e.Product.ID != "" }, nil
	case "product.quantity":
		return func(e *Event) (float64, bool) { return float64(e.Product.Quantity), e.Product.ID != "" }, nil
	case "order.revenue":
		return func(e *Event) (float64, bool) { return e.Order.Revenue, e.Order.ID != "" }, nil
	case "search.results":
		return func(e *Event) (float64, bool) { return float64(e.Search.Results), e.Search.Query != "" }, nil
	}
	if name, ok := propertyName(path); ok {
		return func(e *Event) (float64, bool) {
			switch v := e.Properties[name].(type) {
			case float64:
				return v, true
			case float32:
				return float64(v), true
			case int:
				return float64(v), true
			case int64:
				return float64(v), true
			}
			return 0, false
		}, nil
	}
	return nil, fmt.Errorf("unknown numeric field %q: valid fields are %s, %s<name>",
		path, strings.Join(numberFieldNames, ", "), propertiesPrefix)
}
