package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// MaxIDLen is the longest event_id, user_id or anonymous_id, in bytes, that
// an event may carry. Ids are state keys; longer ones are rejected.
const MaxIDLen = 512

// maxJSONDepth bounds the nesting of objects and arrays in an event.
const maxJSONDepth = 1000

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
// events of those types share one static string.
var internedTypes = func() map[string]string {
	m := make(map[string]string, len(categories))
	for t := range categories {
		m[t] = t
	}
	return m
}()

// internPurpose returns a static string for consent purposes common enough
// to share one.
func internPurpose(b []byte) (string, bool) {
	switch string(b) {
	case "analytics":
		return "analytics", true
	case "personalization":
		return "personalization", true
	case "marketing":
		return "marketing", true
	case "advertising":
		return "advertising", true
	case "functional":
		return "functional", true
	case "necessary":
		return "necessary", true
	}
	return "", false
}

// EventDecoder decodes and validates JSON events (DESIGN §2). It is a
// single-pass decoder written for Event: no reflection, no intermediate
// tree. It keeps buffers between calls, so it is meant to be reused; it is
// not safe for concurrent use: use one per goroutine.
type EventDecoder struct {
	scratch []byte        // the strings of the event being decoded
	tmp     []byte        // unescaped keys and short-lived strings
	consent []consentItem // the consent entries of the event being decoded
	// skip holds the optional fields left out (checked, not copied): the
	// runtime's projection (EventFields). Zero decodes everything.
	skip EventFields
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
// and common consent purposes are static strings; properties have their
// own); an operator that keeps a small part of many events for a long time
// may strings.Clone it.
//
// The JSON must be valid (RFC 8259). Unknown fields are ignored, so
// producers can add fields first. A JSON null is the same as an absent
// field, and an empty object or array the same as an absent one. Duplicate
// keys: the last wins. Numbers must be finite float64 values; quantity and
// results must be integers. Strings that are not valid UTF-8 have each bad
// byte replaced by U+FFFD, as encoding/json does.
func (d *EventDecoder) Decode(data []byte, e *Event) error {
	*e = Event{}
	// A decoded string is never longer than its JSON form, so the strings
	// of the event fit the scratch space and it never moves while mapping.
	if cap(d.scratch) < len(data) {
		d.scratch = make([]byte, 0, len(data))
	}
	m := eventMapper{
		data: data, e: e,
		arena: d.scratch[:0], tmp: d.tmp[:0], consent: d.consent[:0],
		omit: d.skip,
	}
	m.event()
	if m.err == nil && len(m.arena) > 0 && unsafe.SliceData(m.arena) != unsafe.SliceData(d.scratch) {
		m.err = fmt.Errorf("internal error: event string arena moved")
	}
	if m.err == nil {
		m.finish()
		m.err = validateEvent(e, m.hasTimestamp)
	}
	d.tmp = m.tmp[:0]
	clear(m.consent)
	d.consent = m.consent[:0]
	if m.err != nil {
		*e = Event{}
		return m.err
	}
	return nil
}

// eventMapper decodes one JSON event onto an Event. It records the first
// error and does nothing after it: every loop ends once err is set.
//
// While mapping, the event's strings point into arena, the decoder's
// scratch space; finish copies the arena into one allocation and points
// the strings there.
type eventMapper struct {
	data    []byte
	pos     int
	err     error
	e       *Event
	arena   []byte
	tmp     []byte
	consent []consentItem
	// omit holds the optional fields to check and leave out.
	omit EventFields

	hasTimestamp bool
}

// Kinds of JSON values, by their first byte; kindNumber stands for all
// numbers and kindNone for "no value" (a syntax error was recorded).
const (
	kindNone   byte = 0
	kindString byte = '"'
	kindObject byte = '{'
	kindArray  byte = '['
	kindTrue   byte = 't'
	kindFalse  byte = 'f'
	kindNull   byte = 'n'
	kindNumber byte = '0'
)

func kindName(k byte) string {
	switch k {
	case kindString:
		return "string"
	case kindObject:
		return "object"
	case kindArray:
		return "array"
	case kindTrue, kindFalse:
		return "bool"
	case kindNull:
		return "null"
	}
	return "number"
}

// syntax records a JSON syntax error at the current position.
func (m *eventMapper) syntax(what string) {
	if m.err == nil {
		m.err = fmt.Errorf("not JSON: %s at offset %d", what, m.pos)
	}
}

// unexpected records a syntax error for the byte at the current position.
func (m *eventMapper) unexpected(context string) {
	if m.pos >= len(m.data) {
		m.syntax("unexpected end of input")
		return
	}
	m.syntax(fmt.Sprintf("invalid character %q %s", m.data[m.pos], context))
}

func (m *eventMapper) ws() {
	for m.pos < len(m.data) {
		switch m.data[m.pos] {
		case ' ', '\t', '\n', '\r':
			m.pos++
		default:
			return
		}
	}
}

// kind skips white space and returns the kind of the value that starts
// there, or kindNone after recording a syntax error.
func (m *eventMapper) kind() byte {
	if m.err != nil {
		return kindNone
	}
	m.ws()
	if m.pos >= len(m.data) {
		m.syntax("unexpected end of input")
		return kindNone
	}
	switch c := m.data[m.pos]; c {
	case '"', '{', '[', 't', 'f', 'n':
		return c
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return kindNumber
	}
	m.unexpected("looking for a value")
	return kindNone
}

// literal consumes true, false or null, whose first byte is at pos.
func (m *eventMapper) literal(k byte) {
	var lit string
	switch k {
	case kindTrue:
		lit = "true"
	case kindFalse:
		lit = "false"
	default:
		lit = "null"
	}
	if len(m.data)-m.pos < len(lit) || string(m.data[m.pos:m.pos+len(lit)]) != lit {
		m.syntax("invalid literal")
		return
	}
	m.pos += len(lit)
}

// plainString[c] is true for the bytes that stand for themselves in a JSON
// string and are ASCII.
var plainString = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString decodes the JSON string that starts at pos (a quote) onto
// buf. ascii reports that the decoded bytes are all ASCII.
func (m *eventMapper) appendString(buf []byte) (_ []byte, ascii bool) {
	data := m.data
	i := m.pos + 1
	start := i
	ascii = true
	for {
		for i < len(data) && plainString[data[i]] {
			i++
		}
		if i >= len(data) {
			m.pos = i
			m.syntax("unexpected end of input in string")
			return buf, ascii
		}
		switch c := data[i]; {
		case c == '"':
			buf = append(buf, data[start:i]...)
			m.pos = i + 1
			return buf, ascii
		case c == '\\':
			buf = append(buf, data[start:i]...)
			var ok bool
			buf, i, ok = appendEscape(buf, data, i)
			if !ok {
				m.pos = i
				m.syntax("invalid escape in string")
				return buf, ascii
			}
			if buf[len(buf)-1] >= utf8.RuneSelf {
				ascii = false
			}
			start = i
		case c < 0x20:
			m.pos = i
			m.syntax("control character in string")
			return buf, ascii
		default: // not ASCII
			ascii = false
			i++
		}
	}
}

// appendEscape decodes the escape sequence at data[i] (a backslash) onto
// buf and returns the index after it. A lone UTF-16 surrogate becomes
// U+FFFD, as encoding/json does.
func appendEscape(buf, data []byte, i int) ([]byte, int, bool) {
	if i+1 >= len(data) {
		return buf, i, false
	}
	switch c := data[i+1]; c {
	case '"', '\\', '/':
		return append(buf, c), i + 2, true
	case 'b':
		return append(buf, '\b'), i + 2, true
	case 'f':
		return append(buf, '\f'), i + 2, true
	case 'n':
		return append(buf, '\n'), i + 2, true
	case 'r':
		return append(buf, '\r'), i + 2, true
	case 't':
		return append(buf, '\t'), i + 2, true
	case 'u':
		r, ok := hex4(data, i+2)
		if !ok {
			return buf, i, false
		}
		i += 6
		if utf16.IsSurrogate(r) {
			r2, ok := rune(0), false
			if i+1 < len(data) && data[i] == '\\' && data[i+1] == 'u' {
				r2, ok = hex4(data, i+2)
			}
			if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
				return utf8.AppendRune(buf, dec), i + 6, true
			}
			r = utf8.RuneError
		}
		return utf8.AppendRune(buf, r), i, true
	}
	return buf, i, false
}

