package connectors

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/pipeline"
)

type deadLetterLine struct {
	Reason        string  `json:"reason"`
	Split         int32   `json:"split"`
	Offset        int64   `json:"offset"`
	Payload       *string `json:"payload"`
	PayloadBase64 *string `json:"payload_base64"`
}

func decodeDeadLetters(t *testing.T, data []byte) []deadLetterLine {
	t.Helper()
	var out []deadLetterLine
	for _, l := range bytes.SplitAfter(data, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		if l[len(l)-1] != '\n' {
			t.Fatalf("line %q does not end with a newline", l)
		}
		dec := json.NewDecoder(bytes.NewReader(l))
		dec.DisallowUnknownFields()
		var d deadLetterLine
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, d)
	}
	return out
}

func TestDeadLetterFormat(t *testing.T) {
	var ctl strings.Builder
	for c := range 0x20 {
		ctl.WriteByte(byte(c))
	}
	letters := []pipeline.DeadLetter{
		{Reason: "not JSON: unexpected end", Split: 0, Offset: 12, Payload: []byte(`{"event_id":"e-1",`)},
		{Reason: `missing "event_id"`, Split: 3, Offset: 1 << 40, Payload: []byte("quote \" backslash \\ tab\tnl\n ctl" + ctl.String() + " é € 😀 \u2028 </script>")},
		{Reason: "bad bytes", Split: 1, Offset: 7, Payload: []byte{'{', 0xff, 0xfe, '}'}},
		{Reason: "reason with bad byte \xff", Split: 2, Offset: 8, Payload: nil},
	}
	path := filepath.Join(t.TempDir(), "dl", "dead.jsonl")
	dl, err := openDeadLetterFile(DeadLetterFileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.WriteDeadLetters(letters); err != nil {
		t.Fatal(err)
	}
	if err := dl.Flush(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeDeadLetters(t, data)
	if len(got) != len(letters) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(letters), data)
	}
	for i, l := range letters {
		g := got[i]
		wantReason := strings.ToValidUTF8(l.Reason, "\uFFFD")
		if g.Reason != wantReason || g.Split != l.Split || g.Offset != l.Offset {
			t.Errorf("letter %d = %q %d %d, want %q %d %d", i, g.Reason, g.Split, g.Offset, wantReason, l.Split, l.Offset)
		}
		switch {
		case i == 2:
			if g.Payload != nil || g.PayloadBase64 == nil {
				t.Fatalf("letter %d: want payload_base64 only", i)
			}
			raw, err := base64.StdEncoding.DecodeString(*g.PayloadBase64)
			if err != nil || !bytes.Equal(raw, l.Payload) {
				t.Errorf("letter %d: payload_base64 decodes to %q (%v)", i, raw, err)
			}
		default:
			if g.PayloadBase64 != nil || g.Payload == nil || *g.Payload != string(l.Payload) {
				t.Errorf("letter %d: payload %v, want %q", i, g.Payload, l.Payload)
			}
		}
	}
	// The first line, exactly.
	want := `{"reason":"not JSON: unexpected end","split":0,"offset":12,"payload":"{\"event_id\":\"e-1\","}` + "\n"
	if first, _, _ := bytes.Cut(data, []byte("\n")); string(first)+"\n" != want {
		t.Errorf("first line\n%s\nwant\n%s", first, want)
	}
	if err := dl.Close(); err != nil {
		t.Fatal(err)
	}
}

// Dead letters larger than the write buffer, written concurrently, stay whole.
func TestDeadLetterConcurrentLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	dl, err := openDeadLetterFile(DeadLetterFileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("\"", 300<<10) // escapes to twice the write buffer
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				payload := []byte(fmt.Sprintf("w%d-%d", w, i))
				if i%5 == 0 {
					payload = append(payload, big...)
				}
				if err := dl.WriteDeadLetters([]pipeline.DeadLetter{{Reason: "r", Split: int32(w), Offset: int64(i), Payload: payload}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := dl.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeDeadLetters(t, data)
	if len(got) != 80 {
		t.Fatalf("%d lines, want 80", len(got))
	}
	for _, g := range got {
		want := fmt.Sprintf("w%d-%d", g.Split, g.Offset)
		if g.Offset%5 == 0 {
			want += big
		}
		if g.Payload == nil || *g.Payload != want {
			t.Fatalf("letter %d/%d: wrong payload", g.Split, g.Offset)
		}
	}
}

func TestDeadLetterFileConfig(t *testing.T) {
	if _, err := openDeadLetterFile(DeadLetterFileConfig{}); err == nil {
		t.Error("no path: want an error")
	}
}
