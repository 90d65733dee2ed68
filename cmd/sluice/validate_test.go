package main

import (
	"strings"
	"testing"
)

func TestValidateSaysTheShape(t *testing.T) {
	out, stderr, err := sluice(t, "validate", "../../examples/retail.yaml")
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, stderr)
	}
	want := "ok (5 operators, 1 sink, 8 partitions; optional event fields decoded: context.page.url)"
	if !strings.Contains(out, want) {
		t.Errorf("validate said %q, want %q", out, want)
	}
}
