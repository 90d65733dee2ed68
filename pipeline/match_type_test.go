package pipeline

import (
	"testing"

	"github.com/expr-lang/expr/vm"
)

// `type == "..."` is evaluated without the VM, with the VM's results.
func TestMatchTypeEqualityShortcut(t *testing.T) {
	for _, c := range []struct {
		src      string
		shortcut bool
	}{
		{`type == "product_viewed"`, true},
		{`"product_viewed" == type`, true},
		{`(type == "product_viewed")`, true},
		{`type == ""`, true},
		{`type != "product_viewed"`, false},
		{`type == "product_viewed" && product.price > 20`, false},
		{`user_id == "product_viewed"`, false},
		{`type in ["product_viewed"]`, false},
	} {
		m, err := CompileMatch(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if m.typeIs != c.shortcut {
			t.Errorf("%s: shortcut %v, want %v", c.src, m.typeIs, c.shortcut)
		}
		mt := m.NewMatcher()
		for _, typ := range []string{"product_viewed", "product_added", "", "Product_viewed"} {
			e := &Event{Type: typ, UserID: "product_viewed", Product: Product{Price: 30}}
			got, err := mt.Match(e)
			if err != nil {
				t.Fatalf("%s on %q: %v", c.src, typ, err)
			}
			out, err := vm.Run(m.prog, e)
			if err != nil {
				t.Fatalf("%s on %q: vm: %v", c.src, typ, err)
			}
			if want, _ := out.(bool); got != want {
				t.Errorf("%s on type %q = %v, the VM says %v", c.src, typ, got, want)
			}
		}
	}
}
