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

// DefaultSessionGap is the sessionizer's gap when the config leaves it out.
const DefaultSessionGap = 30 * time.Minute

// The record types a sessionizer emits.
const (
	// RecordSessionStarted is emitted at a session's first event, with data
	// {session_id, start, landing_page}.
	RecordSessionStarted = "session_started"
	// RecordSessionUpdated is emitted, with emit_updates, after each event a
	// session takes, with the session's current summary as data.
	RecordSessionUpdated = "session_updated"
	// RecordSessionEnded is emitted when a session ends, with the ended
	// session (*EndedSession, encoded as its SessionSummary) as data.
	RecordSessionEnded = "session_ended"
)

// SessionStateTable is the name of the sessionizer's table of open
// sessions (one Session per key, encoded with SessionCodec), under the
// operator's id: pipeline.OpenContext.StateName(SessionStateTable). A key
// without an entry has no open session.
const SessionStateTable = "session"

// Timer names of the sessionizer.
const (
	// sessionTimerEnd fires at the open session's last event + gap.
	sessionTimerEnd = "end"
	// sessionTimerForget is set, when a session ends, at its end + gap: while
	// it is pending it marks the end of the key's last ended session (its
	// time minus gap), before which the key's events are late. It does
	// nothing when it fires.
	sessionTimerForget = "forget"
)

// SessionizerConfig configures a sessionizer.
type SessionizerConfig struct {
	// Gap is the inactivity that ends a session: an event Gap or more after
	// the previous one starts a new session. Default 30m.
	Gap pipeline.Duration `yaml:"gap"`
	// MaxDuration, when positive, caps a session's duration (its last event
	// time minus its first): the event that would make the session longer
	// ends it and starts a new one. 0 (the default) means no cap.
	MaxDuration pipeline.Duration `yaml:"max_duration"`
	// EmitUpdates emits a session_updated record with the session's summary
	// after every event the session takes, its first included. Default
	// false.
	EmitUpdates bool `yaml:"emit_updates"`
}

// Validate checks the config.
func (c SessionizerConfig) Validate() error {
	if c.Gap < 0 {
		return fmt.Errorf("gap must not be negative, got %s", c.Gap)
	}
	if c.MaxDuration < 0 {
		return fmt.Errorf("max_duration must not be negative, got %s", c.MaxDuration)
	}
	return nil
}

func init() {
	pipeline.RegisterOperator("sessionizer", func(id string, cfg SessionizerConfig) (pipeline.Factory, error) {
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("sessionizer %q: %w", id, err)
		}
		gap := cfg.Gap.D()
		if gap == 0 {
			gap = DefaultSessionGap
		}
		return func() pipeline.Operator {
			return &sessionizer{gap: int64(gap), maxDur: int64(cfg.MaxDuration.D()), updates: cfg.EmitUpdates}
		}, nil
	})
}

// sessionizer cuts each key's events into sessions and summarises them.
//
// A session is a maximal run of a key's events whose consecutive event
// times are less than gap apart: an event exactly gap after the previous
// one starts a new session. Its id is `<key>:<start unix ms>`. The
// sessionizer emits session_started at a session's first event,
// session_updated after each event (with emit_updates), and session_ended
// with the summary (SessionSummary) when the watermark reaches the last
// event + gap; the record's time is the last event + gap. A key's session
// also ends just before the key processes an event at or after that time
// (the runtime fires the timer first), so sessions depend only on the key's
// own events. With max_duration, the event that would make a session last
// longer than max_duration (last event time minus first) ends it, at the
// event's time, and starts a new session.
//
// Out-of-order events: a key has at most one open session. An event that
// falls within gap of the open session, before its last event or even
// before its start, joins it and updates every figure (a new earliest event
// moves start and landing_page). The session id never changes once the
// session has started, even when start moves earlier: every record of a
// session carries the id of its session_started record, which is
// `<key>:<unix ms of the first event seen>`.
//
// Late events go to the late side output (ctx.Late) and change nothing: an
// event before the end (last event + gap, or the cut) of the key's last
// ended session, since the session it belongs to was already emitted; an
// event that precedes the open session by gap or more, since a key keeps
// only one open session; an event that would open a session whose end is
// already behind the watermark; and, with max_duration, an event before an
// open session's start that would make it longer than max_duration.
//
// State per key: the open Session (table SessionStateTable, readable by a
// query API) and two timers: one at the open session's end, and, for gap
// after a session ended, one that marks its end, to recognise late events
// (timers stay in memory, so this costs no table and no read from disk).
// If the pipeline restarts with another gap, an ended session's end reads
// as its end + the old gap - the new gap. Erasure needs nothing of the
// operator: the runtime deletes the key's table entry and timers.
type sessionizer struct {
	gap, maxDur int64 // nanoseconds
	updates     bool
	sessions    *state.Value[*Session]
	// names shares one copy of each event type and category name among
	// the sessions of the partition.
	names nameInterner
}