// hex4 decodes the four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if len(data)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// str decodes the JSON string at pos into the arena and returns it, with
// invalid UTF-8 replaced.
func (m *eventMapper) str() string {
	start := len(m.arena)
	var ascii bool
	m.arena, ascii = m.appendString(m.arena)
	return m.arenaString(start, ascii)
}

// arenaString returns arena[start:] as a string. Invalid UTF-8 (rare) is
// replaced, in a string of its own.
func (m *eventMapper) arenaString(start int, ascii bool) string {
	b := m.arena[start:]
	if len(b) == 0 || m.err != nil {
		m.arena = m.arena[:start]
		return ""
	}
	if !ascii && !utf8.Valid(b) {
		s := string(appendValidUTF8(nil, b))
		m.arena = m.arena[:start]
		return s
	}
	return unsafe.String(&b[0], len(b))
}

// ownString decodes the JSON string at pos into a string of its own.
func (m *eventMapper) ownString() string {
	var ascii bool
	m.tmp, ascii = m.appendString(m.tmp[:0])
	if !ascii && !utf8.Valid(m.tmp) {
		return string(appendValidUTF8(nil, m.tmp))
	}
	return string(m.tmp)
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

// number consumes the number at pos and returns its text, a view of the
// input valid during Decode, and whether it is written as an integer.
func (m *eventMapper) number() (text string, isInt bool) {
	data := m.data
	start := m.pos
	i := start
	digits := func() bool {
		j := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		return i > j
	}
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case !digits():
		m.pos = i
		m.unexpected("in number")
		return "", false
	}
	isInt = true
	if i < len(data) && data[i] == '.' {
		isInt = false
		i++
		if !digits() {
			m.pos = i
			m.unexpected("after decimal point in number")
			return "", false
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		isInt = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			m.pos = i
			m.unexpected("in exponent of number")
			return "", false
		}
	}
	m.pos = i
	return unsafe.String(&data[start], i-start), isInt
}

