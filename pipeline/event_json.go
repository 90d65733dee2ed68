package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// MaxIDLen is the longest event_id, user_id or anonymous_id, in bytes, that
// an event may carry. Ids are state keys; longer ones are rejected.
const MaxIDLen = 512

// productEventTypes are the event types that must carry a product.
var productEventTypes = map[string]bool{
	"product_viewed": true, "product_clicked": true, "product_added": true,
	"product_removed": true, "product_added_to_wishlist": true,
	"size_guide_opened": true, "reviews_read": true, "image_zoomed": true,
	"video_played": true, "review_submitted": true, "product_returned": true,
}

// cartOrderProductTypes are the product events that may carry their items
// in `products` instead of `product` (DESIGN §2: cart and order events).
var cartOrderProductTypes = map[string]bool{
	"product_added": true, "product_removed": true, "product_returned": true,
}

// internedTypes maps each vocabulary event type to itself, so that decoded
// events of those types share one string instead of referencing their buffer.
var internedTypes = func() map[string]string {
	m := make(map[string]string, len(categories))
	for t := range categories {
		m[t] = t
	}
	return m
}()

// internedPurposes are consent purposes common enough to share one string.
var internedPurposes = map[string]string{
	"analytics": "analytics", "personalization": "personalization",
	"marketing": "marketing", "advertising": "advertising",
	"functional": "functional", "necessary": "necessary",
}

// EventDecoder decodes and validates JSON events (DESIGN §2). It keeps
// buffers between calls, so it is meant to be reused; it is not safe for
// concurrent use: use one per goroutine.
type EventDecoder struct {
	p       fastjson.Parser
	scratch []byte        // the strings of the event being decoded
	num     []byte        // the text of the number being parsed
	consent []consentItem // the consent entries of the event being decoded
}

// consentItem is one consent entry, kept until the event's strings are final.
type consentItem struct {
	purpose string
	granted bool
}

// Decode resets *e and fills it from data, one JSON object, validating it
// against the event contract of DESIGN §2. The error, when not nil, is a
// short reason meant for the dead-letter sink; *e is then the zero Event.
//
// Decode never retains data: the caller may reuse it. The strings of one
// decoded event share a single allocation (event types of the vocabulary
// and common consent purposes share static strings; properties have their
// own); an operator that keeps a small part of many events for a long time
// may strings.Clone it.
//
// Unknown fields are ignored, so producers can add fields first. A JSON null
// is the same as an absent field, and an empty object or array is the same
// as an absent one. Numbers are parsed strictly (JSON grammar, finite
// float64; quantity and results must be integers). Strings that are not
// valid UTF-8 have each bad byte replaced by U+FFFD, as encoding/json does.
func (d *EventDecoder) Decode(data []byte, e *Event) error {
	*e = Event{}
	v, err := d.p.ParseBytes(data)
	if err != nil {
		return fmt.Errorf("not JSON: %s", strings.TrimPrefix(err.Error(), "cannot parse JSON: "))
	}
	if v.Type() != fastjson.TypeObject {
		return fmt.Errorf("not a JSON object: got %s", jsonTypeName(v))
	}
	o, _ := v.Object()
	// Decoded strings are never longer than the input, so the scratch
	// space never moves while the event is mapped.
	if cap(d.scratch) < len(data) {
		d.scratch = make([]byte, 0, len(data))
	}
	m := eventMapper{e: e, arena: d.scratch[:0], num: d.num[:0], consent: d.consent[:0]}
	o.Visit(m.topLevel)
	d.num = m.num
	if m.err == nil {
		m.finish()
		m.err = validateEvent(e)
	}
	clear(m.consent)
	d.consent = m.consent[:0]
	if m.err != nil {
		*e = Event{}
		return m.err
	}
	return nil
}

// eventMapper maps one parsed JSON object onto an Event. It records the
// first error and ignores everything after it.
//
// While mapping, the event's strings point into arena, the decoder's
// scratch space; finish copies the arena into one allocation and points
// the strings there.
type eventMapper struct {
	e       *Event
	arena   []byte
	err     error
	num     []byte
	consent []consentItem
}

