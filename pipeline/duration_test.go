package pipeline

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"-0", 0},
		{"1s", time.Second},
		{"90s", 90 * time.Second},
		{"1.5h", 90 * time.Minute},
		{"100ns", 100},
		{"1us", time.Microsecond},
		{"1µs", time.Microsecond},
		{"1μs", time.Microsecond},
		{"250ms", 250 * time.Millisecond},
		{"1d", 24 * time.Hour},
		{"7d", 7 * 24 * time.Hour},
		{"1w", 7 * 24 * time.Hour},
		{"2w", 14 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"1w2d3h4m5s", (9*24+3)*time.Hour + 4*time.Minute + 5*time.Second},
		{"1.5d", 36 * time.Hour},
		{".5d", 12 * time.Hour},
		{"1.d", 24 * time.Hour},
		{"-1d", -24 * time.Hour},
		{"+2h", 2 * time.Hour},
		{"0d", 0},
		{"15250w", 15250 * 7 * 24 * time.Hour},
	} {
		got, err := ParseDuration(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParseDurationErrors(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{"", `invalid duration ""`},
		{"-", `invalid duration "-"`},
		{"d", `invalid duration "d"`},
		{".d", `invalid duration ".d"`},
		{"1", `invalid duration "1": missing unit (ns, us, ms, s, m, h, d or w)`},
		{"30", `invalid duration "30": missing unit (ns, us, ms, s, m, h, d or w)`},
		{"1x", `invalid duration "1x": unknown unit "x" (want ns, us, ms, s, m, h, d or w)`},
		{"1dd", `invalid duration "1dd": unknown unit "dd" (want ns, us, ms, s, m, h, d or w)`},
		{"1D", `invalid duration "1D": unknown unit "D" (want ns, us, ms, s, m, h, d or w)`},
		{"1d-1h", `invalid duration "1d-1h": unknown unit "d-" (want ns, us, ms, s, m, h, d or w)`},
		{"1 d", `invalid duration "1 d": unknown unit " d" (want ns, us, ms, s, m, h, d or w)`},
		{"15251w", `invalid duration "15251w": too large`},
		{"9223372036854775808ns", `invalid duration "9223372036854775808ns": too large`},
		{"99999999999999999999s", `invalid duration "99999999999999999999s": too large`},
		{"106751d23h47m16s854775808ns", `invalid duration "106751d23h47m16s854775808ns": too large`},
	} {
		got, err := ParseDuration(c.in)
		if err == nil || err.Error() != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want error %q", c.in, got, err, c.want)
		}
	}
}

// TestParseDurationGoSyntax checks that Go's syntax means what it means to
// time.ParseDuration.
func TestParseDurationGoSyntax(t *testing.T) {
	for _, in := range []string{
		"0", "5s", "30s", "1478s", "-5s", "+5s", "-0", "+0", "5.0s", "5.6s", "5.s", ".5s", "1.0s", "1.00s",
		"1.004s", "1.0040s", "100.00100s", "10ns", "11us", "12µs", "13ms", "14s", "15m", "16h", "3h30m",
		"10.5s4m", "-2m3.4s", "1h2m3s4ms5us6ns", "39h9m14.425s", "52763797000ns", "0.3333333333333333333h",
		"9007199254740993ns", "9223372036854775807ns", "9223372036854775.807us", "9223372036s854ms775us807ns",
		"-9223372036854775808ns", "-9223372036854775.808us", "-2562047h47m16.854775808s", "0.100000000000000000000h",
		"0.830103483285477580700h",
	} {
		want, werr := time.ParseDuration(in)
		got, err := ParseDuration(in)
		if (werr == nil) != (err == nil) || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; time.ParseDuration gives %v, %v", in, got, err, want, werr)
		}
	}
}

