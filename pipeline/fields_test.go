package pipeline

import (
	"strings"
	"testing"
)

func TestCompileField(t *testing.T) {
	e := exampleEvent()
	e.Properties = map[string]any{"s": "v", "empty": "", "n": 1.5, "i": 3.0, "big": 1e21, "b": true, "o": map[string]any{}, "z": nil, "go": 7}
	anon := Event{AnonymousID: "a-9"}
	for _, tc := range []struct {
		path   string
		e      *Event
		want   string
		wantOK bool
	}{
		{"type", &e, "product_viewed", true},
		{"key", &e, "u-1", true},
		{"key", &anon, "a-9", true},
		{"user_id", &e, "u-1", true},
		{"user_id", &anon, "", false},
		{"anonymous_id", &e, "a-9", true},
		{"event_id", &e, "e-1", true},
		{"product.id", &e, "p-1", true},
		{"product.sku", &e, "", false},
		{"product.category", &e, "apparel.outerwear", true},
		{"product.brand", &e, "acme", true},
		{"product.currency", &e, "USD", true},
		{"order.id", &e, "o-1", true},
		{"search.query", &e, "rain jacket", true},
		{"context.channel", &e, "web", true},
		{"context.locale", &e, "en-US", true},
		{"context.page.url", &e, "https://shop/p/1", true},
		{"properties.s", &e, "v", true},
		{"properties.empty", &e, "", false},
		{"properties.n", &e, "1.5", true},
		{"properties.i", &e, "3", true},
		{"properties.big", &e, "1e+21", true},
		{"properties.b", &e, "true", true},
		{"properties.go", &e, "7", true},
		{"properties.o", &e, "", false},
		{"properties.z", &e, "", false},
		{"properties.absent", &e, "", false},
		{"properties.s", &anon, "", false},
	} {
		f, err := CompileField(tc.path)
		if err != nil {
			t.Fatalf("CompileField(%q): %v", tc.path, err)
		}
		got, ok := f(tc.e)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestCompileFieldErrors(t *testing.T) {
	for _, path := range []string{"", "product", "product.price", "Product.ID", "properties.", "context.page.title"} {
		_, err := CompileField(path)
		if err == nil {
			t.Errorf("CompileField(%q) = nil error", path)
			continue
		}
		for _, part := range []string{`unknown field "` + path + `"`, "product.id", "context.page.url", "properties.<name>"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("CompileField(%q) error %q does not mention %q", path, err, part)
			}
		}
	}
}

func TestCompileNumber(t *testing.T) {
	e := exampleEvent()
	e.Properties = map[string]any{"n": 2.5, "s": "3", "i": 4}
	none := Event{}
	for _, tc := range []struct {
		path   string
		e      *Event
		want   float64
		wantOK bool
	}{
		{"product.price", &e, 49.9, true},
		{"product.price", &none, 0, false},
		{"product.quantity", &e, 1, true},
		{"product.quantity", &none, 0, false},
		{"order.revenue", &e, 99.8, true},
		{"order.revenue", &none, 0, false},
		{"search.results", &e, 12, true},
		{"search.results", &none, 0, false},
		{"properties.n", &e, 2.5, true},
		{"properties.i", &e, 4, true},
		{"properties.s", &e, 0, false},
		{"properties.absent", &e, 0, false},
	} {
		f, err := CompileNumber(tc.path)
		if err != nil {
			t.Fatalf("CompileNumber(%q): %v", tc.path, err)
		}
		got, ok := f(tc.e)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s = %v, %v; want %v, %v", tc.path, got, ok, tc.want, tc.wantOK)
		}
	}
	for _, path := range []string{"product.id", "price", "properties."} {
		_, err := CompileNumber(path)
		if err == nil || !strings.Contains(err.Error(), "order.revenue") {
			t.Errorf("CompileNumber(%q) error = %v, want one listing the valid fields", path, err)
		}
	}
}