// str returns b as a string in the arena, with invalid UTF-8 replaced.
func (m *eventMapper) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if !utf8.Valid(b) {
		return string(appendValidUTF8(nil, b)) // rare: owns its allocation
	}
	start := len(m.arena)
	if len(b) > cap(m.arena)-start {
		return string(b) // cannot happen: decoded strings fit the input
	}
	m.arena = append(m.arena, b...)
	return unsafe.String(&m.arena[start], len(b))
}

// appendValidUTF8 appends b with each invalid byte replaced by U+FFFD.
func appendValidUTF8(dst, b []byte) []byte {
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, b[:size]...)
		}
		b = b[size:]
	}
	return dst
}

// finish gives the event's strings their own allocation.
func (m *eventMapper) finish() {
	e := m.e
	if len(m.arena) > 0 {
		r := rebaser{lo: uintptr(unsafe.Pointer(&m.arena[0])), final: string(m.arena)}
		r.rebase(&e.EventID)
		r.rebase(&e.Type)
		r.rebase(&e.UserID)
		r.rebase(&e.AnonymousID)
		c := &e.Context
		r.rebase(&c.Page.URL)
		r.rebase(&c.Page.Referrer)
		r.rebase(&c.Page.Title)
		r.rebase(&c.Channel)
		r.rebase(&c.UserAgent)
		r.rebase(&c.Locale)
		r.rebase(&c.IP)
		r.product(&e.Product)
		for i := range e.Products {
			r.product(&e.Products[i])
		}
		r.rebase(&e.Order.ID)
		r.rebase(&e.Order.Currency)
		r.rebase(&e.Search.Query)
		for i := range e.Filters {
			f := &e.Filters[i]
			r.rebase(&f.Field)
			r.rebase(&f.Op)
			r.rebase(&f.Value)
		}
		for i := range m.consent {
			r.rebase(&m.consent[i].purpose)
		}
	}
	if len(m.consent) > 0 {
		e.Consent = make(map[string]bool, len(m.consent))
		for _, c := range m.consent {
			e.Consent[c.purpose] = c.granted
		}
	}
}

// rebaser moves strings from the arena starting at lo to final, a copy of
// it. Strings elsewhere (static or with their own allocation) stay.
type rebaser struct {
	lo    uintptr
	final string
}

func (r *rebaser) rebase(s *string) {
	if *s == "" {
		return
	}
	off := uintptr(unsafe.Pointer(unsafe.StringData(*s))) - r.lo
	if off < uintptr(len(r.final)) {
		*s = r.final[off : off+uintptr(len(*s))]
	}
}

func (r *rebaser) product(p *Product) {
	r.rebase(&p.ID)
	r.rebase(&p.SKU)
	r.rebase(&p.Category)
	r.rebase(&p.Brand)
	r.rebase(&p.Currency)
}

// fieldPath names a field for errors: base.name, or base[i].name when
// i >= 0. It is formatted only when an error needs it.
type fieldPath struct {
	base string
	i    int
	name string
}

// top names a top-level field, or a field of a nested object when name is
// a dotted path.
func top(name string) fieldPath { return fieldPath{i: -1, name: name} }

func (p fieldPath) String() string {
	s := p.base
	if p.i >= 0 {
		s += "[" + strconv.Itoa(p.i) + "]"
	}
	switch {
	case p.name == "":
	case s == "":
		s = p.name
	default:
		s += "." + p.name
	}
	return s
}

func (m *eventMapper) fail(path fieldPath, format string, args ...any) {
	if m.err == nil {
		m.err = fmt.Errorf("field %q: %s", path.String(), fmt.Sprintf(format, args...))
	}
}

func (m *eventMapper) wrongType(path fieldPath, want string, v *fastjson.Value) {
	m.fail(path, "want %s, got %s", want, jsonTypeName(v))
}

// string decodes a string field; null leaves it empty.
func (m *eventMapper) string(dst *string, path fieldPath, v *fastjson.Value) {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		*dst = m.str(b)
	case fastjson.TypeNull:
	default:
		m.wrongType(path, "string", v)
	}
}

