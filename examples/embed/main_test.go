package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/connectors/generator"
	"github.com/sluicehq/sluice/pipeline"
)

func TestEmbeddedPipelineFindsBigSpenders(t *testing.T) {
	const count = 8000
	outPath := filepath.Join(t.TempDir(), "out.txt")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	n, err := run(context.Background(), out, count)
	out.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no big spender found")
	}
	// Independently: every shopper reported reached 300 in lifetime
	// revenue in the generated stream, and is reported once.
	revenue := map[string]float64{}
	gen, err := generator.New(generator.Config{Count: count, Users: 300, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	var e pipeline.Event
	for gen.Next(&e) {
		if e.Type == "order_completed" {
			revenue[e.Key()] += e.Order.Revenue
		}
	}
	f, err := os.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, _ := strings.Cut(sc.Text(), " ")
		if !strings.HasPrefix(rest, "became a big spender") {
			continue
		}
		if seen[key] {
			t.Errorf("%s reported twice", key)
		}
		seen[key] = true
		if revenue[key] < 300 {
			t.Errorf("%s reported with lifetime revenue %.2f < 300", key, revenue[key])
		}
	}
	if len(seen) != n {
		t.Errorf("printed %d big spenders, counted %d", len(seen), n)
	}
}
