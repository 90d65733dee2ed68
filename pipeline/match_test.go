package pipeline

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	view := exampleEvent()
	view.Properties = map[string]any{"source": "email", "score": 0.7}
	add := exampleEvent()
	add.Type = "product_added"
	add.UserID = ""
	add.Product.Price = 10
	for _, tc := range []struct {
		src       string
		view, add bool
	}{
		{`type == "product_viewed"`, true, false},
		{`type in ["product_viewed", "product_added"]`, true, true},
		{`product.price > 20`, true, false},
		{`type == "product_added" && product.price <= 10`, false, true},
		{`consent.analytics && !consent.marketing`, true, true},
		{`properties.source == "email"`, true, false},
		{`(properties?.score ?? 0) > 0.5`, true, false},
		{`Key() == "u-1"`, true, false},
		{`user_id == "" && anonymous_id == "a-9"`, false, true},
		{`context.page.url startsWith "https://shop/"`, true, true},
		{`len(filters) == 1 && filters[0].op == "lt"`, true, true},
		{`timestamp.Hour() == 10`, true, true},
	} {
		m, err := CompileMatch(tc.src)
		if err != nil {
			t.Fatalf("CompileMatch(%q): %v", tc.src, err)
		}
		if m.String() != tc.src {
			t.Errorf("String() = %q, want %q", m.String(), tc.src)
		}
		mt := m.NewMatcher()
		for _, c := range []struct {
			e    *Event
			want bool
		}{{&view, tc.view}, {&add, tc.add}, {&view, tc.view}} {
			got, err := mt.Match(c.e)
			if err != nil {
				t.Fatalf("%q on %s: %v", tc.src, c.e.Type, err)
			}
			if got != c.want {
				t.Errorf("%q on %s = %v, want %v", tc.src, c.e.Type, got, c.want)
			}
		}
	}
}

func TestCompileMatchErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`type == `, "(1:8)"},
		{`typo == "product_viewed"`, "unknown name typo (1:1)"},
		{`product.price`, "expected bool, but got float64"},
		{`product.nope == 1`, "nope"},
		{`type == 1`, "mismatched types string and int) (1:6)"},
	} {
		_, err := CompileMatch(tc.src)
		if err == nil {
			t.Errorf("CompileMatch(%q) = nil error", tc.src)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "match expression: ") {
			t.Errorf("CompileMatch(%q) error %q does not carry %q", tc.src, err, tc.want)
		}
	}
}

func TestMatchRuntimeError(t *testing.T) {
	m, err := CompileMatch(`properties.n + 1 > 2`)
	if err != nil {
		t.Fatal(err)
	}
	e := exampleEvent()
	if _, err := m.NewMatcher().Match(&e); err == nil || !strings.HasPrefix(err.Error(), "match expression: ") {
		t.Errorf("Match with a nil property = %v, want a match expression error", err)
	}
}

// TestMatcherReusesVM checks that evaluating a match does not build a VM per
// call: the one allocation left is expr boxing the string field it loads.
func TestMatcherReusesVM(t *testing.T) {
	m, err := CompileMatch(`type == "product_viewed"`)
	if err != nil {
		t.Fatal(err)
	}
	mt := m.NewMatcher()
	e := exampleEvent()
	allocs := testing.AllocsPerRun(100, func() {
		if ok, err := mt.Match(&e); !ok || err != nil {
			t.Fatal(ok, err)
		}
	})
	if allocs > 1 {
		t.Errorf("Match allocates %v times per call, want at most 1", allocs)
	}
}
