package operators

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/state"
)

// Defaults of an abandonment detector's config.
const (
	defaultCartTimeout    = 30 * time.Minute
	defaultBrowseMinViews = 3
	defaultBrowseTimeout  = 30 * time.Minute
	defaultCooldown       = 24 * time.Hour
)

// AbandonmentDetectorConfig configures an abandonment detector.
type AbandonmentDetectorConfig struct {
	// CartTimeout is how long after a key's last cart activity an unbought
	// cart counts as abandoned. Default (or 0) 30m.
	CartTimeout pipeline.Duration `yaml:"cart_timeout"`
	// BrowseMinViews is the number of product views a browse session needs
	// to count as abandoned browsing. Default (or 0) 3.
	BrowseMinViews int `yaml:"browse_min_views"`
	// BrowseTimeout is the inactivity that ends a browse session: a key's
	// events less than this apart form one session. Default (or 0) 30m.
	BrowseTimeout pipeline.Duration `yaml:"browse_timeout"`
	// Cooldown is the least time between two records of the same kind for
	// a key: a cart_abandoned (or browse_abandoned) less than Cooldown after
	// the key's previous one is not emitted. Default 24h; 0 turns it off.
	Cooldown *pipeline.Duration `yaml:"cooldown"`
}

// Validate checks the config.
func (c AbandonmentDetectorConfig) Validate() error {
	switch {
	case c.CartTimeout < 0:
		return fmt.Errorf("cart_timeout: %s is negative", c.CartTimeout)
	case c.BrowseTimeout < 0:
		return fmt.Errorf("browse_timeout: %s is negative", c.BrowseTimeout)
	case c.BrowseMinViews < 0:
		return fmt.Errorf("browse_min_views: %d is negative", c.BrowseMinViews)
	case c.Cooldown != nil && *c.Cooldown < 0:
		return fmt.Errorf("cooldown: %s is negative", *c.Cooldown)
	}
	return nil
}

func init() {
	pipeline.RegisterOperator("abandonment_detector", func(id string, cfg AbandonmentDetectorConfig) (pipeline.Factory, error) {
		a := abandonmentDetector{
			cartTimeout:   int64(defaultCartTimeout),
			minViews:      defaultBrowseMinViews,
			browseTimeout: int64(defaultBrowseTimeout),
			cooldown:      int64(defaultCooldown),
		}
		if cfg.CartTimeout > 0 {
			a.cartTimeout = int64(cfg.CartTimeout)
		}
		if cfg.BrowseMinViews > 0 {
			a.minViews = int64(cfg.BrowseMinViews)
		}
		if cfg.BrowseTimeout > 0 {
			a.browseTimeout = int64(cfg.BrowseTimeout)
		}
		if cfg.Cooldown != nil {
			a.cooldown = int64(*cfg.Cooldown)
		}
		return func() pipeline.Operator {
			op := a
			return &op
		}, nil
	})
}

// abandonmentTimer is the name of the detector's one timer per key, set at
// the earliest of the key's deadlines.
const abandonmentTimer = "due"

// abandonmentDetector emits cart_abandoned and browse_abandoned records.
//
// Cart. A key's cart is built from its events: product_added adds its
// quantity (1 when absent or not positive) of each product it carries (the
// `products` list when not empty, else `product`), and records the product's
// price when the event gives one; product_removed takes 1 off each product
// it carries, never below zero (a product at zero leaves the cart);
// order_completed clears the cart. Items keep the order in which they were
// first added. Cart activity is product_added, product_removed, cart_viewed
// and checkout_started. The stage is `checkout` from a checkout_started,
// checkout_step_completed or payment_info_entered (the last two only
// change the stage of a cart that exists; they are not cart activity) until
// the cart is cleared, `cart` before.
//
// At last cart activity + cart_timeout (a timer; new cart activity re-arms
// it, an out-of-order one never moves it back) the detector emits, if the
// cart is not empty, `cart_abandoned` {items [{product_id, quantity,
// price}], cart_value (sum of quantity × price, rounded to 6 decimals),
// last_activity, stage} at the timer's time. The cart persists after the
// record: more activity re-arms the timer, and order_completed clears it. A
// cart that is empty when its timer fires is forgotten (its stage too).
//
// Browse. A browse session is a maximal run of a key's events (of any type)
// less than browse_timeout apart, as the sessionizer's sessions are with its
// gap; the detector follows a session from its first product_viewed or
// product_added. At the session's last event + browse_timeout, if the
// session had at least browse_min_views product_viewed events (with a
// product id) and no product_added, it emits `browse_abandoned` {products
// [{product_id, views}] most viewed first (ties by product id), view_count
// (the session's product views)} at that time. An event exactly
// browse_timeout after the session's last one starts a new session.
//
// Cooldown. A record is not emitted when the key's previous record of the
// same kind was emitted less than cooldown earlier (in event time); a
// suppressed record does not restart the cooldown.
//
// Time. Records are emitted from the key's timer, when the watermark
// reaches it or just before the key's next event at or after it, so results
// depend only on the key's own events. An event older than the watermark is
// late: it goes to the late output and changes nothing. Out-of-order events
// within the watermark are applied in arrival order (an out-of-order event
// joins the open browse session).
//
// State: one binary value per key (the cart items, stage and last activity;
// the open browse session's last event time and views per product; the
// times of the last records, kept for cooldown), and one timer per key. A
// key's state is deleted once it has no cart, no open session and no
// record within cooldown.
type abandonmentDetector struct {
	cartTimeout   int64
	minViews      int64
	browseTimeout int64
	cooldown      int64

	state *state.Value[*abandonState]
}