// EventFields implements pipeline.EventFieldsReader: of the optional
// fields the sessionizer reads the page URL (landing and exit pages), and
// it forwards no event.
func (s *sessionizer) EventFields() (pipeline.EventFields, bool) {
	return pipeline.FieldPageURL, false
}

func (s *sessionizer) Open(oc *pipeline.OpenContext) error {
	s.sessions = pipeline.NewValue(oc, SessionStateTable, SessionCodec)
	s.names = make(nameInterner)
	return nil
}

func (s *sessionizer) OnEvent(ctx *pipeline.Context, e *pipeline.Event) error {
	key, at := ctx.Key(), ctx.TimeNanos()
	sess, open, err := s.sessions.Get(key)
	if err != nil {
		return fmt.Errorf("sessionizer: read session: %w", err)
	}
	if open && at >= sess.End.UnixNano()+s.gap {
		// The end timer fires before such an event reaches the operator;
		// it can still be pending if the pipeline restarted with a smaller
		// gap. End the session where the current gap ends it.
		ctx.DeleteTimer(sessionTimerEnd)
		s.end(ctx, sess, sess.End.UnixNano()+s.gap)
		open = false
	}
	// An open session starts at or after the end of the key's last ended
	// session, so the ended marker matters only for an event without an
	// open session or before the open session's start.
	if !open || at < sess.Start.UnixNano() {
		if forget, ok := ctx.TimerAt(sessionTimerForget); ok && at < forget.UnixNano()-s.gap {
			ctx.Late(e, "its session has ended")
			return nil
		}
	}
	if open {
		first, last := sess.Start.UnixNano(), sess.End.UnixNano()
		if at <= first-s.gap {
			ctx.Late(e, "it precedes the open session by the gap or more")
			return nil
		}
		if s.maxDur > 0 && max(last, at)-min(first, at) > s.maxDur {
			if at < first {
				ctx.Late(e, "it would make its session longer than max_duration")
				return nil
			}
			// at > last: the event starts a new session.
			s.end(ctx, sess, at)
			s.start(ctx, e)
			return nil
		}
		sess.addNamed(e, ctx.Time(), s.names)
		s.sessions.Put(key, sess)
		if at > last {
			ctx.SetTimer(sessionTimerEnd, pipeline.TimeFromNanos(at+s.gap))
		}
		if s.updates {
			sum := sess.Summary()
			ctx.Emit(RecordSessionUpdated, &sum)
		}
		return nil
	}
	if at+s.gap <= ctx.WatermarkNanos() {
		ctx.Late(e, "its session would have ended before the watermark")
		return nil
	}
	s.start(ctx, e)
	return nil
}

func (s *sessionizer) OnTimer(ctx *pipeline.Context, t pipeline.Timer) error {
	key := ctx.Key()
	switch t.Name {
	case sessionTimerEnd:
		sess, open, err := s.sessions.Get(key)
		if err != nil {
			return fmt.Errorf("sessionizer: read session: %w", err)
		}
		if open {
			s.end(ctx, sess, ctx.TimeNanos())
		}
	case sessionTimerForget:
		// Its firing is the end of the ended-session marker.
	}
	return nil
}

// start opens a session at the current event.
func (s *sessionizer) start(ctx *pipeline.Context, e *pipeline.Event) {
	key, at := ctx.Key(), ctx.Time()
	var digits [20]byte // the id in one allocation
	n := &newSession{}
	sess := &n.Session
	sess.ID = key + ":" + string(strconv.AppendInt(digits[:0], at.UnixMilli(), 10))
	sess.Start, sess.End = at, at
	sess.Counts, sess.CategoryViews = n.counts[:0], n.categories[:0]
	sess.addNamed(e, at, s.names)
	s.sessions.Put(key, sess)
	ctx.SetTimer(sessionTimerEnd, at.Add(time.Duration(s.gap)))
	n.started = sessionStart{ID: sess.ID, Start: sess.Start, LandingPage: sess.LandingPage}
	ctx.Emit(RecordSessionStarted, &n.started)
	if s.updates {
		sum := sess.Summary()
		ctx.Emit(RecordSessionUpdated, &sum)
	}
}