// float decodes a number field; null leaves it zero.
func (m *eventMapper) float(dst *float64, path fieldPath, v *fastjson.Value) {
	switch v.Type() {
	case fastjson.TypeNumber:
		f, err := m.parseFloat(v)
		if err != "" {
			m.fail(path, "%s", err)
			return
		}
		*dst = f
	case fastjson.TypeNull:
	default:
		m.wrongType(path, "number", v)
	}
}

// int decodes an integer field; null leaves it zero.
func (m *eventMapper) int(dst *int, path fieldPath, v *fastjson.Value) {
	switch v.Type() {
	case fastjson.TypeNumber:
		n, err := m.parseInt(v)
		if err != "" {
			m.fail(path, "%s", err)
			return
		}
		*dst = n
	case fastjson.TypeNull:
	default:
		m.wrongType(path, "integer", v)
	}
}

// time decodes an RFC 3339 time field; null leaves it zero.
func (m *eventMapper) time(dst *time.Time, path fieldPath, v *fastjson.Value) bool {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		var t time.Time
		if err := t.UnmarshalText(b); err != nil {
			m.fail(path, "not an RFC 3339 time: %q", truncate(b, 64))
			return false
		}
		*dst = t.UTC()
		return true
	case fastjson.TypeNull:
	default:
		m.wrongType(path, "string", v)
	}
	return false
}

// object returns the object of an object field, nil for null.
func (m *eventMapper) object(path fieldPath, v *fastjson.Value) *fastjson.Object {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		return o
	case fastjson.TypeNull:
	default:
		m.wrongType(path, "object", v)
	}
	return nil
}

// array returns the items of an array field, nil for null.
func (m *eventMapper) array(path fieldPath, v *fastjson.Value) []*fastjson.Value {
	switch v.Type() {
	case fastjson.TypeArray:
		a, _ := v.Array()
		return a
	case fastjson.TypeNull:
	default:
		m.wrongType(path, "array", v)
	}
	return nil
}

func (m *eventMapper) topLevel(k []byte, v *fastjson.Value) {
	if m.err != nil {
		return
	}
	e := m.e
	switch string(k) {
	case "event_id":
		m.string(&e.EventID, top("event_id"), v)
	case "type":
		if v.Type() == fastjson.TypeString {
			b, _ := v.StringBytes()
			if t, ok := internedTypes[string(b)]; ok {
				e.Type = t
				return
			}
		}
		m.string(&e.Type, top("type"), v)
	case "user_id":
		m.string(&e.UserID, top("user_id"), v)
	case "anonymous_id":
		m.string(&e.AnonymousID, top("anonymous_id"), v)
	case "timestamp":
		m.time(&e.Timestamp, top("timestamp"), v)
	case "received_at":
		m.time(&e.ReceivedAt, top("received_at"), v)
	case "context":
		if o := m.object(top("context"), v); o != nil {
			o.Visit(m.context)
		}
	case "consent":
		if o := m.object(top("consent"), v); o != nil {
			m.consentObject(o)
		}
	case "product":
		if o := m.object(top("product"), v); o != nil {
			m.product(&e.Product, "product", -1, o)
		}
	case "products":
		a := m.array(top("products"), v)
		if len(a) == 0 {
			e.Products = nil
			return
		}
		e.Products = make([]Product, len(a))
		for i, x := range a {
			if x.Type() != fastjson.TypeObject {
				m.wrongType(fieldPath{"products", i, ""}, "object", x)
				return
			}
			o, _ := x.Object()
			m.product(&e.Products[i], "products", i, o)
		}
	case "order":
		if o := m.object(top("order"), v); o != nil {
			o.Visit(m.order)
		}
	case "search":
		if o := m.object(top("search"), v); o != nil {
			o.Visit(m.search)
		}
	case "filters":
		a := m.array(top("filters"), v)
		if len(a) == 0 {
			e.Filters = nil
			return
		}
		e.Filters = make([]Filter, len(a))
		for i, x := range a {
			if x.Type() != fastjson.TypeObject {
				m.wrongType(fieldPath{"filters", i, ""}, "object", x)
				return
			}
			o, _ := x.Object()
			m.filter(&e.Filters[i], i, o)
		}
	case "properties":
		if o := m.object(top("properties"), v); o != nil && o.Len() > 0 {
			m.e.Properties = m.properties(o, "properties")
		}
	}
}