func TestDurationString(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{time.Second, "1s"},
		{1500 * time.Millisecond, "1.5s"},
		{250 * time.Millisecond, "250ms"},
		{time.Minute, "1m"},
		{90 * time.Minute, "1h30m"},
		{time.Hour, "1h"},
		{time.Hour + time.Second, "1h0m1s"},
		{24 * time.Hour, "1d"},
		{36 * time.Hour, "1d12h"},
		{24*time.Hour + time.Second, "1d1s"},
		{7 * 24 * time.Hour, "1w"},
		{14 * 24 * time.Hour, "2w"},
		{8 * 24 * time.Hour, "8d"},
		{-24 * time.Hour, "-1d"},
		{-90 * time.Second, "-1m30s"},
		{-1 << 63, "-2562047h47m16.854775808s"},
	} {
		got := Duration(c.d).String()
		if got != c.want {
			t.Errorf("Duration(%v).String() = %q, want %q", c.d, got, c.want)
		}
		back, err := ParseDuration(got)
		if err != nil || back != c.d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", got, back, err, c.d)
		}
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1d12h")); err != nil || d.D() != 36*time.Hour {
		t.Fatalf("UnmarshalText: %v, %v", d, err)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Fatal("UnmarshalText(soon): no error")
	}
	b, err := Duration(2 * week).MarshalText()
	if err != nil || string(b) != "2w" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
}

func TestDurationJSON(t *testing.T) {
	type cfg struct {
		Gap Duration `json:"gap"`
	}
	b, err := json.Marshal(cfg{Gap: Duration(36 * time.Hour)})
	if err != nil || string(b) != `{"gap":"1d12h"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var c cfg
	if err := json.Unmarshal([]byte(`{"gap":"2w"}`), &c); err != nil || c.Gap.D() != 14*24*time.Hour {
		t.Fatalf("Unmarshal = %v, %v", c.Gap, err)
	}
	c.Gap = Duration(time.Second)
	if err := json.Unmarshal([]byte(`{"gap":null}`), &c); err != nil || c.Gap.D() != time.Second {
		t.Fatalf("Unmarshal(null) = %v, %v; want it unchanged", c.Gap, err)
	}
	for _, in := range []string{`{"gap":"3x"}`, `{"gap":30}`} {
		if err := json.Unmarshal([]byte(in), &c); err == nil {
			t.Errorf("Unmarshal(%s): no error", in)
		}
	}
}

func TestDurationYAML(t *testing.T) {
	type cfg struct {
		Gap  Duration `yaml:"gap"`
		Zero Duration `yaml:"zero"`
	}
	var c cfg
	if err := yaml.UnmarshalWithOptions([]byte("gap: 1d12h\nzero: 0\n"), &c, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	if c.Gap.D() != 36*time.Hour || c.Zero != 0 {
		t.Fatalf("got %+v", c)
	}
	b, err := yaml.Marshal(cfg{Gap: Duration(2 * week)})
	if err != nil || string(b) != "gap: 2w\nzero: 0s\n" {
		t.Fatalf("Marshal = %q, %v", b, err)
	}
	for _, c := range []struct {
		in   string
		line int
		col  int
		msg  string
	}{
		{"gap: 3x\n", 1, 6, `invalid duration "3x": unknown unit "x" (want ns, us, ms, s, m, h, d or w)`},
		{"zero: 0\ngap: 30\n", 2, 6, `invalid duration "30": missing unit (ns, us, ms, s, m, h, d or w)`},
		{"gap: [1d]\n", 1, 6, `expected a duration such as "30m" or "7d", got a list`},
	} {
		err := yaml.UnmarshalWithOptions([]byte(c.in), &cfg{}, yaml.Strict())
		var ye yaml.Error
		if !asYAMLError(err, &ye) {
			t.Fatalf("%q: error %v is not a positioned yaml.Error", c.in, err)
		}
		pos := ye.GetToken().Position
		if pos.Line != c.line || pos.Column != c.col || ye.GetMessage() != c.msg {
			t.Errorf("%q: error at %d:%d %q, want %d:%d %q", c.in, pos.Line, pos.Column, ye.GetMessage(), c.line, c.col, c.msg)
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: Error() = %q lacks the message", c.in, err.Error())
		}
	}
}

func asYAMLError(err error, target *yaml.Error) bool {
	if err == nil {
		return false
	}
	ye, ok := err.(yaml.Error)
	if ok {
		*target = ye
	}
	return ok
}

func BenchmarkParseDuration(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDuration("1d12h30m"); err != nil {
			b.Fatal(err)
		}
	}
}
