package main

import (
	"strings"
	"testing"
	"time"
)

func TestGenStart(t *testing.T) {
	out, stderr, err := sluice(t, "gen", "--count", "3", "--start", "2027-01-01T10:00:00+02:00")
	if err != nil {
		t.Fatalf("gen: %v\n%s", err, stderr)
	}
	first, _, _ := strings.Cut(out, "\n")
	if !strings.Contains(first, `"timestamp":"2027-01-01T08:00:00.000Z"`) {
		t.Errorf("first event %s, want its timestamp at --start (in UTC)", first)
	}

	before := time.Now().Add(-time.Second)
	now, err := parseStart("now")
	if err != nil || now.Before(before) || now.After(time.Now()) || now.Location() != time.UTC {
		t.Errorf("parseStart(now) = %v, %v; want the current time in UTC", now, err)
	}

	_, stderr, err = sluice(t, "gen", "--count", "1", "--start", "yesterday")
	if err == nil || !strings.Contains(stderr, `--start "yesterday"`) {
		t.Errorf("gen --start yesterday: err %v, stderr %q; want an error naming the flag and its value", err, stderr)
	}
}