// newSession is a session as start makes it: one allocation holding the
// Session, its session_started payload (a copy that later events do not
// change) and room for its first counts and categories, which most
// sessions never outgrow. It fits the 512-byte size class.
type newSession struct {
	Session
	started    sessionStart
	counts     [5]SessionNameCount
	categories [2]SessionNameCount
}

// end emits session_ended at time at (Unix nanos), deletes the session and
// remembers until at + gap that the key's events before at are late. The
// record's payload is the session itself: once deleted from the table,
// nothing changes it again.
func (s *sessionizer) end(ctx *pipeline.Context, sess *Session, at int64) {
	key := ctx.Key()
	ctx.EmitRecord(pipeline.Record{Type: RecordSessionEnded, Time: pipeline.TimeFromNanos(at), Data: (*EndedSession)(sess)})
	s.sessions.Delete(key)
	ctx.SetTimer(sessionTimerForget, pipeline.TimeFromNanos(at+s.gap))
}

// EndedSession is the data of a session_ended record: the session that
// ended, which its sessionizer no longer changes. Its JSON is that of the
// session's SessionSummary, written straight from the session.
type EndedSession Session

// Summary returns the figures of the session (Session.Summary).
func (s *EndedSession) Summary() SessionSummary { return (*Session)(s).Summary() }

// AppendJSON appends the session's summary as SessionSummary.AppendJSON
// does, without copying the session.
func (s *EndedSession) AppendJSON(dst []byte) []byte {
	var top [topCategoriesMax]string
	var searches [8]string
	sum := (*Session)(s).summary(top[:0], searches[:0])
	return sum.AppendJSON(dst)
}

// MarshalJSON encodes the session's summary as AppendJSON does.
func (s *EndedSession) MarshalJSON() ([]byte, error) { return s.AppendJSON(nil), nil }

// Session is the live state of a key's open session, as the sessionizer
// keeps it (table SessionStateTable, codec SessionCodec). Summary gives the
// figures its records carry. Times are UTC; slices are sorted as their
// comments say, so that equal sessions encode equally.
type Session struct {
	// ID is `<key>:<unix ms>` of the first event seen; it never changes.
	ID string `json:"session_id"`
	// Start and End are the times of the earliest and latest events.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// EventCount is the number of events.
	EventCount int `json:"event_count"`
	// Counts is the number of events per type, sorted by type.
	Counts []SessionNameCount `json:"counts"`
	// ProductsViewed holds the distinct product ids of product_viewed
	// events, sorted.
	ProductsViewed []string `json:"products_viewed"`
	// CategoryViews is the number of product_viewed events per product
	// category (events without one are not counted), sorted by category;
	// empty or nil when there are none.
	CategoryViews []SessionNameCount `json:"category_views"`
	// Searches holds the queries of products_searched events in event-time
	// order (arrival order among equal times).
	Searches []SessionSearch `json:"searches"`
	// CartAdds and CartRemoves are the units (quantity, at least 1 per
	// item) of product_added and product_removed events.
	CartAdds    int `json:"cart_adds"`
	CartRemoves int `json:"cart_removes"`
	// CartValue is the sum of price * quantity over the items of
	// product_added events minus that of product_removed events: the net
	// value put in carts during the session (negative when it removed
	// more than it added).
	CartValue float64 `json:"cart_value"`
	// Purchased is true once an order_completed event is in the session.
	Purchased bool `json:"purchased"`
	// Revenue is the sum over order_completed events of order.revenue, or
	// of price * quantity over the event's items when it has no revenue.
	Revenue float64 `json:"revenue"`
	// LandingPage is the page URL of the earliest event that has one, at
	// LandingAt; ExitPage that of the latest, at ExitAt (the later arrival
	// among equal times). Empty when no event has a page URL.
	LandingPage string    `json:"landing_page"`
	LandingAt   time.Time `json:"landing_at,omitzero"`
	ExitPage    string    `json:"exit_page"`
	ExitAt      time.Time `json:"exit_at,omitzero"`
}