// abandonState is a key's state.
type abandonState struct {
	// cartArmed: the cart timer is pending (at cartAt + cart_timeout).
	cartArmed bool
	checkout  bool
	// cartAt is the event time of the last cart activity.
	cartAt int64
	items  []cartItem

	// browseOpen: a browse session is being followed.
	browseOpen  bool
	browseAdded bool
	// browseAt is the event time of the session's last event.
	browseAt  int64
	viewCount int64
	// views counts the views per product; nil once browseAdded.
	views []productViews

	// lastCart and lastBrowse are the times of the key's last records of
	// each kind, when hasLastCart / hasLastBrowse.
	hasLastCart, hasLastBrowse bool
	lastCart, lastBrowse       int64
}

// cartItem is one product in a cart.
type cartItem struct {
	id    string
	qty   int64
	price float64
}

// productViews counts the views of one product in a browse session.
type productViews struct {
	id string
	n  int64
}

// cartOpen reports whether the key has a cart to follow.
func (s *abandonState) cartOpen() bool { return s.cartArmed || len(s.items) > 0 }

// empty reports whether the state holds nothing.
func (s *abandonState) empty() bool {
	return !s.cartOpen() && !s.browseOpen && !s.hasLastCart && !s.hasLastBrowse
}

// EventFields implements pipeline.EventFieldsReader: the detector
// reads no optional field (products by id, price and quantity) and
// forwards no event.
func (a *abandonmentDetector) EventFields() (pipeline.EventFields, bool) { return 0, false }

func (a *abandonmentDetector) Open(oc *pipeline.OpenContext) error {
	a.state = pipeline.NewValue(oc, "state", state.Codec[*abandonState](abandonCodec{}))
	return nil
}

// deadline returns when the key's timer must fire, if at all: the earliest
// of the cart timeout and the session end, or, with neither, the end of the
// cooldown of the last record.
func (a *abandonmentDetector) deadline(s *abandonState) (int64, bool) {
	if s == nil {
		return 0, false
	}
	at, ok := int64(math.MaxInt64), false
	if s.cartArmed {
		at, ok = s.cartAt+a.cartTimeout, true
	}
	if s.browseOpen {
		at, ok = min(at, s.browseAt+a.browseTimeout), true
	}
	if ok || s.cartOpen() {
		return at, ok
	}
	if s.hasLastCart {
		at, ok = s.lastCart+a.cooldown, true
	}
	if s.hasLastBrowse {
		if !ok || s.lastBrowse+a.cooldown > at {
			at = s.lastBrowse + a.cooldown
		}
		ok = true
	}
	return at, ok
}

// save stores s (or deletes it when empty) and moves the key's timer from
// the deadline before the change to the one after.
func (a *abandonmentDetector) save(ctx *pipeline.Context, s *abandonState, before int64, hadBefore bool) {
	key := ctx.Key()
	if s.empty() {
		a.state.Delete(key)
	} else {
		a.state.Put(key, s)
	}
	after, has := a.deadline(s)
	switch {
	case !has && hadBefore:
		ctx.DeleteTimer(abandonmentTimer)
	case has && (!hadBefore || after != before):
		ctx.SetTimer(abandonmentTimer, pipeline.TimeFromNanos(after))
	}
}

