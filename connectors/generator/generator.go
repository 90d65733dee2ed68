// Package generator makes a synthetic, deterministic stream of retail
// behavioural events (DESIGN §2): shoppers land on a shop, browse, search,
// view products, fill and abandon carts, check out, return goods, change
// their consent, log in and ask to be forgotten.
//
// The stream is a pure function of its Config. Many shopping sessions run
// at once and interleave; a shopper's sessions are separated by more than
// 30 minutes of inactivity, so a sessionizer finds them. Product popularity
// is Zipf-like, and now and then one product has a demand burst. Event times
// advance, with each event at most Config.MaxDisorder older than the newest
// event before it.
//
// The package also registers the "generator" source type (see Source) and
// provides WriteJSONL for the `sluice gen` command.
package generator

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// Defaults applied by New to zero fields of a Config.
const (
	DefaultUsers          = 1000
	DefaultSeed           = 1
	DefaultNoConsentShare = 0.1
	DefaultAnonymousShare = 0.3
	DefaultErasureShare   = 0.002
	DefaultProducts       = 500
	DefaultMaxDisorder    = 2 * time.Second
)

// DefaultStart is the event time of the first event when Config.Start is
// zero: fixed, so that runs are reproducible.
var DefaultStart = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

// DefaultCategories returns the product categories used when
// Config.Categories is empty.
func DefaultCategories() []string {
	return []string{
		"apparel.outerwear", "apparel.shoes", "apparel.tops", "apparel.accessories",
		"electronics.audio", "electronics.phones", "electronics.wearables",
		"home.kitchen", "home.furniture", "home.decor",
		"beauty.skincare", "beauty.fragrance",
		"sports.outdoor", "sports.fitness", "toys.games",
	}
}

// Config configures a Generator and the "generator" source. Zero fields
// take their defaults. A share field (NoConsentShare, AnonymousShare,
// ErasureShare) that is negative means none, since zero means the default.
type Config struct {
	// Count is the number of events to generate; 0 means unbounded.
	Count int `yaml:"count"`
	// Rate paces the source and WriteJSONL, in events per second of wall
	// time; 0 means as fast as possible. It does not change event times.
	Rate float64 `yaml:"rate"`
	// Users is the number of distinct shoppers. Default 1000.
	Users int `yaml:"users"`
	// Seed chooses the stream; the same Config gives the same events.
	// Default 1.
	Seed int64 `yaml:"seed"`
	// NoConsentShare is the share of shoppers who never grant analytics
	// consent. Default 0.1.
	NoConsentShare float64 `yaml:"no_consent_share"`
	// AnonymousShare is the share of sessions that start anonymous (only
	// anonymous_id) and may later log in with an identify event. Default 0.3.
	AnonymousShare float64 `yaml:"anonymous_share"`
	// ErasureShare is the share of shoppers who send erasure_requested;
	// when positive, at least one shopper does. After the erasure the
	// shopper's slot is taken by a new person with new ids. Default 0.002.
	ErasureShare float64 `yaml:"erasure_share"`
	// Products is the size of the catalogue; it must be at least the number
	// of categories. Default 500.
	Products int `yaml:"products"`
	// Categories are the product categories, dot-separated paths such as
	// apparel.outerwear. Default DefaultCategories().
	Categories []string `yaml:"categories"`
	// Start is the event time of the first event. Default DefaultStart.
	Start time.Time `yaml:"start"`
	// MaxDisorder bounds disorder: every event's time is at least the
	// newest event time before it minus MaxDisorder. Keep it below the
	// pipeline's time.max_out_of_orderness (5s by default), or the pipeline
	// will see late events. Default 2s; negative means events in order.
	MaxDisorder pipeline.Duration `yaml:"max_disorder"`
}