// float consumes a number and returns it as a float64.
func (m *eventMapper) float(path fieldPath) float64 {
	text, _ := m.number()
	if m.err != nil {
		return 0
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		m.fail(path, "number out of range: %s", truncateString(text, 32))
		return 0
	}
	return f
}

// integer consumes a number that must be an integer; 2.0 and 2e0 are.
func (m *eventMapper) integer(path fieldPath) int {
	text, isInt := m.number()
	if m.err != nil {
		return 0
	}
	if isInt {
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil || int64(int(n)) != n {
			m.fail(path, "number out of range: %s", truncateString(text, 32))
			return 0
		}
		return int(n)
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		m.fail(path, "want integer, got %s", truncateString(text, 32))
		return 0
	}
	return int(f)
}

// enter consumes the opening { or [ at pos and reports whether a member
// or item follows (false for an empty object or array).
func (m *eventMapper) enter(end byte) bool {
	m.pos++
	m.ws()
	if m.pos < len(m.data) && m.data[m.pos] == end {
		m.pos++
		return false
	}
	return m.err == nil
}

// more consumes what follows a member or item: a comma (true) or end
// (false). It is false once an error is recorded.
func (m *eventMapper) more(end byte) bool {
	if p := m.pos; p < len(m.data) && m.data[p] == ',' && m.err == nil {
		m.pos++
		return true
	}
	return m.moreSlow(end)
}

func (m *eventMapper) moreSlow(end byte) bool {
	if m.err != nil {
		return false
	}
	m.ws()
	if m.pos < len(m.data) {
		switch m.data[m.pos] {
		case ',':
			m.pos++
			return true
		case end:
			m.pos++
			return false
		}
	}
	if end == '}' {
		m.unexpected("after object value")
	} else {
		m.unexpected("after array item")
	}
	return false
}

// key consumes `"name":` and returns the unescaped name, valid until the
// next call.
func (m *eventMapper) key() []byte {
	// Fast path: compact JSON and a plain name.
	data := m.data
	if p := m.pos; p < len(data) && data[p] == '"' {
		i := p + 1
		for i < len(data) && plainString[data[i]] {
			i++
		}
		if i+1 < len(data) && data[i] == '"' && data[i+1] == ':' {
			m.pos = i + 2
			return data[p+1 : i]
		}
	}
	return m.keySlow()
}

