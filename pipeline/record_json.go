package pipeline

import (
	"encoding/json"
	"time"
	"unicode/utf8"
)

// AppendRecordJSON appends the JSON encoding of r (DESIGN §4) to dst and
// returns the extended buffer:
//
//	{"id":..,"type":..,"key":..,"time":"<RFC 3339, ns, UTC>","operator":..,"data":..}
//
// Data is encoded by its AppendJSON method when it implements JSONAppender,
// else by encoding/json; nil data is {}. Should encoding/json fail (a NaN,
// a channel), data is null and a "data_error" field says why, so the
// failure shows in the output instead of losing the record.
func AppendRecordJSON(dst []byte, r *Record) []byte {
	dst = append(dst, `{"id":`...)
	dst = AppendJSONString(dst, r.ID)
	dst = append(dst, `,"type":`...)
	dst = AppendJSONString(dst, r.Type)
	dst = append(dst, `,"key":`...)
	dst = AppendJSONString(dst, r.Key)
	dst = append(dst, `,"time":"`...)
	dst = appendRFC3339Nano(dst, r.Time)
	dst = append(dst, `","operator":`...)
	dst = AppendJSONString(dst, r.Operator)
	dst = append(dst, `,"data":`...)
	switch data := r.Data.(type) {
	case nil:
		dst = append(dst, '{', '}')
	case JSONAppender:
		dst = data.AppendJSON(dst)
	default:
		b, err := json.Marshal(data)
		if err != nil {
			dst = append(dst, `null,"data_error":`...)
			dst = AppendJSONString(dst, err.Error())
		} else {
			dst = append(dst, b...)
		}
	}
	return append(dst, '}')
}

// appendRFC3339Nano appends t in UTC as t.UTC().AppendFormat(dst,
// time.RFC3339Nano) does (the fraction without its trailing zeros, none for
// a whole second), without going through the layout interpreter.
func appendRFC3339Nano(dst []byte, t time.Time) []byte {
	t = t.UTC()
	dst, ok := appendDateTime(dst, t)
	if !ok {
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
	if ns := t.Nanosecond(); ns != 0 {
		width := 9
		for ns%10 == 0 {
			ns /= 10
			width--
		}
		dst = append(dst, '.')
		dst = appendDigits(dst, ns, width)
	}
	return append(dst, 'Z')
}

// jsonSafe[b] is true for the ASCII bytes that appear in a JSON string as
// they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s to dst as a quoted JSON string and returns the
// extended buffer. Its output is that of encoding/json with HTML escaping
// off: quotes, backslashes and control characters are escaped, U+2028 and
// U+2029 become \u2028 and \u2029, and each byte of invalid UTF-8 becomes
// \ufffd. Plain ASCII is copied in one step.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf && jsonSafe[s[i]] {
		i++
	}
	if i == len(s) {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	return appendJSONStringSlow(dst, s, i)
}

// appendJSONStringSlow appends the rest of the quoted string s whose first
// start bytes need no escaping.
func appendJSONStringSlow(dst []byte, s string, start int) []byte {
	dst = append(dst, s[:start]...)
	from := start // s[from:i] is pending, needing no escape
	for i := start; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[from:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			from = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[from:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[from:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		from = i
	}
	dst = append(dst, s[from:]...)
	return append(dst, '"')
}