func (m *eventMapper) context(k []byte, v *fastjson.Value) {
	if m.err != nil {
		return
	}
	c := &m.e.Context
	switch string(k) {
	case "page":
		if o := m.object(top("context.page"), v); o != nil {
			o.Visit(m.page)
		}
	case "channel":
		m.string(&c.Channel, top("context.channel"), v)
	case "user_agent":
		m.string(&c.UserAgent, top("context.user_agent"), v)
	case "locale":
		m.string(&c.Locale, top("context.locale"), v)
	case "ip":
		m.string(&c.IP, top("context.ip"), v)
	}
}

func (m *eventMapper) page(k []byte, v *fastjson.Value) {
	if m.err != nil {
		return
	}
	p := &m.e.Context.Page
	switch string(k) {
	case "url":
		m.string(&p.URL, top("context.page.url"), v)
	case "referrer":
		m.string(&p.Referrer, top("context.page.referrer"), v)
	case "title":
		m.string(&p.Title, top("context.page.title"), v)
	}
}

func (m *eventMapper) consentObject(o *fastjson.Object) {
	o.Visit(func(k []byte, v *fastjson.Value) {
		if m.err != nil {
			return
		}
		var granted bool
		switch v.Type() {
		case fastjson.TypeTrue:
			granted = true
		case fastjson.TypeFalse:
		case fastjson.TypeNull:
			return
		default:
			m.wrongType(top("consent."+string(k)), "bool", v)
			return
		}
		purpose, ok := internedPurposes[string(k)]
		if !ok {
			purpose = m.str(k)
		}
		m.consent = append(m.consent, consentItem{purpose, granted})
	})
}

// product decodes a product object; i is its index in products, or -1.
func (m *eventMapper) product(p *Product, base string, i int, o *fastjson.Object) {
	o.Visit(func(k []byte, v *fastjson.Value) {
		if m.err != nil {
			return
		}
		switch string(k) {
		case "id":
			m.string(&p.ID, fieldPath{base, i, "id"}, v)
		case "sku":
			m.string(&p.SKU, fieldPath{base, i, "sku"}, v)
		case "category":
			m.string(&p.Category, fieldPath{base, i, "category"}, v)
		case "brand":
			m.string(&p.Brand, fieldPath{base, i, "brand"}, v)
		case "price":
			m.float(&p.Price, fieldPath{base, i, "price"}, v)
		case "currency":
			m.string(&p.Currency, fieldPath{base, i, "currency"}, v)
		case "quantity":
			m.int(&p.Quantity, fieldPath{base, i, "quantity"}, v)
		}
	})
}

func (m *eventMapper) order(k []byte, v *fastjson.Value) {
	if m.err != nil {
		return
	}
	o := &m.e.Order
	switch string(k) {
	case "id":
		m.string(&o.ID, top("order.id"), v)
	case "revenue":
		m.float(&o.Revenue, top("order.revenue"), v)
	case "currency":
		m.string(&o.Currency, top("order.currency"), v)
	}
}

func (m *eventMapper) search(k []byte, v *fastjson.Value) {
	if m.err != nil {
		return
	}
	s := &m.e.Search
	switch string(k) {
	case "query":
		m.string(&s.Query, top("search.query"), v)
	case "results":
		m.int(&s.Results, top("search.results"), v)
	}
}

func (m *eventMapper) filter(f *Filter, i int, o *fastjson.Object) {
	o.Visit(func(k []byte, v *fastjson.Value) {
		if m.err != nil {
			return
		}
		switch string(k) {
		case "field":
			m.string(&f.Field, fieldPath{"filters", i, "field"}, v)
		case "op":
			m.string(&f.Op, fieldPath{"filters", i, "op"}, v)
		case "value":
			m.string(&f.Value, fieldPath{"filters", i, "value"}, v)
		}
	})
}