// SessionNameCount is a count under a name (an event type, a category).
type SessionNameCount struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

// SessionSearch is one search of a session.
type SessionSearch struct {
	At    time.Time `json:"at"`
	Query string    `json:"query"`
}

// add folds the event e at time at into the session. Strings the session
// keeps are cloned: an event's strings share one allocation.
func (s *Session) add(e *pipeline.Event, at time.Time) { s.addNamed(e, at, nil) }

// addNamed is add, with the event type and category names cloned through
// names.
func (s *Session) addNamed(e *pipeline.Event, at time.Time, names nameInterner) {
	s.EventCount++
	s.Counts = addSessionCount(s.Counts, e.Type, names)
	if at.Before(s.Start) {
		s.Start = at
	}
	if at.After(s.End) {
		s.End = at
	}
	if url := e.Context.Page.URL; url != "" {
		if s.LandingPage == "" || at.Before(s.LandingAt) {
			landing := s.ExitPage
			if url != landing {
				landing = strings.Clone(url)
			}
			s.LandingPage, s.LandingAt = landing, at
		}
		if s.ExitPage == "" || !at.Before(s.ExitAt) {
			switch {
			case url == s.ExitPage:
				url = s.ExitPage // keep the session's own copy
			case url == s.LandingPage:
				url = s.LandingPage
			default:
				url = strings.Clone(url)
			}
			s.ExitPage, s.ExitAt = url, at
		}
	}
	switch e.Type {
	case "product_viewed":
		if id := e.Product.ID; id != "" {
			if i, found := slices.BinarySearch(s.ProductsViewed, id); !found {
				s.ProductsViewed = slices.Insert(s.ProductsViewed, i, strings.Clone(id))
			}
		}
		if c := e.Product.Category; c != "" {
			s.CategoryViews = addSessionCount(s.CategoryViews, c, names)
		}
	case "products_searched":
		if q := e.Search.Query; q != "" {
			i := len(s.Searches)
			for i > 0 && s.Searches[i-1].At.After(at) {
				i--
			}
			s.Searches = slices.Insert(s.Searches, i, SessionSearch{At: at, Query: strings.Clone(q)})
		}
	case "product_added":
		units, value := sessionItems(e)
		s.CartAdds += units
		s.CartValue += value
	case "product_removed":
		units, value := sessionItems(e)
		s.CartRemoves += units
		s.CartValue -= value
	case "order_completed":
		s.Purchased = true
		if e.Order.Revenue != 0 {
			s.Revenue += e.Order.Revenue
		} else {
			_, value := sessionItems(e)
			s.Revenue += value
		}
	}
}

// addSessionCount adds one to name's count in counts, sorted by name.
// Sessions hold few names, interned or static like event types, so a
// linear scan that mostly compares lengths finds a name faster than a
// binary search comparing bytes; past sessionCountScan names, and to
// place a new name, it searches.
func addSessionCount(counts []SessionNameCount, name string, names nameInterner) []SessionNameCount {
	if len(counts) <= sessionCountScan {
		for i := range counts {
			if counts[i].Name == name {
				counts[i].N++
				return counts
			}
		}
	}
	i, found := slices.BinarySearchFunc(counts, name, func(c SessionNameCount, name string) int {
		return strings.Compare(c.Name, name)
	})
	if found {
		counts[i].N++
		return counts
	}
	return slices.Insert(counts, i, SessionNameCount{Name: names.clone(name), N: 1})
}

// sessionCountScan is the most names addSessionCount scans linearly.
const sessionCountScan = 16

// maxInternedNames bounds a nameInterner.
const maxInternedNames = 4096

// nameInterner hands out one copy of each name it is given, up to
// maxInternedNames names; past that, a fresh copy each time. A nil
// nameInterner always copies.
type nameInterner map[string]string

// clone returns a copy of name that does not share the memory of name.
func (n nameInterner) clone(name string) string {
	if c, ok := n[name]; ok {
		return c
	}
	c := strings.Clone(name)
	if n != nil && len(n) < maxInternedNames {
		n[c] = c
	}
	return c
}

