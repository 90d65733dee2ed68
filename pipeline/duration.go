package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

const (
	day  = 24 * time.Hour
	week = 7 * day
)

// durationUnits maps the unit suffixes ParseDuration accepts to their length.
var durationUnits = map[string]uint64{
	"ns": uint64(time.Nanosecond),
	"us": uint64(time.Microsecond),
	"µs": uint64(time.Microsecond), // U+00B5 micro sign
	"μs": uint64(time.Microsecond), // U+03BC Greek small letter mu
	"ms": uint64(time.Millisecond),
	"s":  uint64(time.Second),
	"m":  uint64(time.Minute),
	"h":  uint64(time.Hour),
	"d":  uint64(day),
	"w":  uint64(week),
}

// ParseDuration parses a duration written in Go syntax (time.ParseDuration)
// extended with the units d (24h) and w (7d): "90s", "1.5h", "7d", "2w",
// "1d12h", "-30m". A day is always 24 hours: event time has no daylight
// saving.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	bad := func(why string) (time.Duration, error) {
		if why == "" {
			return 0, fmt.Errorf("invalid duration %q", orig)
		}
		return 0, fmt.Errorf("invalid duration %q: %s", orig, why)
	}
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return bad("")
	}
	var total uint64
	for s != "" {
		if c := s[0]; c != '.' && (c < '0' || c > '9') {
			return bad("")
		}
		// The integer part.
		var whole uint64
		i := 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if whole > (1<<63-1)/10 {
				return bad("too large")
			}
			whole = whole*10 + uint64(s[i]-'0')
			if whole > 1<<63 {
				return bad("too large")
			}
		}
		pre := i > 0
		s = s[i:]
		// The fraction: frac/scale, digits past what fits are dropped.
		var frac uint64
		scale := 1.0
		post := false
		if s != "" && s[0] == '.' {
			s = s[1:]
			i = 0
			overflow := false
			for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
				if overflow || frac > (1<<63-1)/10 {
					overflow = true
					continue
				}
				y := frac*10 + uint64(s[i]-'0')
				if y > 1<<63 {
					overflow = true
					continue
				}
				frac = y
				scale *= 10
			}
			post = i > 0
			s = s[i:]
		}
		if !pre && !post {
			return bad("")
		}
		// The unit.
		i = 0
		for ; i < len(s) && s[i] != '.' && (s[i] < '0' || s[i] > '9'); i++ {
		}
		if i == 0 {
			return bad("missing unit (ns, us, ms, s, m, h, d or w)")
		}
		u := s[:i]
		s = s[i:]
		unit, ok := durationUnits[u]
		if !ok {
			return bad(fmt.Sprintf("unknown unit %q (want ns, us, ms, s, m, h, d or w)", u))
		}
		if whole > 1<<63/unit {
			return bad("too large")
		}
		v := whole * unit
		if frac > 0 {
			v += uint64(float64(frac) * (float64(unit) / scale))
			if v > 1<<63 {
				return bad("too large")
			}
		}
		total += v
		if total > 1<<63 {
			return bad("too large")
		}
	}
	if neg {
		return -time.Duration(total), nil
	}
	if total > 1<<63-1 {
		return bad("too large")
	}
	return time.Duration(total), nil
}

// String formats the duration so that ParseDuration reads it back: whole
// weeks as "2w", whole days as "3d", longer durations as days plus Go syntax
// ("1d12h"), shorter ones in Go syntax without zero minutes or seconds
// ("90m" is "1h30m").
func (d Duration) String() string {
	td := time.Duration(d)
	if td == 0 {
		return "0s"
	}
	if td == math.MinInt64 {
		return td.String()
	}
	var b []byte
	if td < 0 {
		b = append(b, '-')
		td = -td
	}
	if td%week == 0 {
		b = strconv.AppendInt(b, int64(td/week), 10)
		return string(append(b, 'w'))
	}
	if days := td / day; days > 0 {
		b = strconv.AppendInt(b, int64(days), 10)
		b = append(b, 'd')
		td %= day
		if td == 0 {
			return string(b)
		}
	}
	s := td.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return string(append(b, s...))
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON encodes the duration as a JSON string ("1d12h").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON decodes a JSON string with ParseDuration; null leaves the
// duration unchanged.
func (d *Duration) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30m\" or \"7d\": %w", err)
	}
	return d.UnmarshalText([]byte(s))
}

// MarshalYAML implements yaml.InterfaceMarshaler: a duration is written as
// its String.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML implements yaml.NodeUnmarshaler, so that a bad duration is
// reported at its line and column. A null leaves the duration unchanged.
func (d *Duration) UnmarshalYAML(node ast.Node) error {
	node = unwrapNode(node, nil)
	var s string
	switch n := node.(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.StringNode:
		s = n.Value
	case ast.ScalarNode:
		s = n.GetToken().Value
	default:
		return &nodeError{msg: "expected a duration such as \"30m\" or \"7d\", got " + describeNode(node), tk: node.GetToken()}
	}
	v, err := ParseDuration(s)
	if err != nil {
		return &nodeError{msg: err.Error(), tk: node.GetToken()}
	}
	*d = Duration(v)
	return nil
}