// properties decodes a free-form object as encoding/json would into
// map[string]any: numbers are float64, objects map[string]any, arrays []any.
func (m *eventMapper) properties(o *fastjson.Object, path string) map[string]any {
	props := make(map[string]any, o.Len())
	o.Visit(func(k []byte, v *fastjson.Value) {
		if m.err != nil {
			return
		}
		key := string(k)
		if !utf8.Valid(k) {
			key = string(appendValidUTF8(nil, k))
		}
		props[key] = m.anyValue(v, path, key, -1)
	})
	return props
}

// anyValue decodes a free-form value found at parent.key, or at parent[i]
// when i >= 0.
func (m *eventMapper) anyValue(v *fastjson.Value, parent, key string, i int) any {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if !utf8.Valid(b) {
			return string(appendValidUTF8(nil, b))
		}
		return string(b)
	case fastjson.TypeNumber:
		f, err := m.parseFloat(v)
		if err != "" {
			m.fail(top(childPath(parent, key, i)), "%s", err)
			return nil
		}
		return f
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	case fastjson.TypeObject:
		o, _ := v.Object()
		return m.properties(o, childPath(parent, key, i))
	case fastjson.TypeArray:
		a, _ := v.Array()
		path := childPath(parent, key, i)
		out := make([]any, len(a))
		for j, x := range a {
			out[j] = m.anyValue(x, path, "", j)
		}
		return out
	}
	return nil
}

func childPath(parent, key string, i int) string {
	if i >= 0 {
		return parent + "[" + strconv.Itoa(i) + "]"
	}
	return parent + "." + key
}

// validateEvent checks the requirements of DESIGN §2 that are not about the
// JSON types of fields.
func validateEvent(e *Event) error {
	if e.EventID == "" {
		return errMissing("event_id")
	}
	if e.Type == "" {
		return errMissing("type")
	}
	if e.Timestamp.IsZero() {
		return errMissing("timestamp")
	}
	if e.UserID == "" && e.AnonymousID == "" {
		return fmt.Errorf(`missing required field "user_id" or "anonymous_id"`)
	}
	if err := checkID("event_id", e.EventID); err != nil {
		return err
	}
	if err := checkID("user_id", e.UserID); err != nil {
		return err
	}
	if err := checkID("anonymous_id", e.AnonymousID); err != nil {
		return err
	}
	switch {
	case productEventTypes[e.Type]:
		if e.Product.ID != "" {
			break
		}
		if len(e.Products) == 0 || !cartOrderProductTypes[e.Type] {
			return fmt.Errorf("missing required field %q for type %q", "product.id", e.Type)
		}
		for i := range e.Products {
			if e.Products[i].ID == "" {
				return fmt.Errorf("missing required field %q for type %q", fieldPath{"products", i, "id"}.String(), e.Type)
			}
		}
	case e.Type == "products_searched":
		if e.Search.Query == "" {
			return fmt.Errorf("missing required field %q for type %q", "search.query", e.Type)
		}
	case e.Type == "order_completed":
		if e.Order.ID == "" {
			return fmt.Errorf("missing required field %q for type %q", "order.id", e.Type)
		}
	}
	return nil
}

func errMissing(field string) error {
	return fmt.Errorf("missing required field %q", field)
}

func checkID(field, id string) error {
	if len(id) > MaxIDLen {
		return fmt.Errorf("field %q: longer than %d bytes", field, MaxIDLen)
	}
	if strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("field %q: contains a NUL byte", field)
	}
	return nil
}