// eventItems returns the units and value (price * quantity) of an event's
// items: its products, else its product. A quantity below 1 counts 1.
func sessionItems(e *pipeline.Event) (units int, value float64) {
	item := func(p *pipeline.Product) {
		q := max(p.Quantity, 1)
		units += q
		value += p.Price * float64(q)
	}
	if len(e.Products) > 0 {
		for i := range e.Products {
			item(&e.Products[i])
		}
	} else if e.Product.ID != "" {
		item(&e.Product)
	}
	return units, value
}

// topCategoriesMax is how many categories a summary lists.
const topCategoriesMax = 5

// Summary returns the figures of the session as session_updated and
// session_ended carry them. It copies what it needs: the summary stays
// valid when the session changes.
func (s *Session) Summary() SessionSummary {
	sum := s.summary(nil, nil)
	sum.Counts = slices.Clone(s.Counts)
	return sum
}

// summary returns the figures of the session, sharing its Counts: it is
// valid until the session changes. The top categories and searches go in
// top and searches, empty slices whose room it uses when it suffices (the
// fields stay nil when there are none).
func (s *Session) summary(top, searches []string) SessionSummary {
	sum := SessionSummary{
		SessionID:      s.ID,
		Start:          s.Start,
		End:            s.End,
		DurationS:      s.End.Sub(s.Start).Seconds(),
		EventCount:     s.EventCount,
		Counts:         s.Counts,
		ProductsViewed: len(s.ProductsViewed),
		CartAdds:       s.CartAdds,
		CartRemoves:    s.CartRemoves,
		CartValue:      s.CartValue,
		Purchased:      s.Purchased,
		Revenue:        s.Revenue,
		LandingPage:    s.LandingPage,
		ExitPage:       s.ExitPage,
	}
	// The top categories: most views first, ties by name. CategoryViews is
	// sorted by name, so a category goes after those with as many views.
	var best [topCategoriesMax]SessionNameCount
	n := 0
	for _, c := range s.CategoryViews {
		i := n
		for i > 0 && best[i-1].N < c.N {
			i--
		}
		if i >= topCategoriesMax {
			continue
		}
		if n < topCategoriesMax {
			n++
		}
		copy(best[i+1:n], best[i:n-1])
		best[i] = c
	}
	if n > 0 {
		if cap(top) < n {
			top = make([]string, 0, n)
		}
		for i := range n {
			top = append(top, best[i].Name)
		}
		sum.TopCategories = top
	}
	if len(s.Searches) > 0 {
		if cap(searches) < len(s.Searches) {
			searches = make([]string, 0, len(s.Searches))
		}
		for _, q := range s.Searches {
			searches = append(searches, q.Query)
		}
		sum.Searches = searches
	}
	return sum
}

// SessionSummary is the data of session_updated and session_ended records:
//
//	{"session_id":"u1:1795860000000","start":"<RFC 3339>","end":"<RFC 3339>",
//	 "duration_s":300,"event_count":2,"counts":{"page_viewed":1,...},
//	 "products_viewed":1,"top_categories":["outerwear"],"searches":["rain jacket"],
//	 "cart_adds":0,"cart_removes":0,"cart_value":0,"purchased":false,"revenue":0,
//	 "landing_page":"","exit_page":""}
//
// start and end are the times of the first and last events, duration_s the
// seconds between them; products_viewed is the number of distinct products
// viewed; top_categories the (up to 5) categories of the most product
// views, most first, ties by name. Money figures are rounded to 6 decimals
// in JSON, hiding binary floating-point noise. See Session for the rest.
type SessionSummary struct {
	SessionID      string             `json:"session_id"`
	Start          time.Time          `json:"start"`
	End            time.Time          `json:"end"`
	DurationS      float64            `json:"duration_s"`
	EventCount     int                `json:"event_count"`
	Counts         []SessionNameCount `json:"counts"` // sorted by name; an object in JSON
	ProductsViewed int                `json:"products_viewed"`
	TopCategories  []string           `json:"top_categories"`
	Searches       []string           `json:"searches"`
	CartAdds       int                `json:"cart_adds"`
	CartRemoves    int                `json:"cart_removes"`
	CartValue      float64            `json:"cart_value"`
	Purchased      bool               `json:"purchased"`
	Revenue        float64            `json:"revenue"`
	LandingPage    string             `json:"landing_page"`
	ExitPage       string             `json:"exit_page"`
}