func (a *abandonmentDetector) OnEvent(ctx *pipeline.Context, e *pipeline.Event) error {
	t := ctx.TimeNanos()
	if t < ctx.WatermarkNanos() {
		ctx.Late(e, "event time before the watermark")
		return nil
	}
	s, _, err := a.state.Get(ctx.Key())
	if err != nil {
		return fmt.Errorf("abandonment_detector: %w", err)
	}
	before, hadBefore := a.deadline(s)
	changed := false
	// mut returns the state to change, creating it.
	mut := func() *abandonState {
		if s == nil {
			s = &abandonState{}
		}
		changed = true
		return s
	}
	if s != nil && s.browseOpen && t > s.browseAt {
		s.browseAt, changed = t, true
	}
	switch e.Type {
	case "product_viewed":
		if e.Product.ID == "" {
			break
		}
		m := mut()
		if !m.browseOpen {
			m.browseOpen, m.browseAt = true, t
		}
		if !m.browseAdded {
			m.view(e.Product.ID)
		}
	case "product_added":
		m := mut()
		if !m.browseOpen {
			m.browseOpen, m.browseAt = true, t
		}
		m.browseAdded, m.views, m.viewCount = true, nil, 0
		forEachProduct(e, func(p *pipeline.Product) {
			qty := int64(p.Quantity)
			if qty <= 0 {
				qty = 1
			}
			m.add(p.ID, qty, p.Price)
		})
		m.cartActivity(t)
	case "product_removed":
		m := mut()
		forEachProduct(e, func(p *pipeline.Product) { m.remove(p.ID) })
		m.cartActivity(t)
	case "cart_viewed":
		mut().cartActivity(t)
	case "checkout_started":
		m := mut()
		m.cartActivity(t)
		m.checkout = true
	case "checkout_step_completed", "payment_info_entered":
		if s != nil && s.cartOpen() && !s.checkout {
			s.checkout, changed = true, true
		}
	case "order_completed":
		if s != nil && (s.cartOpen() || s.checkout) {
			s.cartArmed, s.checkout, s.cartAt, s.items = false, false, 0, nil
			changed = true
		}
	}
	if changed {
		a.save(ctx, s, before, hadBefore)
	}
	return nil
}

// forEachProduct calls fn with each product of e that has an id: its
// products list when not empty, else its product.
func forEachProduct(e *pipeline.Event, fn func(p *pipeline.Product)) {
	if len(e.Products) == 0 {
		if e.Product.ID != "" {
			fn(&e.Product)
		}
		return
	}
	for i := range e.Products {
		if e.Products[i].ID != "" {
			fn(&e.Products[i])
		}
	}
}

// cartActivity records cart activity at t and arms the cart timer.
func (s *abandonState) cartActivity(t int64) {
	if !s.cartArmed || t > s.cartAt {
		s.cartAt = t
	}
	s.cartArmed = true
}

func (s *abandonState) add(id string, qty int64, price float64) {
	for i := range s.items {
		if it := &s.items[i]; it.id == id {
			it.qty += qty
			if price > 0 {
				it.price = price
			}
			return
		}
	}
	s.items = append(s.items, cartItem{id: strings.Clone(id), qty: qty, price: price})
}

func (s *abandonState) remove(id string) {
	for i := range s.items {
		if it := &s.items[i]; it.id == id {
			if it.qty--; it.qty <= 0 {
				s.items = slices.Delete(s.items, i, i+1)
			}
			return
		}
	}
}

func (s *abandonState) view(id string) {
	s.viewCount++
	for i := range s.views {
		if s.views[i].id == id {
			s.views[i].n++
			return
		}
	}
	s.views = append(s.views, productViews{id: strings.Clone(id), n: 1})
}