func jsonTypeName(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "bool"
	default:
		return v.Type().String()
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// numberText returns the text of a number value as written, in scratch
// space valid until the next call.
func (m *eventMapper) numberText(v *fastjson.Value) string {
	m.num = v.MarshalTo(m.num[:0])
	return unsafe.String(unsafe.SliceData(m.num), len(m.num))
}

// parseFloat parses a number value strictly: JSON grammar and a finite
// float64. It returns a reason when the number is not acceptable.
func (m *eventMapper) parseFloat(v *fastjson.Value) (float64, string) {
	s := m.numberText(v)
	if _, ok := scanJSONNumber(s); !ok {
		return 0, fmt.Sprintf("invalid number %q", truncateString(s, 32))
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Sprintf("number out of range: %s", truncateString(s, 32))
	}
	return f, ""
}

// parseInt parses an integer value strictly; 2.0 and 2e0 are accepted.
func (m *eventMapper) parseInt(v *fastjson.Value) (int, string) {
	s := m.numberText(v)
	isInt, ok := scanJSONNumber(s)
	if !ok {
		return 0, fmt.Sprintf("invalid number %q", truncateString(s, 32))
	}
	if isInt {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || int64(int(n)) != n {
			return 0, fmt.Sprintf("number out of range: %s", truncateString(s, 32))
		}
		return int(n), ""
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Sprintf("want integer, got %s", truncateString(s, 32))
	}
	return int(f), ""
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// scanJSONNumber reports whether s is a number in the JSON grammar, and
// whether it is written as an integer (no fraction, no exponent).
func scanJSONNumber(s string) (isInt, ok bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false, false
	}
	isInt = true
	if i < len(s) && s[i] == '.' {
		isInt = false
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		isInt = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false, false
		}
	}
	return isInt, i == len(s)
}