// AppendJSON appends the summary's JSON encoding to dst, without
// reflection.
func (s *SessionSummary) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"session_id":`...)
	dst = pipeline.AppendJSONString(dst, s.SessionID)
	dst = append(dst, `,"start":`...)
	dst = sessAppendTime(dst, s.Start)
	dst = append(dst, `,"end":`...)
	dst = sessAppendTime(dst, s.End)
	dst = append(dst, `,"duration_s":`...)
	dst = pipeline.AppendJSONFloat(dst, s.DurationS)
	dst = append(dst, `,"event_count":`...)
	dst = strconv.AppendInt(dst, int64(s.EventCount), 10)
	dst = append(dst, `,"counts":{`...)
	for i, c := range s.Counts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = pipeline.AppendJSONString(dst, c.Name)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, int64(c.N), 10)
	}
	dst = append(dst, `},"products_viewed":`...)
	dst = strconv.AppendInt(dst, int64(s.ProductsViewed), 10)
	dst = append(dst, `,"top_categories":`...)
	dst = sessAppendStrings(dst, s.TopCategories)
	dst = append(dst, `,"searches":`...)
	dst = sessAppendStrings(dst, s.Searches)
	dst = append(dst, `,"cart_adds":`...)
	dst = strconv.AppendInt(dst, int64(s.CartAdds), 10)
	dst = append(dst, `,"cart_removes":`...)
	dst = strconv.AppendInt(dst, int64(s.CartRemoves), 10)
	dst = append(dst, `,"cart_value":`...)
	dst = sessAppendMoney(dst, s.CartValue)
	dst = append(dst, `,"purchased":`...)
	dst = strconv.AppendBool(dst, s.Purchased)
	dst = append(dst, `,"revenue":`...)
	dst = sessAppendMoney(dst, s.Revenue)
	dst = append(dst, `,"landing_page":`...)
	dst = pipeline.AppendJSONString(dst, s.LandingPage)
	dst = append(dst, `,"exit_page":`...)
	dst = pipeline.AppendJSONString(dst, s.ExitPage)
	return append(dst, '}')
}

// MarshalJSON encodes the summary as AppendJSON does.
func (s *SessionSummary) MarshalJSON() ([]byte, error) { return s.AppendJSON(nil), nil }

// sessionStart is the data of a session_started record.
type sessionStart struct {
	ID          string
	Start       time.Time
	LandingPage string
}

// AppendJSON appends {"session_id","start","landing_page"} to dst.
func (s *sessionStart) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"session_id":`...)
	dst = pipeline.AppendJSONString(dst, s.ID)
	dst = append(dst, `,"start":`...)
	dst = sessAppendTime(dst, s.Start)
	dst = append(dst, `,"landing_page":`...)
	dst = pipeline.AppendJSONString(dst, s.LandingPage)
	return append(dst, '}')
}

// sessAppendTime appends t as a quoted RFC 3339 UTC string.
func sessAppendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// sessAppendStrings appends a JSON array of strings; nil is [].
func sessAppendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = pipeline.AppendJSONString(dst, s)
	}
	return append(dst, ']')
}

// sessAppendMoney appends f rounded to 6 decimals, as a JSON number (null
// for NaN and the infinities).
func sessAppendMoney(dst []byte, f float64) []byte {
	if r := math.Round(f*1e6) / 1e6; !math.IsInf(r, 0) {
		f = r
	}
	if f == 0 {
		f = 0 // -0 (a rounded tiny negative) prints as 0
	}
	return pipeline.AppendJSONFloat(dst, f)
}

// SessionCodec encodes a Session compactly (binary, versioned) for the
// state store.
var SessionCodec state.Codec[*Session] = sessionCodec{}

type sessionCodec struct{}

// sessionCodecVersion is the first byte of an encoded Session.
const sessionCodecVersion = 1

