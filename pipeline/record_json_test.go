package pipeline

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// countPayload encodes itself, as an operator's payload would.
type countPayload struct {
	Group string
	Count int64
}

func (p countPayload) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"group":`...)
	dst = AppendJSONString(dst, p.Group)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, p.Count, 10)
	return append(dst, '}')
}

func TestAppendRecordJSON(t *testing.T) {
	at := time.Date(2026, 11, 28, 11, 0, 0, 123456789, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name string
		data any
		want string
	}{
		{"appender", countPayload{Group: "p-1", Count: 7}, `{"group":"p-1","count":7}`},
		{"encoding/json", &Erasure{Key: "u-1", Reason: "consent withdrawn"}, `{"key":"u-1","reason":"consent withdrawn"}`},
		{"map", map[string]any{"b": 1, "a": "<x>"}, `{"a":"\u003cx\u003e","b":1}`},
		{"nil", nil, `{}`},
		{"unencodable", math.NaN(), `null,"data_error":"json: unsupported value: NaN"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Record{ID: "views:p-1:1795860000000:0", Type: "window_result", Key: "p-\"1\"", Time: at, Operator: "views", Data: tc.data}
			got := string(AppendRecordJSON([]byte("x"), &r))
			want := `x{"id":"views:p-1:1795860000000:0","type":"window_result","key":"p-\"1\"",` +
				`"time":"2026-11-28T10:00:00.123456789Z","operator":"views","data":` + tc.want + `}`
			if got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
			if !json.Valid([]byte(got[1:])) {
				t.Errorf("invalid JSON: %s", got[1:])
			}
		})
	}
}

func TestAppendRecordJSONTime(t *testing.T) {
	r := Record{Time: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
	if got := string(AppendRecordJSON(nil, &r)); !strings.Contains(got, `"time":"2026-11-28T10:00:00Z"`) {
		t.Errorf("got %s, want a whole-second RFC 3339 time", got)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"plain ascii", `"plain ascii"`},
		{`q"b\s/`, `"q\"b\\s/"`},
		{"\n\r\t\b\f\x00\x1f\x7f", `"\n\r\t\b\f\u0000\u001f` + "\x7f" + `"`},
		{"<a&b>", `"<a&b>"`},
		{"é日本😀", `"é日本😀"`},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"a\xffb\xc3", `"a\ufffdb\ufffd"`},
	} {
		if got := string(AppendJSONString(nil, tc.in)); got != tc.want {
			t.Errorf("AppendJSONString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// encodingJSONString is what encoding/json writes for s, without HTML
// escaping.
func encodingJSONString(t *testing.T, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "abc", "a\"b\\c\n\u2028\xff", "日本\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendJSONString(nil, s)
		if want := encodingJSONString(t, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSONString(%q) = %s, encoding/json writes %s", s, got, want)
		}
		if utf8.ValidString(s) {
			var back string
			if err := json.Unmarshal(got, &back); err != nil || back != s {
				t.Fatalf("%s decodes to %q (%v), want %q", got, back, err, s)
			}
		}
	})
}