// AppendEventJSON appends the JSON encoding of e (DESIGN §2) to dst and
// returns the extended buffer. Empty optional fields and objects are
// omitted; times are RFC 3339 in UTC with at least millisecond precision
// (more digits when the time has them); consent and properties keys are
// sorted. The output decodes back to an equal event with EventDecoder.
// Properties values of types other than those JSON decoding produces are
// encoded with encoding/json; a value it cannot encode becomes null.
func AppendEventJSON(dst []byte, e *Event) []byte {
	dst = append(dst, `{"event_id":`...)
	dst = AppendJSONString(dst, e.EventID)
	dst = append(dst, `,"type":`...)
	dst = AppendJSONString(dst, e.Type)
	if e.UserID != "" {
		dst = append(dst, `,"user_id":`...)
		dst = AppendJSONString(dst, e.UserID)
	}
	if e.AnonymousID != "" {
		dst = append(dst, `,"anonymous_id":`...)
		dst = AppendJSONString(dst, e.AnonymousID)
	}
	dst = append(dst, `,"timestamp":"`...)
	dst = appendEventTime(dst, e.Timestamp)
	dst = append(dst, '"')
	if !e.ReceivedAt.IsZero() {
		dst = append(dst, `,"received_at":"`...)
		dst = appendEventTime(dst, e.ReceivedAt)
		dst = append(dst, '"')
	}
	if c := &e.Context; *c != (EventContext{}) {
		dst = append(dst, `,"context":{`...)
		n := len(dst)
		if c.Page != (Page{}) {
			dst = append(dst, `"page":{`...)
			m := len(dst)
			dst = appendStringField(dst, m, "url", c.Page.URL)
			dst = appendStringField(dst, m, "referrer", c.Page.Referrer)
			dst = appendStringField(dst, m, "title", c.Page.Title)
			dst = append(dst, '}')
		}
		dst = appendStringField(dst, n, "channel", c.Channel)
		dst = appendStringField(dst, n, "user_agent", c.UserAgent)
		dst = appendStringField(dst, n, "locale", c.Locale)
		dst = appendStringField(dst, n, "ip", c.IP)
		dst = append(dst, '}')
	}
	if len(e.Consent) > 0 {
		dst = appendConsent(dst, e.Consent)
	}
	if e.Product != (Product{}) {
		dst = append(dst, `,"product":`...)
		dst = appendProduct(dst, &e.Product)
	}
	if len(e.Products) > 0 {
		dst = append(dst, `,"products":[`...)
		for i := range e.Products {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendProduct(dst, &e.Products[i])
		}
		dst = append(dst, ']')
	}
	if o := &e.Order; *o != (Order{}) {
		dst = append(dst, `,"order":{`...)
		n := len(dst)
		dst = appendStringField(dst, n, "id", o.ID)
		if o.Revenue != 0 {
			dst = appendFieldName(dst, n, "revenue")
			dst = appendJSONFloat(dst, o.Revenue)
		}
		dst = appendStringField(dst, n, "currency", o.Currency)
		dst = append(dst, '}')
	}
	if s := &e.Search; *s != (Search{}) {
		dst = append(dst, `,"search":{`...)
		n := len(dst)
		dst = appendStringField(dst, n, "query", s.Query)
		if s.Results != 0 {
			dst = appendFieldName(dst, n, "results")
			dst = strconv.AppendInt(dst, int64(s.Results), 10)
		}
		dst = append(dst, '}')
	}
	if len(e.Filters) > 0 {
		dst = append(dst, `,"filters":[`...)
		for i := range e.Filters {
			f := &e.Filters[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '{')
			n := len(dst)
			dst = appendStringField(dst, n, "field", f.Field)
			dst = appendStringField(dst, n, "op", f.Op)
			dst = appendStringField(dst, n, "value", f.Value)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if len(e.Properties) > 0 {
		dst = append(dst, `,"properties":`...)
		dst = appendJSONObject(dst, e.Properties)
	}
	return append(dst, '}')
}

// appendFieldName appends "name": to an object whose first field would
// start at dst[start], with a comma when a field precedes it.
func appendFieldName(dst []byte, start int, name string) []byte {
	if len(dst) > start {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

// appendStringField appends "name":"value" unless value is empty.
func appendStringField(dst []byte, start int, name, value string) []byte {
	if value == "" {
		return dst
	}
	dst = appendFieldName(dst, start, name)
	return AppendJSONString(dst, value)
}

func appendProduct(dst []byte, p *Product) []byte {
	dst = append(dst, '{')
	n := len(dst)
	dst = appendStringField(dst, n, "id", p.ID)
	dst = appendStringField(dst, n, "sku", p.SKU)
	dst = appendStringField(dst, n, "category", p.Category)
	dst = appendStringField(dst, n, "brand", p.Brand)
	if p.Price != 0 {
		dst = appendFieldName(dst, n, "price")
		dst = appendJSONFloat(dst, p.Price)
	}
	dst = appendStringField(dst, n, "currency", p.Currency)
	if p.Quantity != 0 {
		dst = appendFieldName(dst, n, "quantity")
		dst = strconv.AppendInt(dst, int64(p.Quantity), 10)
	}
	return append(dst, '}')
}

func appendConsent(dst []byte, consent map[string]bool) []byte {
	var buf [8]string
	keys := buf[:0]
	for k := range consent {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, `,"consent":{`...)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, k)
		dst = append(dst, ':')
		dst = strconv.AppendBool(dst, consent[k])
	}
	return append(dst, '}')
}

// appendEventTime appends t in UTC as RFC 3339 with milliseconds, or with
// micro- or nanoseconds when t has them.
func appendEventTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
	hour, minute, sec := t.Clock()
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	ns := t.Nanosecond()
	switch {
	case ns%1e6 == 0:
		dst = appendDigits(dst, ns/1e6, 3)
	case ns%1e3 == 0:
		dst = appendDigits(dst, ns/1e3, 6)
	default:
		dst = appendDigits(dst, ns, 9)
	}
	return append(dst, 'Z')
}

// appendDigits appends v, which is not negative, zero-padded to width.
func appendDigits(dst []byte, v, width int) []byte {
	var buf [9]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[:width]...)
}

// appendJSONFloat appends f as encoding/json does; a value JSON cannot
// carry (NaN, ±Inf) becomes null.
func appendJSONFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendJSONObject appends a map as a JSON object with sorted keys.
func appendJSONObject(dst []byte, m map[string]any) []byte {
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONValue(dst, m[k])
	}
	return append(dst, '}')
}

// appendJSONValue appends v: the types JSON decoding produces without
// reflection, anything else through encoding/json.
func appendJSONValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case string:
		return AppendJSONString(dst, v)
	case bool:
		return strconv.AppendBool(dst, v)
	case float64:
		return appendJSONFloat(dst, v)
	case int:
		return strconv.AppendInt(dst, int64(v), 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case map[string]any:
		return appendJSONObject(dst, v)
	case []any:
		dst = append(dst, '[')
		for i, x := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONValue(dst, x)
		}
		return append(dst, ']')
	case JSONAppender:
		return v.AppendJSON(dst)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return append(dst, "null"...)
	}
	// encoding/json escapes <, > and & for HTML; that is still valid JSON.
	return append(dst, bytes.TrimSpace(b)...)
}