func (a *abandonmentDetector) OnTimer(ctx *pipeline.Context, _ pipeline.Timer) error {
	s, ok, err := a.state.Get(ctx.Key())
	if err != nil {
		return fmt.Errorf("abandonment_detector: %w", err)
	}
	if !ok {
		return nil
	}
	t := ctx.TimeNanos()
	if s.cartArmed && s.cartAt+a.cartTimeout <= t {
		s.cartArmed = false
		switch {
		case len(s.items) == 0:
			s.checkout, s.cartAt = false, 0
		case s.hasLastCart && t-s.lastCart < a.cooldown:
			// suppressed by the cooldown
		default:
			ctx.Emit("cart_abandoned", s.cartRecord())
			s.hasLastCart, s.lastCart = a.cooldown > 0, t
		}
	}
	if s.browseOpen && s.browseAt+a.browseTimeout <= t {
		if !s.browseAdded && s.viewCount >= a.minViews && !(s.hasLastBrowse && t-s.lastBrowse < a.cooldown) {
			ctx.Emit("browse_abandoned", s.browseRecord())
			s.hasLastBrowse, s.lastBrowse = a.cooldown > 0, t
		}
		s.browseOpen, s.browseAdded, s.browseAt, s.viewCount, s.views = false, false, 0, 0, nil
	}
	if s.hasLastCart && t-s.lastCart >= a.cooldown {
		s.hasLastCart, s.lastCart = false, 0
	}
	if s.hasLastBrowse && t-s.lastBrowse >= a.cooldown {
		s.hasLastBrowse, s.lastBrowse = false, 0
	}
	// The timer fired, so none is set now.
	a.save(ctx, s, 0, false)
	return nil
}

// cartRecord returns the payload of a cart_abandoned record, with its own
// copy of the items.
func (s *abandonState) cartRecord() *cartAbandoned {
	r := &cartAbandoned{items: slices.Clone(s.items), lastActivity: s.cartAt, checkout: s.checkout}
	for _, it := range s.items {
		r.value += float64(it.qty) * it.price
	}
	r.value = math.Round(r.value*1e6) / 1e6
	return r
}

// browseRecord returns the payload of a browse_abandoned record, which
// takes the session's views (sorting them) and leaves none: the browse
// session ends with its record.
func (s *abandonState) browseRecord() *browseAbandoned {
	r := &browseAbandoned{products: s.views, count: s.viewCount}
	s.views = nil
	slices.SortFunc(r.products, func(x, y productViews) int {
		if x.n != y.n {
			if x.n > y.n {
				return -1
			}
			return 1
		}
		return strings.Compare(x.id, y.id)
	})
	return r
}

// cartAbandoned is the payload of a cart_abandoned record.
type cartAbandoned struct {
	items        []cartItem
	value        float64
	lastActivity int64
	checkout     bool
}

// AppendJSON encodes {"items":[{"product_id","quantity","price"}...],
// "cart_value","last_activity","stage"}.
func (r *cartAbandoned) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"items":[`...)
	for i, it := range r.items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"product_id":`...)
		dst = pipeline.AppendJSONString(dst, it.id)
		dst = append(dst, `,"quantity":`...)
		dst = strconv.AppendInt(dst, it.qty, 10)
		dst = append(dst, `,"price":`...)
		dst = pipeline.AppendJSONFloat(dst, it.price)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"cart_value":`...)
	dst = pipeline.AppendJSONFloat(dst, r.value)
	dst = append(dst, `,"last_activity":"`...)
	dst = pipeline.TimeFromNanos(r.lastActivity).AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","stage":`...)
	if r.checkout {
		dst = append(dst, `"checkout"`...)
	} else {
		dst = append(dst, `"cart"`...)
	}
	return append(dst, '}')
}

// browseAbandoned is the payload of a browse_abandoned record.
type browseAbandoned struct {
	products []productViews
	count    int64
}