func (m *eventMapper) keySlow() []byte {
	m.ws()
	if m.pos >= len(m.data) || m.data[m.pos] != '"' {
		m.unexpected("looking for an object key")
		return nil
	}
	m.tmp, _ = m.appendString(m.tmp[:0])
	m.ws()
	if m.err != nil {
		return nil
	}
	if m.pos >= len(m.data) || m.data[m.pos] != ':' {
		m.unexpected("after object key")
		return nil
	}
	m.pos++
	return m.tmp
}

// skip consumes a value of any kind, checking its syntax.
func (m *eventMapper) skip(depth int) {
	if depth > maxJSONDepth {
		m.syntax("nested too deep")
		return
	}
	switch k := m.kind(); k {
	case kindString:
		m.tmp, _ = m.appendString(m.tmp[:0])
	case kindNumber:
		m.number()
	case kindTrue, kindFalse, kindNull:
		m.literal(k)
	case kindObject:
		for more := m.enter('}'); more; more = m.more('}') {
			m.key()
			m.skip(depth + 1)
		}
	case kindArray:
		for more := m.enter(']'); more; more = m.more(']') {
			m.skip(depth + 1)
		}
	}
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

func (m *eventMapper) wrongType(path fieldPath, want string, k byte) {
	if k != kindNone {
		m.fail(path, "want %s, got %s", want, kindName(k))
	}
}

// string decodes a string field; null leaves it empty.
func (m *eventMapper) string(dst *string, path fieldPath) {
	// Fast path: a plain ASCII string without escapes, the usual case.
	if p, end := m.pos, m.plainStringEnd(); end > 0 {
		m.pos = end + 1
		if end == p+1 {
			*dst = ""
			return
		}
		start := len(m.arena)
		m.arena = append(m.arena, m.data[p+1:end]...)
		*dst = unsafe.String(&m.arena[start], end-p-1)
		return
	}
	m.stringSlow(dst, path)
}

// plainStringEnd returns the index of the closing quote of the string at
// pos when it is plain ASCII without escapes, else 0.
func (m *eventMapper) plainStringEnd() int {
	data, p := m.data, m.pos
	if p >= len(data) || data[p] != '"' {
		return 0
	}
	i := p + 1
	for i < len(data) && plainString[data[i]] {
		i++
	}
	if i < len(data) && data[i] == '"' {
		return i
	}
	return 0
}

func (m *eventMapper) stringSlow(dst *string, path fieldPath) {
	switch k := m.kind(); k {
	case kindString:
		*dst = m.str()
	case kindNull:
		m.literal(k)
	default:
		m.wrongType(path, "string", k)
	}
}

// optionalString decodes the optional field f into dst, or, when the
// decoder skips f, checks it as string does and leaves dst empty.
func (m *eventMapper) optionalString(dst *string, f EventFields, path fieldPath) {
	if m.omit&f == 0 {
		m.string(dst, path)
		return
	}
	if end := m.plainStringEnd(); end > 0 {
		m.pos = end + 1
		return
	}
	var s string
	m.stringSlow(&s, path) // escapes, non-ASCII, null or a wrong type
}

// floatField decodes a number field; null leaves it zero.
func (m *eventMapper) floatField(dst *float64, path fieldPath) {
	switch k := m.kind(); k {
	case kindNumber:
		*dst = m.float(path)
	case kindNull:
		m.literal(k)
	default:
		m.wrongType(path, "number", k)
	}
}

// intField decodes an integer field; null leaves it zero.
func (m *eventMapper) intField(dst *int, path fieldPath) {
	switch k := m.kind(); k {
	case kindNumber:
		*dst = m.integer(path)
	case kindNull:
		m.literal(k)
	default:
		m.wrongType(path, "integer", k)
	}
}

// timeField decodes an RFC 3339 time field; null leaves it zero. It
// reports whether a time was decoded.
func (m *eventMapper) timeField(dst *time.Time, path fieldPath) bool {
	switch k := m.kind(); k {
	case kindString:
		m.tmp, _ = m.appendString(m.tmp[:0])
		if m.err != nil {
			return false
		}
		var t time.Time
		if err := t.UnmarshalText(m.tmp); err != nil {
			m.fail(path, "not an RFC 3339 time: %q", truncateString(string(m.tmp), 64))
			return false
		}
		t = t.UTC()
		if y := t.Year(); y < 0 || y > 9999 {
			// An offset moved the time out of the years RFC 3339 can write.
			m.fail(path, "not an RFC 3339 time: %q", truncateString(string(m.tmp), 64))
			return false
		}
		*dst = t
		return true
	case kindNull:
		m.literal(k)
	default:
		m.wrongType(path, "string", k)
	}
	return false
}

// object checks that an object field holds an object, and consumes null.
// It reports whether an object starts at pos.
func (m *eventMapper) object(path fieldPath) bool {
	switch k := m.kind(); k {
	case kindObject:
		return true
	case kindNull:
		m.literal(k)
	default:
		m.wrongType(path, "object", k)
	}
	return false
}

// array checks that an array field holds an array, and consumes null. It
// reports whether an array starts at pos.
func (m *eventMapper) array(path fieldPath) bool {
	switch k := m.kind(); k {
	case kindArray:
		return true
	case kindNull:
		m.literal(k)
	default:
		m.wrongType(path, "array", k)
	}
	return false
}

// event decodes the top-level object.
func (m *eventMapper) event() {
	m.ws()
	if m.pos == len(m.data) {
		m.syntax("empty input")
		return
	}
	switch k := m.kind(); k {
	case kindObject:
	case kindNone:
		return
	default:
		m.skip(0)
		m.ws()
		if m.err == nil && m.pos < len(m.data) {
			m.unexpected("after top-level value")
		}
		if m.err == nil {
			m.err = fmt.Errorf("not a JSON object: got %s", kindName(k))
		}
		return
	}
	e := m.e
	for more := m.enter('}'); more; more = m.more('}') {
		k := m.key()
		if m.err != nil {
			return
		}
		switch string(k) {
		case "event_id":
			m.string(&e.EventID, top("event_id"))
		case "type":
			m.eventType()
		case "user_id":
			m.string(&e.UserID, top("user_id"))
		case "anonymous_id":
			m.string(&e.AnonymousID, top("anonymous_id"))
		case "timestamp":
			m.hasTimestamp = m.timeField(&e.Timestamp, top("timestamp"))
		case "received_at":
			m.timeField(&e.ReceivedAt, top("received_at"))
		case "context":
			if m.object(top("context")) {
				m.context()
			}
		case "consent":
			if m.object(top("consent")) {
				m.consentObject()
			}
		case "product":
			if m.object(top("product")) {
				m.product(&e.Product, "product", -1)
			}
		case "products":
			e.Products = e.Products[:0]
			if m.array(top("products")) {
				for more := m.enter(']'); more; more = m.more(']') {
					i := len(e.Products)
					if k := m.kind(); k != kindObject {
						m.wrongType(fieldPath{"products", i, ""}, "object", k)
						return
					}
					e.Products = append(e.Products, Product{})
					m.product(&e.Products[i], "products", i)
				}
			}
			if len(e.Products) == 0 {
				e.Products = nil
			}
		case "order":
			if m.object(top("order")) {
				m.order()
			}
		case "search":
			if m.object(top("search")) {
				m.search()
			}
		case "filters":
			e.Filters = e.Filters[:0]
			if m.array(top("filters")) {
				for more := m.enter(']'); more; more = m.more(']') {
					i := len(e.Filters)
					if k := m.kind(); k != kindObject {
						m.wrongType(fieldPath{"filters", i, ""}, "object", k)
						return
					}
					e.Filters = append(e.Filters, Filter{})
					m.filter(&e.Filters[i], i)
				}
			}
			if len(e.Filters) == 0 {
				e.Filters = nil
			}
		case "properties":
			e.Properties = nil
			if m.object(top("properties")) {
				if p := m.anyObject("properties", 1); len(p) > 0 {
					e.Properties = p
				}
			}
		default:
			m.skip(1)
		}
	}
	if m.err != nil {
		return
	}
	m.ws()
	if m.pos < len(m.data) {
		m.unexpected("after top-level object")
	}
}

// eventType decodes the type field, sharing the string of vocabulary types.
func (m *eventMapper) eventType() {
	if m.kind() != kindString {
		m.string(&m.e.Type, top("type"))
		return
	}
	start := len(m.arena)
	var ascii bool
	m.arena, ascii = m.appendString(m.arena)
	if t, ok := internedTypes[string(m.arena[start:])]; ok {
		m.arena = m.arena[:start]
		m.e.Type = t
		return
	}
	m.e.Type = m.arenaString(start, ascii)
}

func (m *eventMapper) context() {
	c := &m.e.Context
	for more := m.enter('}'); more; more = m.more('}') {
		k := m.key()
		if m.err != nil {
			return
		}
		switch string(k) {
		case "page":
			if m.object(top("context.page")) {
				m.page()
			}
		case "channel":
			m.optionalString(&c.Channel, FieldChannel, top("context.channel"))
		case "user_agent":
			m.optionalString(&c.UserAgent, FieldUserAgent, top("context.user_agent"))
		case "locale":
			m.optionalString(&c.Locale, FieldLocale, top("context.locale"))
		case "ip":
			m.optionalString(&c.IP, FieldIP, top("context.ip"))
		default:
			m.skip(2)
		}
	}
}

func (m *eventMapper) page() {
	p := &m.e.Context.Page
	for more := m.enter('}'); more; more = m.more('}') {
		k := m.key()
		if m.err != nil {
			return
		}
		switch string(k) {
		case "url":
			m.optionalString(&p.URL, FieldPageURL, top("context.page.url"))
		case "referrer":
			m.optionalString(&p.Referrer, FieldPageReferrer, top("context.page.referrer"))
		case "title":
			m.optionalString(&p.Title, FieldPageTitle, top("context.page.title"))
		default:
			m.skip(3)
		}
	}
}

func (m *eventMapper) consentObject() {
	for more := m.enter('}'); more; more = m.more('}') {
		k := m.key()
		if m.err != nil {
			return
		}
		var granted bool
		switch kind := m.kind(); kind {
		case kindTrue:
			granted = true
			m.literal(kind)
		case kindFalse:
			m.literal(kind)
		case kindNull:
			m.literal(kind)
			continue
		default:
			m.wrongType(top("consent."+string(k)), "bool", kind)
			return
		}
		purpose, ok := internPurpose(k)
		if !ok {
			start := len(m.arena)
			m.arena = append(m.arena, k...)
			purpose = m.arenaString(start, false)
		}
		// A repeated purpose: the last wins.
		for i := range m.consent {
			if m.consent[i].purpose == purpose {
				m.consent[i].granted = granted
				purpose = ""
				break
			}
		}
		if purpose != "" {
			m.consent = append(m.consent, consentItem{purpose, granted})
		}
	}
}

// product decodes a product object; i is its index in products, or -1.
func (m *eventMapper) product(p *Product, base string, i int) {
	for more := m.enter('}'); more; more = m.more('}') {
		k := m.key()
		if m.err != nil {
			return
		}
		switch string(k) {
		case "id":
			m.string(&p.ID, fieldPath{base, i, "id"})
		case "sku":
			m.optionalString(&p.SKU, FieldProductSKU, fieldPath{base, i, "sku"})
		case "category":
			m.string(&p.Category, fieldPath{base, i, "category"})
		case "brand":
			m.optionalString(&p.Brand, FieldProductBrand, fieldPath{base, i, "brand"})
		case "price":
			m.floatField(&p.Price, fieldPath{base, i, "price"})
		case "currency":
			m.optionalString(&p.Currency, FieldProductCurrency, fieldPath{base, i, "currency"})
		case "quantity":
			m.intField(&p.Quantity, fieldPath{base, i, "quantity"})
		default:
			m.skip(3)
		}
	}
}

func (m *eventMapper) order() {
	o := &m.e.Order
	for more := m.enter('}'); more; more = m.more('}') {
		k := m.key()
		if m.err != nil {
			return
		}
		switch string(k) {
		case "id":
			m.string(&o.ID, top("order.id"))
		case "revenue":
			m.floatField(&o.Revenue, top("order.revenue"))
		case "currency":
			m.optionalString(&o.Currency, FieldOrderCurrency, top("order.currency"))
		default:
			m.skip(2)
		}
	}
}

func (m *eventMapper) search() {
	s := &m.e.Search
	for more := m.enter('}'); more; more = m.more('}') {
		k := m.key()
		if m.err != nil {
			return
		}
		switch string(k) {
		case "query":
			m.string(&s.Query, top("search.query"))
		case "results":
			m.intField(&s.Results, top("search.results"))
		default:
			m.skip(2)
		}
	}
}

func (m *eventMapper) filter(f *Filter, i int) {
	for more := m.enter('}'); more; more = m.more('}') {
		k := m.key()
		if m.err != nil {
			return
		}
		switch string(k) {
		case "field":
			m.string(&f.Field, fieldPath{"filters", i, "field"})
		case "op":
			m.string(&f.Op, fieldPath{"filters", i, "op"})
		case "value":
			m.string(&f.Value, fieldPath{"filters", i, "value"})
		default:
			m.skip(3)
		}
	}
}

// anyObject decodes a free-form object, at pos, as encoding/json would into
// map[string]any: numbers are float64, objects map[string]any, arrays []any.
// Its strings have their own allocations.
func (m *eventMapper) anyObject(path string, depth int) map[string]any {
	if depth > maxJSONDepth {
		m.syntax("nested too deep")
		return nil
	}
	var obj map[string]any
	for more := m.enter('}'); more; more = m.more('}') {
		k := m.key()
		if m.err != nil {
			return nil
		}
		key := string(k)
		if !utf8.Valid(k) {
			key = string(appendValidUTF8(nil, k))
		}
		if obj == nil {
			obj = make(map[string]any)
		}
		obj[key] = m.anyValue(path, key, -1, depth)
	}
	if obj == nil && m.err == nil {
		obj = map[string]any{}
	}
	return obj
}

// anyValue decodes a free-form value found at parent.key, or at parent[i]
// when i >= 0.
func (m *eventMapper) anyValue(parent, key string, i int, depth int) any {
	switch k := m.kind(); k {
	case kindString:
		return m.ownString()
	case kindNumber:
		text, _ := m.number()
		if m.err != nil {
			return nil
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			m.fail(top(childPath(parent, key, i)), "number out of range: %s", truncateString(text, 32))
			return nil
		}
		return f
	case kindTrue:
		m.literal(k)
		return true
	case kindFalse:
		m.literal(k)
		return false
	case kindNull:
		m.literal(k)
	case kindObject:
		return m.anyObject(childPath(parent, key, i), depth+1)
	case kindArray:
		path := childPath(parent, key, i)
		out := []any{}
		for more := m.enter(']'); more; more = m.more(']') {
			out = append(out, m.anyValue(path, "", len(out), depth+1))
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

// finish gives the event's strings their own allocation and builds its
// consent map.
func (m *eventMapper) finish() {
	e := m.e
	if len(m.arena) > 0 {
		r := rebaser{lo: uintptr(unsafe.Pointer(unsafe.SliceData(m.arena))), final: string(m.arena)}
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
// it. Strings elsewhere (static, or with their own allocation) stay.
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

// validateEvent checks the requirements of DESIGN §2 that are not about the
// JSON types of fields.
func validateEvent(e *Event, hasTimestamp bool) error {
	if e.EventID == "" {
		return errMissing("event_id")
	}
	if e.Type == "" {
		return errMissing("type")
	}
	if !hasTimestamp {
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
			return errMissingFor("product.id", e.Type)
		}
		for i := range e.Products {
			if e.Products[i].ID == "" {
				return errMissingFor(fieldPath{"products", i, "id"}.String(), e.Type)
			}
		}
	case e.Type == "products_searched":
		if e.Search.Query == "" {
			return errMissingFor("search.query", e.Type)
		}
	case e.Type == "order_completed":
		if e.Order.ID == "" {
			return errMissingFor("order.id", e.Type)
		}
	}
	return nil
}

func errMissing(field string) error {
	return fmt.Errorf("missing required field %q", field)
}

func errMissingFor(field, eventType string) error {
	return fmt.Errorf("missing required field %q for type %q", field, truncateString(eventType, 64))
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

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
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
			dst = AppendJSONFloat(dst, o.Revenue)
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
		dst = AppendJSONFloat(dst, p.Price)
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
	dst, ok := appendDateTime(dst, t)
	if !ok {
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
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

// appendDateTime appends the UTC time t as YYYY-MM-DDTHH:MM:SS, the part
// before the fraction that both time layouts share; it appends nothing and
// reports false for a year outside 0000-9999.
func appendDateTime(dst []byte, t time.Time) ([]byte, bool) {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return dst, false
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
	return dst, true
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
		return AppendJSONFloat(dst, v)
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
	return append(dst, b...)
}