// withDefaults returns c with its zero fields set to their defaults, and
// checks it.
func (c Config) withDefaults() (Config, error) {
	if c.Count < 0 {
		return c, fmt.Errorf("generator: count %d is negative", c.Count)
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return c, fmt.Errorf("generator: rate %v must be a finite number >= 0", c.Rate)
	}
	if c.Users < 0 {
		return c, fmt.Errorf("generator: users %d is negative", c.Users)
	}
	if c.Users == 0 {
		c.Users = DefaultUsers
	}
	if c.Users > math.MaxInt32 {
		return c, fmt.Errorf("generator: users %d is too many", c.Users)
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	share := func(name string, v *float64, def float64) error {
		switch {
		case math.IsNaN(*v) || *v > 1:
			return fmt.Errorf("generator: %s %v must be at most 1", name, *v)
		case *v < 0:
			*v = 0
		case *v == 0:
			*v = def
		}
		return nil
	}
	if err := share("no_consent_share", &c.NoConsentShare, DefaultNoConsentShare); err != nil {
		return c, err
	}
	if err := share("anonymous_share", &c.AnonymousShare, DefaultAnonymousShare); err != nil {
		return c, err
	}
	if err := share("erasure_share", &c.ErasureShare, DefaultErasureShare); err != nil {
		return c, err
	}
	if len(c.Categories) == 0 {
		c.Categories = DefaultCategories()
	}
	if len(c.Categories) > math.MaxUint16 {
		return c, fmt.Errorf("generator: %d categories are too many", len(c.Categories))
	}
	seen := make(map[string]bool, len(c.Categories))
	for _, cat := range c.Categories {
		if strings.TrimSpace(cat) == "" {
			return c, errors.New("generator: a category is empty")
		}
		if seen[cat] {
			return c, fmt.Errorf("generator: category %q is listed twice", cat)
		}
		seen[cat] = true
	}
	if c.Products < 0 {
		return c, fmt.Errorf("generator: products %d is negative", c.Products)
	}
	if c.Products == 0 {
		c.Products = DefaultProducts
	}
	if c.Products < len(c.Categories) {
		return c, fmt.Errorf("generator: products %d must be at least the number of categories (%d)",
			c.Products, len(c.Categories))
	}
	if c.Products > math.MaxInt32 {
		return c, fmt.Errorf("generator: products %d is too many", c.Products)
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	switch {
	case c.MaxDisorder == 0:
		c.MaxDisorder = pipeline.Duration(DefaultMaxDisorder)
	case c.MaxDisorder < 0:
		c.MaxDisorder = 0
	}
	return c, nil
}

// action is what a shopper does next; most actions are one event type.
type action uint8

const (
	actLand action = iota
	actList
	actFilter
	actSearch
	actClick
	actView
	actSizeGuide
	actReviews
	actZoom
	actVideo
	actWishlist
	actAdd
	actRemove
	actCart
	actCheckout
	actShipping
	actDelivery
	actPayment
	actOrder
	actIdentify
	actConsent
	actErasure
	actReturn
	actRefund
	actExit
)

// eventTypes maps each action to the event type it emits.
var eventTypes = [actExit + 1]string{
	actLand: "page_viewed", actList: "product_list_viewed",
	actFilter: "product_list_filtered", actSearch: "products_searched",
	actClick: "product_clicked", actView: "product_viewed",
	actSizeGuide: "size_guide_opened", actReviews: "reviews_read",
	actZoom: "image_zoomed", actVideo: "video_played",
	actWishlist: "product_added_to_wishlist", actAdd: "product_added",
	actRemove: "product_removed", actCart: "cart_viewed",
	actCheckout: "checkout_started", actShipping: "checkout_step_completed",
	actDelivery: "checkout_step_completed", actPayment: "payment_info_entered",
	actOrder: "order_completed", actIdentify: "identify",
	actConsent: "consent_updated", actErasure: "erasure_requested",
	actReturn: "product_returned", actRefund: "order_refunded",
}

// thinkMedian is the median time, in milliseconds, before each action.
var thinkMedian = [actExit + 1]float64{
	actLand: 0, actList: 9000, actFilter: 7000, actSearch: 6000,
	actClick: 8000, actView: 12000, actSizeGuide: 15000, actReviews: 20000,
	actZoom: 6000, actVideo: 14000, actWishlist: 10000, actAdd: 18000,
	actRemove: 9000, actCart: 5000, actCheckout: 12000, actShipping: 45000,
	actDelivery: 20000, actPayment: 40000, actOrder: 25000, actIdentify: 15000,
	actConsent: 3000, actErasure: 40000,
}

// Session timing.
const (
	minute = int64(time.Minute / time.Millisecond)
	hour   = 60 * minute
	// maxThink caps the time between two events of a session, far below
	// the 30m inactivity gap that ends a session.
	maxThink = 5 * minute
	// sessionGap is the least time between a shopper's sessions (and
	// between a session and a server-side event).
	sessionGap = 31 * minute
	// meanReturn is the mean of the exponential part of the time between
	// a shopper's sessions.
	meanReturn = 2 * hour
	// maxSessionEvents ends unusually long sessions.
	maxSessionEvents = 80
)

// Consent bits of a shopper.
const (
	consentAnalytics uint8 = 1 << iota
	consentPersonalization
	consentMarketing
)

// Pending server-side events after an order.
const (
	postNone uint8 = iota
	postReturn
	postRefund
)

const (
	shopURL  = "https://shop.example"
	currency = "USD"
	listSize = 4
)

// category is one category of the catalogue, precomputed.
type category struct {
	name, url, title string
	apparel          bool
	// products are the category's products, most popular first, and pop
	// their popularity distribution.
	products []int32
	pop      cdf
	queries  []query
	filters  []pipeline.Filter
}

// query is a search phrase and how many results it finds.
type query struct {
	text, url string
	results   int
}

// cdf is a cumulative distribution over 0..len-1.
type cdf []float64

// zipfCDF returns a Zipf-like distribution over n ranks: P(k) ∝ (k+v)^-s.
func zipfCDF(n int, s, v float64) cdf {
	c := make(cdf, n)
	var sum float64
	for k := range n {
		sum += math.Pow(float64(k)+v, -s)
		c[k] = sum
	}
	return c
}

// sample draws an index from c.
func (c cdf) sample(r *rand.Rand) int {
	x := r.Float64() * c[len(c)-1]
	lo, hi := 0, len(c)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c[m] > x {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// cartItem is one line of a cart.
type cartItem struct {
	prod int32
	qty  int32
}

// session is the state of a shopper's current session.
type session struct {
	events    int
	buyer     float64
	interest  int
	anonymous bool
	erasure   bool
	// next is what follows an inserted identify or consent_updated, and
	// prev the last action that was neither.
	next, prev action
	// prod is the product on screen; landProd a product the session landed
	// on (-1 for none).
	prod, landProd int32
	list           [listSize]int32
	nlist          int
	recent         [8]int32
	nrecent        int
	cart           []cartItem
	order          string
	zeroResults    bool
	url, ref       string
	title          string
}

// post is a pending server-side event after an order.
type post struct {
	kind   uint8
	at     int64
	order  string
	prod   int32
	qty    int32
	amount float64
}

// user is one shopper slot.
type user struct {
	// next is when the shopper acts next (ms since the epoch), and act
	// what it does then.
	next        int64
	act         action
	num         int32
	gen         int32
	id, anon    string
	ip          uint16
	ua          uint8
	locale      uint8
	fav         uint16
	app         bool
	noConsent   bool
	erasure     bool
	consent     uint8
	nextSession int64
	post        post
	sess        session
}

// Generator makes the events of one Config. It is not safe for concurrent
// use.
type Generator struct {
	cfg         Config
	r           *rand.Rand
	n           int64
	orders      int64
	idPrefix    []byte
	orderPrefix []byte
	buf         []byte
	maxDisorder int64
	start       int64

	products  []pipeline.Product
	prodURL   []string
	prodTitle []string
	prodCat   []uint16
	rank      []int32 // popularity rank -> product
	pop       cdf
	cats      []category
	catPop    cdf
	zeroQ     []query

	users []user
	heap  []int32

	burstProd  int32
	burstUntil int64
	burstNext  int64
}

// Fixed vocabularies.
var (
	brands = []string{
		"acme", "northpeak", "lumen", "kestrel", "tidewater", "bramble", "orbit",
		"fieldhouse", "velo", "saltmarsh", "copperleaf", "novalux", "ember & oak",
		"halcyon", "stride", "petal", "ironwood", "bluefin", "marlow", "quill",
	}
	locales      = []string{"en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "nl-NL", "it-IT", "pl-PL"}
	localeWeight = cdf{45, 57, 69, 79, 87, 92, 96, 100}
	webAgents    = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
	}
	appAgents = []string{
		"ShopApp/5.12.0 (iPhone; iOS 18.1)",
		"ShopApp/5.12.0 (Android 15; Pixel 9)",
	}
	referrers = []string{
		"", "https://www.google.com/", "https://www.instagram.com/",
		"https://mail.shop.example/newsletter", "https://www.bing.com/",
		"https://www.pinterest.com/", "https://www.tiktok.com/",
	}
	referrerWeight = cdf{30, 62, 72, 82, 88, 93, 100}
	knownQueries   = map[string][]string{
		"apparel.outerwear":     {"rain jacket", "down parka", "wool coat", "windbreaker"},
		"apparel.shoes":         {"running shoes", "leather boots", "white sneakers", "hiking boots"},
		"apparel.tops":          {"linen shirt", "graphic tee", "merino sweater"},
		"apparel.accessories":   {"leather belt", "wool scarf", "sunglasses"},
		"electronics.audio":     {"wireless earbuds", "noise cancelling headphones", "bluetooth speaker"},
		"electronics.phones":    {"phone case", "usb-c charger", "screen protector"},
		"electronics.wearables": {"smart watch", "fitness tracker"},
		"home.kitchen":          {"chef knife", "cast iron pan", "espresso machine", "air fryer"},
		"home.furniture":        {"desk chair", "bookshelf", "side table"},
		"home.decor":            {"table lamp", "throw pillow", "wall mirror"},
		"beauty.skincare":       {"vitamin c serum", "moisturizer", "sunscreen spf 50"},
		"beauty.fragrance":      {"eau de parfum", "cologne gift set"},
		"sports.outdoor":        {"tent", "sleeping bag", "trekking poles"},
		"sports.fitness":        {"yoga mat", "dumbbells", "resistance bands"},
		"toys.games":            {"board game", "jigsaw puzzle", "building blocks"},
	}
	zeroQueries = []string{"rian jaket", "headphnoes", "xmas jumper 5xl", "gift card balance", "left handed spatula"}
	priceRanges = map[string][2]float64{
		"apparel": {15, 250}, "electronics": {20, 900}, "home": {10, 600},
		"beauty": {8, 150}, "sports": {10, 400}, "toys": {8, 120},
	}
	sizes  = []string{"XS", "S", "M", "L", "XL"}
	colors = []string{"black", "white", "navy", "red", "green", "beige"}
	// Addresses from the documentation ranges (RFC 5737).
	ipNets = []string{"192.0.2.", "198.51.100.", "203.0.113."}
	ips    = func() []string {
		s := make([]string, 0, 3*254)
		for _, n := range ipNets {
			for h := 1; h <= 254; h++ {
				s = append(s, n+strconv.Itoa(h))
			}
		}
		return s
	}()
)

// New returns a Generator for cfg, with defaults applied to its zero fields.
func New(cfg Config) (*Generator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	g := &Generator{
		cfg:         cfg,
		r:           rand.New(rand.NewPCG(uint64(cfg.Seed), 0x51c3_a11e_9e17_2026)),
		idPrefix:    []byte("g" + strconv.FormatInt(cfg.Seed, 10) + "-"),
		orderPrefix: []byte("o" + strconv.FormatInt(cfg.Seed, 10) + "-"),
		maxDisorder: time.Duration(cfg.MaxDisorder).Milliseconds(),
		start:       cfg.Start.UnixMilli(),
	}
	g.buildCatalogue()
	g.buildUsers()
	return g, nil
}

// Config returns the generator's configuration with defaults applied.
func (g *Generator) Config() Config { return g.cfg }

// buildCatalogue makes the categories and products.
func (g *Generator) buildCatalogue() {
	r := g.r
	cfg := g.cfg
	nc := len(cfg.Categories)
	g.cats = make([]category, nc)
	catBrands := make([][]string, nc)
	for i, name := range cfg.Categories {
		c := &g.cats[i]
		c.name = name
		c.url = shopURL + "/c/" + strings.ReplaceAll(name, ".", "/")
		parts := strings.Split(name, ".")
		leaf := strings.NewReplacer("_", " ", "-", " ").Replace(parts[len(parts)-1])
		c.title = strings.ToUpper(leaf[:1]) + leaf[1:] + " | Shop"
		c.apparel = parts[0] == "apparel"
		for range 4 {
			catBrands[i] = append(catBrands[i], brands[r.IntN(len(brands))])
		}
	}
	// Category popularity falls off gently with its position.
	g.catPop = zipfCDF(nc, 0.7, 1)

	n := cfg.Products
	g.products = make([]pipeline.Product, n)
	g.prodURL = make([]string, n)
	g.prodTitle = make([]string, n)
	g.prodCat = make([]uint16, n)
	for i := range n {
		ci := i
		if i >= nc {
			ci = g.catPop.sample(r)
		}
		g.prodCat[i] = uint16(ci)
		c := &g.cats[ci]
		id := "p-" + strconv.Itoa(i+1)
		top, _, _ := strings.Cut(c.name, ".")
		pr, ok := priceRanges[top]
		if !ok {
			pr = [2]float64{5, 300}
		}
		price := math.Floor(math.Exp(math.Log(pr[0])+r.Float64()*(math.Log(pr[1])-math.Log(pr[0])))) + 0.99
		brand := catBrands[ci][r.IntN(len(catBrands[ci]))]
		g.products[i] = pipeline.Product{
			ID:       id,
			SKU:      fmt.Sprintf("SKU-%05d-%03d", i+1, r.IntN(1000)),
			Category: c.name,
			Brand:    brand,
			Price:    price,
			Currency: currency,
		}
		g.prodURL[i] = shopURL + "/p/" + id
		g.prodTitle[i] = fmt.Sprintf("%s %s %d | Shop", strings.ToUpper(brand[:1])+brand[1:],
			c.title[:strings.Index(c.title, " |")], i+1)
	}
	// Popularity: a random permutation ranks products; within a category
	// products keep their global order.
	perm := r.Perm(n)
	g.rank = make([]int32, n)
	for rk, p := range perm {
		g.rank[rk] = int32(p)
	}
	g.pop = zipfCDF(n, 1.1, 2)
	for _, p := range g.rank {
		c := &g.cats[g.prodCat[p]]
		c.products = append(c.products, p)
	}
	for i := range g.cats {
		c := &g.cats[i]
		c.pop = zipfCDF(len(c.products), 1.1, 2)
		texts := knownQueries[c.name]
		if len(texts) == 0 {
			texts = []string{strings.ToLower(c.title[:strings.Index(c.title, " |")])}
		}
		for _, t := range texts {
			res := 1 + int(float64(len(c.products))*(0.1+0.9*r.Float64()))
			c.queries = append(c.queries, query{text: t, url: searchURL(t), results: res})
		}
		for _, lim := range []string{"25", "50", "100", "200"} {
			c.filters = append(c.filters, pipeline.Filter{Field: "price", Op: "lt", Value: lim})
		}
		for _, b := range catBrands[i] {
			c.filters = append(c.filters, pipeline.Filter{Field: "brand", Op: "eq", Value: b})
		}
		for _, col := range colors {
			c.filters = append(c.filters, pipeline.Filter{Field: "color", Op: "eq", Value: col})
		}
		if c.apparel {
			for _, s := range sizes {
				c.filters = append(c.filters, pipeline.Filter{Field: "size", Op: "eq", Value: s})
			}
		}
		c.filters = append(c.filters, pipeline.Filter{Field: "rating", Op: "gte", Value: "4"})
	}
	for _, t := range zeroQueries {
		g.zeroQ = append(g.zeroQ, query{text: t, url: searchURL(t)})
	}
}

func searchURL(q string) string {
	return shopURL + "/search?q=" + url.QueryEscape(q)
}

// buildUsers makes the shopper slots and schedules their first sessions,
// spread so that the first event is at Config.Start.
func (g *Generator) buildUsers() {
	r := g.r
	cfg := g.cfg
	nu := cfg.Users
	g.users = make([]user, nu)
	perm := r.Perm(nu)
	nNo := int(math.Round(cfg.NoConsentShare * float64(nu)))
	nErase := int(math.Round(cfg.ErasureShare * float64(nu)))
	if cfg.ErasureShare > 0 && nErase == 0 {
		nErase = 1
	}
	for k, i := range perm {
		u := &g.users[i]
		u.num = int32(i + 1)
		u.noConsent = k < nNo
		u.erasure = k >= nu-nErase
	}
	first := int64(math.MaxInt64)
	for i := range g.users {
		u := &g.users[i]
		g.newPerson(u)
		u.ip = uint16(r.IntN(len(ips)))
		u.app = r.Float64() < 0.4
		if u.app {
			u.ua = uint8(r.IntN(len(appAgents)))
		} else {
			u.ua = uint8(r.IntN(len(webAgents)))
		}
		u.locale = uint8(localeWeight.sample(r))
		u.fav = uint16(g.catPop.sample(r))
		u.sess.prod, u.sess.landProd = -1, -1
		// Spread first sessions over a typical time between sessions so
		// that concurrency is steady from the start.
		u.next = r.Int64N(sessionGap + meanReturn)
		u.act = actLand
		first = min(first, u.next)
	}
	start := g.cfg.Start.UnixMilli()
	for i := range g.users {
		g.users[i].next += start - first
	}
	g.burstNext = start + g.expMs(45*minute)
	g.heap = make([]int32, nu)
	for i := range g.heap {
		g.heap[i] = int32(i)
	}
	for i := nu/2 - 1; i >= 0; i-- {
		g.down(i)
	}
}

// newPerson gives slot u the ids and consent of a new person.
func (g *Generator) newPerson(u *user) {
	if u.gen == 0 {
		u.id = "u-" + strconv.Itoa(int(u.num))
	} else {
		u.id = "u-" + strconv.Itoa(int(u.num)) + "." + strconv.Itoa(int(u.gen))
	}
	u.anon = fmt.Sprintf("a-%016x", g.r.Uint64())
	u.consent = 0
	if !u.noConsent {
		u.consent = consentAnalytics
		if g.r.Float64() < 0.75 {
			u.consent |= consentPersonalization
		}
		if g.r.Float64() < 0.45 {
			u.consent |= consentMarketing
		}
	}
	u.post = post{}
}

// down restores the heap order below position i.
func (g *Generator) down(i int) {
	h := g.heap
	n := len(h)
	x := h[i]
	t := g.users[x].next
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && g.users[h[c+1]].next < g.users[h[c]].next {
			c++
		}
		if g.users[h[c]].next >= t {
			break
		}
		h[i] = h[c]
		i = c
	}
	h[i] = x
}

// Next fills *e with the next event and reports whether there was one: it
// is false once Config.Count events were made. Next reuses e's Consent map
// and Products and Filters slices, so an event that must outlive the next
// call must be copied; the strings it holds are immutable and may be kept.
func (g *Generator) Next(e *pipeline.Event) bool {
	if g.cfg.Count > 0 && g.n >= int64(g.cfg.Count) {
		return false
	}
	g.n++
	u := &g.users[g.heap[0]]
	g.step(u, e)
	g.down(0)
	return true
}

// expMs draws an exponential duration with the given mean, in ms.
func (g *Generator) expMs(mean int64) int64 {
	return int64(g.r.ExpFloat64() * float64(mean))
}

// uniformMs draws a duration in [lo, hi) ms.
func (g *Generator) uniformMs(lo, hi int64) int64 {
	return lo + g.r.Int64N(hi-lo)
}

// think draws the time before action a.
func (g *Generator) think(a action) int64 {
	m := thinkMedian[a]
	if m == 0 {
		return 1000
	}
	t := int64(m * math.Exp(0.8*g.r.NormFloat64()))
	return min(max(t, 400), maxThink)
}

// pick returns an index drawn with the given weights.
func (g *Generator) pick(w ...float64) int {
	var sum float64
	for _, x := range w {
		sum += x
	}
	x := g.r.Float64() * sum
	for i, wi := range w {
		if x < wi {
			return i
		}
		x -= wi
	}
	return len(w) - 1
}

// step emits u's current action into e and plans its next one.
func (g *Generator) step(u *user, e *pipeline.Event) {
	now := u.next
	if now >= g.burstNext {
		// A demand burst: one product that is not already a best seller
		// draws a large share of views for a few minutes.
		lo := min(20, len(g.rank)-1)
		g.burstProd = g.rank[lo+g.r.IntN(len(g.rank)-lo)]
		g.burstUntil = now + g.uniformMs(5*minute, 15*minute)
		g.burstNext = g.burstUntil + g.expMs(45*minute)
	}
	act := u.act
	if act == actLand {
		g.startSession(u, now)
	}
	s := &u.sess
	consent, products, filters := e.Consent, e.Products[:0], e.Filters[:0]
	*e = pipeline.Event{}
	e.Type = eventTypes[act]
	e.AnonymousID = u.anon
	if !s.anonymous {
		e.UserID = u.id
	}
	e.Context.Locale = locales[u.locale]
	e.Context.IP = ips[u.ip]
	if u.app {
		e.Context.Channel = "app"
		e.Context.UserAgent = appAgents[u.ua]
	} else {
		e.Context.Channel = "web"
		e.Context.UserAgent = webAgents[u.ua]
	}
	s.events++
	next := actExit
	switch act {
	case actLand:
		g.navigate(s, s.url, s.title)
		switch {
		case s.landProd >= 0:
			next = actView
		default:
			switch g.pick(0.35, 0.25, 0.2, 0.15) {
			case 0:
				next = actList
			case 1:
				next = actSearch
			case 2:
				next = actView
			}
		}
	case actList:
		c := &g.cats[s.interest]
		page := 0
		if g.r.Float64() < 0.25 {
			page = 1 + g.r.IntN(3)
		}
		products = g.fillList(s, c, page*listSize, products)
		g.navigate(s, c.url, c.title)
		switch g.pick(0.25, 0.3, 0.25, 0.05, 0.05, 0.1) {
		case 0:
			next = actFilter
		case 1:
			next = actClick
		case 2:
			next = actView
		case 3:
			next = actSearch
		case 4:
			next = actList
		}
	case actFilter:
		c := &g.cats[s.interest]
		f := g.r.IntN(len(c.filters))
		filters = append(filters, c.filters[f])
		if g.r.Float64() < 0.35 {
			if f2 := g.r.IntN(len(c.filters)); c.filters[f2].Field != c.filters[f].Field {
				filters = append(filters, c.filters[f2])
			}
		}
		products = g.fillFiltered(s, c, filters, products)
		g.navigate(s, c.url, c.title)
		switch {
		case s.nlist == 0:
			// Nothing matched: loosen the filters, or give up.
			if g.r.Float64() < 0.6 {
				next = actFilter
			}
		default:
			switch g.pick(0.35, 0.3, 0.1, 0.25) {
			case 0:
				next = actClick
			case 1:
				next = actView
			case 2:
				next = actFilter
			}
		}
	case actSearch:
		q := g.search(s)
		e.Search = pipeline.Search{Query: q.text, Results: q.results}
		g.navigate(s, q.url, "Search | Shop")
		if s.zeroResults {
			if g.r.Float64() < 0.55 {
				next = actSearch
			}
		} else {
			switch g.pick(0.4, 0.3, 0.1, 0.2) {
			case 0:
				next = actClick
			case 1:
				next = actView
			case 2:
				next = actSearch
			}
		}
	case actClick:
		s.prod = g.pickListed(s)
		e.Product = g.products[s.prod]
		next = actView
	case actView:
		if s.prod < 0 || (s.prev != actClick && s.prev != actLand) {
			// Not the product that was clicked or landed on.
			s.prod = g.pickProduct(s, now)
		}
		e.Product = g.products[s.prod]
		g.navigate(s, g.prodURL[s.prod], g.prodTitle[s.prod])
		if s.nrecent < len(s.recent) {
			s.recent[s.nrecent] = s.prod
			s.nrecent++
		} else {
			s.recent[g.r.IntN(len(s.recent))] = s.prod
		}
		next = g.afterProduct(s)
	case actSizeGuide, actReviews, actZoom, actVideo, actWishlist:
		e.Product = g.products[s.prod]
		next = g.afterProduct(s)
		if act == actWishlist && next != actExit {
			next = actView
		}
	case actAdd:
		qty := int32(1)
		if g.r.Float64() < 0.12 {
			qty = 2 + g.r.Int32N(2)
		}
		g.addToCart(s, s.prod, qty)
		e.Product = g.products[s.prod]
		e.Product.Quantity = int(qty)
		switch g.pick(0.3, 0.35, 0.12*s.buyer, 0.2, 0.05) {
		case 0:
			next = actCart
		case 1:
			next = actView
		case 2:
			next = actCheckout
		case 4:
			next = actSearch
		}
	case actRemove:
		i := g.r.IntN(len(s.cart))
		it := s.cart[i]
		s.cart = append(s.cart[:i], s.cart[i+1:]...)
		e.Product = g.products[it.prod]
		e.Product.Quantity = int(it.qty)
		if len(s.cart) > 0 {
			switch g.pick(0.4, 0.3, 0.3) {
			case 0:
				next = actCart
			case 1:
				next = actView
			}
		} else if g.r.Float64() < 0.5 {
			next = actView
		}
	case actCart:
		products = g.fillCart(s, products)
		g.navigate(s, shopURL+"/cart", "Cart | Shop")
		switch g.pick(0.4*s.buyer, 0.12, 0.25, 0.25) {
		case 0:
			next = actCheckout
		case 1:
			next = actRemove
		case 2:
			next = actView
		}
	case actCheckout:
		g.orders++
		g.buf = strconv.AppendInt(append(g.buf[:0], g.orderPrefix...), g.orders, 10)
		s.order = string(g.buf)
		products = g.fillCart(s, products)
		e.Order = pipeline.Order{ID: s.order, Revenue: g.cartValue(s), Currency: currency}
		g.navigate(s, shopURL+"/checkout", "Checkout | Shop")
		if g.r.Float64() < 0.8 {
			next = actShipping
		}
	case actShipping, actDelivery, actPayment:
		e.Order = pipeline.Order{ID: s.order, Revenue: g.cartValue(s), Currency: currency}
		switch act {
		case actShipping:
			g.navigate(s, shopURL+"/checkout/shipping", "Shipping | Shop")
			if g.r.Float64() < 0.85 {
				next = actDelivery
			}
		case actDelivery:
			g.navigate(s, shopURL+"/checkout/delivery", "Delivery | Shop")
			if g.r.Float64() < 0.85 {
				next = actPayment
			}
		default:
			g.navigate(s, shopURL+"/checkout/payment", "Payment | Shop")
			if g.r.Float64() < 0.88 {
				next = actOrder
			}
		}
	case actOrder:
		products = g.fillCart(s, products)
		e.Order = pipeline.Order{ID: s.order, Revenue: g.cartValue(s), Currency: currency}
		g.navigate(s, shopURL+"/checkout/confirmation", "Thank you | Shop")
		g.afterOrder(u, now)
		s.cart = s.cart[:0]
		if g.r.Float64() < 0.1 {
			next = actView
		}
	case actIdentify:
		e.UserID = u.id
		s.anonymous = false
		g.navigate(s, shopURL+"/account/login", "Log in | Shop")
		next = s.next
	case actConsent:
		g.updateConsent(u)
		next = s.next
	case actErasure:
		g.navigate(s, shopURL+"/account/privacy", "Privacy | Shop")
	case actReturn, actRefund:
		e.UserID = u.id
		e.AnonymousID = ""
		e.Context = pipeline.EventContext{Channel: "server", Locale: locales[u.locale]}
		e.Order = pipeline.Order{ID: u.post.order, Currency: currency}
		if u.post.prod >= 0 {
			p := g.products[u.post.prod]
			p.Quantity = int(u.post.qty)
			if act == actReturn {
				e.Product = p
			} else {
				products = append(products, p)
			}
		}
		if act == actRefund {
			e.Order.Revenue = u.post.amount
		}
	}
	if act != actReturn && act != actRefund {
		e.Context.Page = pipeline.Page{URL: s.url, Referrer: s.ref, Title: s.title}
	}
	e.Consent = g.fillConsent(consent, u.consent)
	e.Products = products
	e.Filters = filters
	g.stamp(e, now)
	if act != actIdentify && act != actConsent {
		s.prev = act
	}

	switch {
	case act == actReturn || act == actRefund:
		g.afterPost(u, act, now)
	case act == actErasure:
		// The slot goes to a new person with new ids.
		u.gen++
		u.erasure = false
		g.newPerson(u)
		g.endSession(u, now)
	case next == actExit || s.events >= maxSessionEvents:
		g.endSession(u, now)
	default:
		g.plan(u, next, now)
	}
}

// plan schedules next for u, possibly preceded by a login or a consent
// change.
func (g *Generator) plan(u *user, next action, now int64) {
	s := &u.sess
	if s.erasure && next != actErasure {
		next = actErasure
	}
	if (next == actCart || next == actCheckout || next == actRemove) && len(s.cart) == 0 {
		next = actView
	}
	if (next == actSizeGuide || next == actReviews || next == actZoom || next == actVideo ||
		next == actWishlist || next == actAdd) && s.prod < 0 {
		next = actView
	}
	s.next = next
	switch {
	case s.anonymous && (next == actCheckout || (next == actAdd && g.r.Float64() < 0.4) || g.r.Float64() < 0.02):
		u.act = actIdentify
		u.next = now + g.think(actIdentify)
	case !u.noConsent && next != actErasure && g.r.Float64() < 0.006:
		u.act = actConsent
		u.next = now + g.think(actConsent)
	default:
		u.act = next
		u.next = now + g.think(next)
	}
}

// startSession resets u's session for a new visit.
func (g *Generator) startSession(u *user, now int64) {
	s := &u.sess
	cart := s.cart[:0]
	*s = session{cart: cart, prod: -1, landProd: -1, next: actLand}
	s.erasure = u.erasure
	s.anonymous = !s.erasure && g.r.Float64() < g.cfg.AnonymousShare
	s.buyer = 0.6
	if g.r.Float64() < 0.25 {
		s.buyer = 2.5
	}
	if g.r.Float64() < 0.6 {
		s.interest = int(u.fav)
	} else {
		s.interest = g.catPop.sample(g.r)
	}
	s.ref = referrers[referrerWeight.sample(g.r)]
	switch x := g.r.Float64(); {
	case now < g.burstUntil && x < 0.3:
		// Social traffic for the product in demand.
		s.ref = "https://www.tiktok.com/"
		s.landProd = g.burstProd
	case x < 0.4:
		s.url, s.title = shopURL+"/", "Home | Shop"
	case x < 0.7:
		c := &g.cats[s.interest]
		s.url, s.title = c.url, c.title
	default:
		s.landProd = g.pickProduct(s, now)
	}
	if s.landProd >= 0 {
		s.prod = s.landProd
		s.interest = int(g.prodCat[s.landProd])
		s.url, s.title = g.prodURL[s.landProd], g.prodTitle[s.landProd]
	}
}

// navigate moves the session to a new page.
func (g *Generator) navigate(s *session, url, title string) {
	if s.events == 1 {
		// The landing page, set by startSession with the external referrer.
		return
	}
	if url != s.url {
		s.ref = s.url
		s.url = url
	}
	s.title = title
}

// endSession ends u's session at now and schedules its next wake-up.
func (g *Generator) endSession(u *user, now int64) {
	u.sess.cart = u.sess.cart[:0]
	u.nextSession = now + sessionGap + g.expMs(meanReturn)
	g.wakeIdle(u, now)
}

// afterPost schedules u after its server-side event act while it is idle.
func (g *Generator) afterPost(u *user, act action, now int64) {
	if act == actReturn {
		u.post.kind = postRefund
		u.post.at = now + g.uniformMs(hour, 24*hour)
	} else {
		u.post = post{}
	}
	u.nextSession = max(u.nextSession, now+sessionGap)
	g.wakeIdle(u, now)
}

// wakeIdle sets u's next wake-up while it has no session: its pending
// server-side event or its next session, whichever comes first.
func (g *Generator) wakeIdle(u *user, now int64) {
	u.act, u.next = actLand, u.nextSession
	if u.post.kind == postNone {
		return
	}
	// Keep the inactivity gap on both sides of the server-side event, or
	// wait until after the next session.
	at := max(u.post.at, now+sessionGap)
	if at+sessionGap <= u.nextSession {
		u.next = at
		u.act = actReturn
		if u.post.kind == postRefund {
			u.act = actRefund
		}
	}
}

// afterOrder may schedule a return or a cancellation of u's order.
func (g *Generator) afterOrder(u *user, now int64) {
	if u.post.kind != postNone || len(u.sess.cart) == 0 {
		return
	}
	s := &u.sess
	switch x := g.r.Float64(); {
	case x < 0.07:
		it := s.cart[g.r.IntN(len(s.cart))]
		u.post = post{kind: postReturn, at: now + g.uniformMs(3*hour, 36*hour), order: s.order,
			prod: it.prod, qty: 1, amount: g.products[it.prod].Price}
	case x < 0.09:
		u.post = post{kind: postRefund, at: now + g.uniformMs(30*minute, 6*hour), order: s.order,
			prod: -1, amount: g.cartValue(s)}
	}
}

// afterProduct chooses what follows a product page event.
func (g *Generator) afterProduct(s *session) action {
	b := s.buyer
	inCart := 0.0
	if len(s.cart) > 0 {
		inCart = 1
	}
	switch g.pick(0.32, 0.18, 0.08, 0.05, 0.09*b, 0.02, 0.05*b*inCart, 0.03*b*inCart, 0.12) {
	case 0:
		return actView
	case 1:
		c := &g.cats[g.prodCat[s.prod]]
		if c.apparel {
			return [...]action{actSizeGuide, actReviews, actZoom}[g.pick(0.35, 0.35, 0.3)]
		}
		return [...]action{actReviews, actZoom, actVideo}[g.pick(0.45, 0.35, 0.2)]
	case 2:
		return actList
	case 3:
		return actSearch
	case 4:
		return actAdd
	case 5:
		return actWishlist
	case 6:
		return actCart
	case 7:
		return actCheckout
	}
	return actExit
}

// pickProduct chooses a product to view.
func (g *Generator) pickProduct(s *session, now int64) int32 {
	x := g.r.Float64()
	switch {
	case now < g.burstUntil && x < 0.1:
		return g.burstProd
	case s.nrecent > 0 && x < 0.25:
		return s.recent[g.r.IntN(s.nrecent)]
	case s.nlist > 0 && x < 0.55:
		return s.list[g.r.IntN(s.nlist)]
	case x < 0.85:
		c := &g.cats[s.interest]
		return c.products[c.pop.sample(g.r)]
	default:
		return g.rank[g.pop.sample(g.r)]
	}
}

// pickListed chooses a product from the list on screen, the first ones
// more often.
func (g *Generator) pickListed(s *session) int32 {
	if s.nlist == 0 {
		c := &g.cats[s.interest]
		return c.products[c.pop.sample(g.r)]
	}
	i := 0
	for i < s.nlist-1 && g.r.Float64() < 0.45 {
		i++
	}
	return s.list[i]
}

// fillList shows up to listSize products of c from position from.
func (g *Generator) fillList(s *session, c *category, from int, dst []pipeline.Product) []pipeline.Product {
	if from >= len(c.products) {
		from = 0
	}
	s.nlist = 0
	for i := from; i < len(c.products) && s.nlist < listSize; i++ {
		p := c.products[i]
		s.list[s.nlist] = p
		s.nlist++
		dst = append(dst, g.products[p])
	}
	return dst
}

// fillFiltered shows up to listSize products of c that match filters, from
// a random position on. Filters on attributes that products do not have
// (size, colour, rating) match every product.
func (g *Generator) fillFiltered(s *session, c *category, filters []pipeline.Filter, dst []pipeline.Product) []pipeline.Product {
	brand, below := "", math.Inf(1)
	for _, f := range filters {
		switch f.Field {
		case "brand":
			brand = f.Value
		case "price":
			below, _ = strconv.ParseFloat(f.Value, 64)
		}
	}
	s.nlist = 0
	n := len(c.products)
	from := g.r.IntN(n)
	for k := 0; k < n && s.nlist < listSize; k++ {
		p := c.products[(from+k)%n]
		if brand != "" && g.products[p].Brand != brand || g.products[p].Price >= below {
			continue
		}
		s.list[s.nlist] = p
		s.nlist++
		dst = append(dst, g.products[p])
	}
	return dst
}

// search chooses a query for s and remembers what it found.
func (g *Generator) search(s *session) query {
	x := g.r.Float64()
	if x < 0.07 {
		s.zeroResults = true
		s.nlist = 0
		return g.zeroQ[g.r.IntN(len(g.zeroQ))]
	}
	s.zeroResults = false
	if x > 0.8 {
		s.interest = g.catPop.sample(g.r)
	}
	c := &g.cats[s.interest]
	q := c.queries[g.r.IntN(len(c.queries))]
	s.nlist = 0
	for s.nlist < min(listSize, q.results) {
		s.list[s.nlist] = c.products[c.pop.sample(g.r)]
		s.nlist++
	}
	return q
}

// addToCart adds qty of p to the cart.
func (g *Generator) addToCart(s *session, p, qty int32) {
	for i := range s.cart {
		if s.cart[i].prod == p {
			s.cart[i].qty += qty
			return
		}
	}
	s.cart = append(s.cart, cartItem{prod: p, qty: qty})
}

// fillCart appends the cart's lines to dst.
func (g *Generator) fillCart(s *session, dst []pipeline.Product) []pipeline.Product {
	for _, it := range s.cart {
		p := g.products[it.prod]
		p.Quantity = int(it.qty)
		dst = append(dst, p)
	}
	return dst
}

// cartValue is the value of the cart, rounded to cents.
func (g *Generator) cartValue(s *session) float64 {
	var v float64
	for _, it := range s.cart {
		v += g.products[it.prod].Price * float64(it.qty)
	}
	return math.Round(v*100) / 100
}

// updateConsent grants or withdraws one purpose of u's consent.
func (g *Generator) updateConsent(u *user) {
	if u.consent&consentAnalytics == 0 {
		// Withdrawn earlier: grant it again, or change marketing.
		if g.r.Float64() < 0.5 {
			u.consent |= consentAnalytics
		} else {
			u.consent ^= consentMarketing
		}
		return
	}
	switch g.pick(0.1, 0.65, 0.25) {
	case 0:
		u.consent &^= consentAnalytics
	case 1:
		u.consent ^= consentMarketing
	default:
		u.consent ^= consentPersonalization
	}
}

// fillConsent returns m, or a new map when m is nil, holding bits.
func (g *Generator) fillConsent(m map[string]bool, bits uint8) map[string]bool {
	if m == nil {
		m = make(map[string]bool, 3)
	}
	for {
		m["analytics"] = bits&consentAnalytics != 0
		m["personalization"] = bits&consentPersonalization != 0
		m["marketing"] = bits&consentMarketing != 0
		if len(m) == 3 {
			return m
		}
		// m held other purposes.
		clear(m)
	}
}

// stamp sets the id and times of an event that happens at now (ms).
func (g *Generator) stamp(e *pipeline.Event, now int64) {
	g.buf = strconv.AppendInt(append(g.buf[:0], g.idPrefix...), g.n, 10)
	e.EventID = string(g.buf)
	ts := now
	if g.maxDisorder > 0 && g.r.Float64() < 0.2 {
		// A late event: it happened earlier, but arrives now. None is
		// earlier than Start.
		ts = max(ts-g.r.Int64N(g.maxDisorder), g.start)
	}
	e.Timestamp = time.UnixMilli(ts).UTC()
	e.ReceivedAt = time.UnixMilli(now + 20 + min(g.expMs(150), 5000)).UTC()
}
