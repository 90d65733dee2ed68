// Package pipeline is the core of Sluice: the event and record types, the
// pipeline spec and its validation, the planner, the operator API and
// registry, and the partitioned, checkpointed runtime.
package pipeline

import "time"

// Event is one behavioural event from a shop (DESIGN §2). Field names follow
// the Segment e-commerce spec in snake_case; the expr tags are the names that
// `match` expressions and `group_by` paths use.
type Event struct {
	EventID     string       `expr:"event_id"`
	Type        string       `expr:"type"`
	UserID      string       `expr:"user_id"`
	AnonymousID string       `expr:"anonymous_id"`
	Timestamp   time.Time    `expr:"timestamp"`
	ReceivedAt  time.Time    `expr:"received_at"`
	Context     EventContext `expr:"context"`
	// Consent is the consent the event states, purpose -> granted; nil when
	// the event states none.
	Consent  map[string]bool `expr:"consent"`
	Product  Product         `expr:"product"`
	Products []Product       `expr:"products"`
	Order    Order           `expr:"order"`
	Search   Search          `expr:"search"`
	Filters  []Filter        `expr:"filters"`
	// Properties holds free-form properties; nil when absent.
	Properties map[string]any `expr:"properties"`
}

// EventContext is where an event happened.
type EventContext struct {
	Page      Page   `expr:"page"`
	Channel   string `expr:"channel"`
	UserAgent string `expr:"user_agent"`
	Locale    string `expr:"locale"`
	IP        string `expr:"ip"`
}

// Page is the page an event happened on.
type Page struct {
	URL      string `expr:"url"`
	Referrer string `expr:"referrer"`
	Title    string `expr:"title"`
}

// Product is one product an event is about. An empty ID means no product.
type Product struct {
	ID       string  `expr:"id"`
	SKU      string  `expr:"sku"`
	Category string  `expr:"category"`
	Brand    string  `expr:"brand"`
	Price    float64 `expr:"price"`
	Currency string  `expr:"currency"`
	Quantity int     `expr:"quantity"`
}

// Order is the order an event completes or refunds. An empty ID means none.
type Order struct {
	ID       string  `expr:"id"`
	Revenue  float64 `expr:"revenue"`
	Currency string  `expr:"currency"`
}

// Search is a search an event performed.
type Search struct {
	Query   string `expr:"query"`
	Results int    `expr:"results"`
}

// Filter is one filter applied to a product list.
type Filter struct {
	Field string `expr:"field"`
	Op    string `expr:"op"`
	Value string `expr:"value"`
}

// Key returns the key of the event: its user id when non-empty, else its
// anonymous id.
func (e *Event) Key() string {
	if e.UserID != "" {
		return e.UserID
	}
	return e.AnonymousID
}

// Category is the vocabulary category of an event type (DESIGN §2).
type Category string

// The event categories of the vocabulary.
const (
	CategoryDiscovery  Category = "discovery"
	CategoryEngagement Category = "engagement"
	CategoryIntent     Category = "intent"
	CategoryConversion Category = "conversion"
	CategoryPrivacy    Category = "privacy"
	CategoryCustom     Category = "custom"
)

var categories = map[string]Category{
	"page_viewed": CategoryDiscovery, "products_searched": CategoryDiscovery,
	"product_list_viewed": CategoryDiscovery, "product_list_filtered": CategoryDiscovery,
	"product_viewed": CategoryEngagement, "product_clicked": CategoryEngagement,
	"size_guide_opened": CategoryEngagement, "reviews_read": CategoryEngagement,
	"video_played": CategoryEngagement, "image_zoomed": CategoryEngagement,
	"product_added": CategoryIntent, "product_removed": CategoryIntent,
	"cart_viewed": CategoryIntent, "product_added_to_wishlist": CategoryIntent,
	"checkout_started": CategoryIntent, "checkout_step_completed": CategoryIntent,
	"payment_info_entered": CategoryIntent,
	"order_completed":      CategoryConversion, "order_refunded": CategoryConversion,
	"product_returned": CategoryConversion, "review_submitted": CategoryConversion,
	"shipment_tracked": CategoryConversion, "email_opened": CategoryConversion,
	"identify": CategoryPrivacy, "consent_updated": CategoryPrivacy,
	"erasure_requested": CategoryPrivacy,
}

// CategoryOf returns the vocabulary category of an event type; types outside
// the vocabulary are CategoryCustom.
func CategoryOf(eventType string) Category {
	if c, ok := categories[eventType]; ok {
		return c
	}
	return CategoryCustom
}