func (sessionCodec) Append(dst []byte, s *Session) []byte {
	dst = append(dst, sessionCodecVersion)
	dst = sessCodecString(dst, s.ID)
	dst = sessCodecTime(dst, s.Start)
	dst = sessCodecTime(dst, s.End)
	dst = binary.AppendUvarint(dst, uint64(s.EventCount))
	dst = sessCodecCounts(dst, s.Counts)
	dst = binary.AppendUvarint(dst, uint64(len(s.ProductsViewed)))
	for _, p := range s.ProductsViewed {
		dst = sessCodecString(dst, p)
	}
	dst = sessCodecCounts(dst, s.CategoryViews)
	dst = binary.AppendUvarint(dst, uint64(len(s.Searches)))
	for _, q := range s.Searches {
		dst = sessCodecTime(dst, q.At)
		dst = sessCodecString(dst, q.Query)
	}
	dst = binary.AppendVarint(dst, int64(s.CartAdds))
	dst = binary.AppendVarint(dst, int64(s.CartRemoves))
	dst = sessCodecFloat(dst, s.CartValue)
	if s.Purchased {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	dst = sessCodecFloat(dst, s.Revenue)
	dst = sessCodecString(dst, s.LandingPage)
	dst = sessCodecTime(dst, s.LandingAt)
	dst = sessCodecString(dst, s.ExitPage)
	return sessCodecTime(dst, s.ExitAt)
}

func (sessionCodec) Decode(src []byte) (*Session, error) {
	r := sessionReader{b: src}
	if v := r.byte(); r.err == nil && v != sessionCodecVersion {
		return nil, fmt.Errorf("session codec: unknown version %d", v)
	}
	s := &Session{}
	s.ID = r.string()
	s.Start = r.time()
	s.End = r.time()
	s.EventCount = int(r.uvarint())
	s.Counts = r.counts()
	if n := r.length(); n > 0 {
		s.ProductsViewed = make([]string, n)
		for i := range s.ProductsViewed {
			s.ProductsViewed[i] = r.string()
		}
	}
	s.CategoryViews = r.counts()
	if n := r.length(); n > 0 {
		s.Searches = make([]SessionSearch, n)
		for i := range s.Searches {
			s.Searches[i] = SessionSearch{At: r.time(), Query: r.string()}
		}
	}
	s.CartAdds = int(r.varint())
	s.CartRemoves = int(r.varint())
	s.CartValue = r.float()
	s.Purchased = r.byte() == 1
	s.Revenue = r.float()
	s.LandingPage = r.string()
	s.LandingAt = r.time()
	s.ExitPage = r.string()
	s.ExitAt = r.time()
	if len(r.b) != 0 {
		r.fail(fmt.Errorf("%d trailing bytes", len(r.b)))
	}
	if r.err != nil {
		return nil, fmt.Errorf("session codec: %w", r.err)
	}
	return s, nil
}

// sessZeroTime stands for the zero time.Time in encoded times.
const sessZeroTime = math.MinInt64

func sessCodecTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(dst, sessZeroTime)
	}
	return binary.AppendVarint(dst, t.UnixNano())
}

func sessCodecString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func sessCodecFloat(dst []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
}

func sessCodecCounts(dst []byte, counts []SessionNameCount) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(counts)))
	for _, c := range counts {
		dst = sessCodecString(dst, c.Name)
		dst = binary.AppendVarint(dst, int64(c.N))
	}
	return dst
}

// sessionReader reads what the codec's append functions wrote. It records
// the first error; reads after it return zero values.
type sessionReader struct {
	b   []byte
	err error
}

var errSessionShort = errors.New("truncated value")

func (r *sessionReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errSessionShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *sessionReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errSessionShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// fail records err if it is the first error and stops reading.
func (r *sessionReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

// length reads a count of items, each at least one byte long.
func (r *sessionReader) length() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail(fmt.Errorf("count %d exceeds the %d bytes left", n, len(r.b)))
		return 0
	}
	return int(n)
}

func (r *sessionReader) byte() byte {
	if len(r.b) < 1 {
		r.fail(errSessionShort)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *sessionReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail(errSessionShort)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *sessionReader) time() time.Time {
	ns := r.varint()
	if ns == sessZeroTime || r.err != nil {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func (r *sessionReader) float() float64 {
	if len(r.b) < 8 {
		r.fail(errSessionShort)
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return math.Float64frombits(v)
}

func (r *sessionReader) counts() []SessionNameCount {
	n := r.length()
	if n == 0 {
		return nil
	}
	counts := make([]SessionNameCount, n)
	for i := range counts {
		counts[i] = SessionNameCount{Name: r.string(), N: int(r.varint())}
	}
	return counts
}