// AppendJSON encodes {"products":[{"product_id","views"}...],"view_count"}.
func (r *browseAbandoned) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"products":[`...)
	for i, p := range r.products {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"product_id":`...)
		dst = pipeline.AppendJSONString(dst, p.id)
		dst = append(dst, `,"views":`...)
		dst = strconv.AppendInt(dst, p.n, 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"view_count":`...)
	dst = strconv.AppendInt(dst, r.count, 10)
	return append(dst, '}')
}

// appendJSONFloat appends f as a JSON number (0 for NaN and infinities,
// which JSON cannot hold).

// Flag bits of an encoded abandonState.
const (
	abCartArmed = 1 << iota
	abCheckout
	abCart // a cart section follows
	abBrowseOpen
	abBrowseAdded
	abLastCart
	abLastBrowse
)

// abandonCodec encodes an abandonState compactly: a flag byte, then the
// sections the flags announce, in this order, with zig-zag varint times and
// uvarint counts and string lengths:
//
//	cart:        cartAt, n, n × (id, qty, price as 8 bytes)
//	browse:      browseAt, viewCount, n, n × (id, views)
//	last cart:   time
//	last browse: time
type abandonCodec struct{}

func (abandonCodec) Append(dst []byte, s *abandonState) []byte {
	var f byte
	if s.cartArmed {
		f |= abCartArmed
	}
	if s.checkout {
		f |= abCheckout
	}
	if s.cartOpen() {
		f |= abCart
	}
	if s.browseOpen {
		f |= abBrowseOpen
	}
	if s.browseAdded {
		f |= abBrowseAdded
	}
	if s.hasLastCart {
		f |= abLastCart
	}
	if s.hasLastBrowse {
		f |= abLastBrowse
	}
	dst = append(dst, f)
	if f&abCart != 0 {
		dst = binary.AppendVarint(dst, s.cartAt)
		dst = binary.AppendUvarint(dst, uint64(len(s.items)))
		for _, it := range s.items {
			dst = appendCodecString(dst, it.id)
			dst = binary.AppendUvarint(dst, uint64(it.qty))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(it.price))
		}
	}
	if f&abBrowseOpen != 0 {
		dst = binary.AppendVarint(dst, s.browseAt)
		dst = binary.AppendUvarint(dst, uint64(s.viewCount))
		dst = binary.AppendUvarint(dst, uint64(len(s.views)))
		for _, v := range s.views {
			dst = appendCodecString(dst, v.id)
			dst = binary.AppendUvarint(dst, uint64(v.n))
		}
	}
	if f&abLastCart != 0 {
		dst = binary.AppendVarint(dst, s.lastCart)
	}
	if f&abLastBrowse != 0 {
		dst = binary.AppendVarint(dst, s.lastBrowse)
	}
	return dst
}

func appendCodecString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func (abandonCodec) Decode(src []byte) (*abandonState, error) {
	if len(src) == 0 {
		return nil, errors.New("abandonment state: empty")
	}
	f := src[0]
	if f&^(abLastBrowse<<1-1) != 0 {
		return nil, fmt.Errorf("abandonment state: unknown flags %#x", f)
	}
	r := codecReader{src: src[1:]}
	s := &abandonState{
		cartArmed:     f&abCartArmed != 0,
		checkout:      f&abCheckout != 0,
		browseOpen:    f&abBrowseOpen != 0,
		browseAdded:   f&abBrowseAdded != 0,
		hasLastCart:   f&abLastCart != 0,
		hasLastBrowse: f&abLastBrowse != 0,
	}
	if f&abCart != 0 {
		s.cartAt = r.varint()
		n := r.count()
		s.items = make([]cartItem, n)
		for i := range s.items {
			s.items[i] = cartItem{id: r.string(), qty: int64(r.uvarint()), price: math.Float64frombits(r.uint64())}
		}
	}
	if f&abBrowseOpen != 0 {
		s.browseAt = r.varint()
		s.viewCount = int64(r.uvarint())
		if n := r.count(); n > 0 {
			s.views = make([]productViews, n)
			for i := range s.views {
				s.views[i] = productViews{id: r.string(), n: int64(r.uvarint())}
			}
		}
	}
	if f&abLastCart != 0 {
		s.lastCart = r.varint()
	}
	if f&abLastBrowse != 0 {
		s.lastBrowse = r.varint()
	}
	if r.err == nil && len(r.src) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.src))
	}
	if r.err != nil {
		return nil, fmt.Errorf("abandonment state: %w", r.err)
	}
	return s, nil
}

// codecReader reads what a hand-written codec appended; the first error
// sticks and makes every later read return zero.
type codecReader struct {
	src []byte
	err error
}

func (r *codecReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("malformed %s", what)
	}
	r.src = nil
}

func (r *codecReader) varint() int64 {
	v, n := binary.Varint(r.src)
	if n <= 0 {
		r.fail("varint")
		return 0
	}
	r.src = r.src[n:]
	return v
}

func (r *codecReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.src)
	if n <= 0 {
		r.fail("uvarint")
		return 0
	}
	r.src = r.src[n:]
	return v
}

// count reads a length that cannot exceed the bytes left (each element
// takes at least one byte).
func (r *codecReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.src)) {
		r.fail("count")
		return 0
	}
	return int(n)
}

func (r *codecReader) uint64() uint64 {
	if len(r.src) < 8 {
		r.fail("uint64")
		return 0
	}
	v := binary.LittleEndian.Uint64(r.src)
	r.src = r.src[8:]
	return v
}

func (r *codecReader) string() string {
	n := r.count()
	s := string(r.src[:n])
	r.src = r.src[n:]
	return s
}
