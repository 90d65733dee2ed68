// Package pipelinetest runs data-driven test scripts (cockroachdb/datadriven)
// against operators and pipelines in a pipeline.Harness, so that operator
// tests read like their spec. Users test their own operators with it too.
//
// A script is a sequence of commands, each followed by "----" and its
// expected output:
//
//	# A 30-minute gap splits sessions.
//	new sessionizer
//	gap: 30m
//	----
//
//	events
//	u1 10:00:00 page_viewed
//	u1 10:05:00 product_viewed product=p1 category=outerwear
//	----
//	session_started u1 @10:00:00 session_id=u1:1795860000000 ...
//
//	watermark 11:06:00
//	----
//	session_ended u1 @10:35:00 ...
//
// Commands:
//
//   - new TYPE [id=ID] [partitions=N]: a pipeline of one operator of TYPE
//     reading the events; the input block is its `with` config in YAML.
//   - new pipeline [partitions=N]: the input block is the `operators:` list
//     of a pipeline spec, in YAML.
//   - events: one event a line, `KEY TIME TYPE [field=value ...]`. KEY is a
//     user id, or `anon:ID` for an anonymous visitor. TIME is `HH:MM:SS[.mmm]`
//     on the base day 2026-11-28 (UTC), `dN/HH:MM:SS` N days later, or
//     RFC 3339. Fields: id (event_id), product, category, brand, price, qty,
//     products (id:qty:price,...), query, results, order, revenue, url,
//     consent (analytics+personalization, or -analytics to deny), user
//     (user_id beside an anon key), prop.NAME. Prints the records the events
//     caused, then any dead letters.
//   - watermark TIME: moves the watermark; prints the records it caused.
//   - clock TIME: moves processing time; prints the records it caused.
//   - end: the end of a bounded input (watermark +infinity).
//   - checkpoint: commits the state; restart: crashes and reopens from the
//     last checkpoint. Default event ids (e1, e2, ...) restart from where
//     they were at the checkpoint, so replayed events keep their ids.
//   - scan KEY: checkpoints, compacts, and counts the raw store entries
//     whose key or value contains KEY (0 after an erasure).
//   - ids: like the last output but with record ids (toggles a flag).
//
// Records print as `TYPE KEY @TIME field=value ...`, data fields sorted by
// name, times shown like the input's.
package pipelinetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/sluicehq/sluice/pipeline"
)

// BaseDay is day 0 of script times.
var BaseDay = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

// RunScripts runs every script file matched by glob (e.g.
// "testdata/sessionizer*.txt"), each as a subtest.
func RunScripts(t *testing.T, glob string) {
	t.Helper()
	paths, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no script matches %s", glob)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) { RunScript(t, path) })
	}
}

// RunScript runs one script file.
func RunScript(t *testing.T, path string) {
	t.Helper()
	s := &script{t: t}
	defer s.close()
	datadriven.RunTest(t, path, s.run)
}

type script struct {
	t       *testing.T
	h       *pipeline.Harness
	n       int
	showIDs bool
	// nAtCheckpoint is n at the last checkpoint: a restart goes back to it,
	// so that replayed events get the same default ids.
	nAtCheckpoint int
}

func (s *script) close() {
	if s.h != nil {
		_ = s.h.Close()
	}
}

func (s *script) run(t *testing.T, d *datadriven.TestData) string {
	out, err := s.exec(d)
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	return out
}

func (s *script) exec(d *datadriven.TestData) (string, error) {
	switch d.Cmd {
	case "new":
		return "", s.newHarness(d)
	}
	if s.h == nil {
		return "", fmt.Errorf("%s: no pipeline yet (use new)", d.Pos)
	}
	switch d.Cmd {
	case "events":
		var evs []pipeline.Event
		for i, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			e, err := s.parseEvent(line)
			if err != nil {
				return "", fmt.Errorf("line %d: %w", i+1, err)
			}
			evs = append(evs, e)
		}
		s.h.Process(evs...)
	case "watermark":
		at, err := ParseTime(argOrFail(d))
		if err != nil {
			return "", err
		}
		s.h.AdvanceWatermark(at)
	case "clock":
		at, err := ParseTime(argOrFail(d))
		if err != nil {
			return "", err
		}
		s.h.AdvanceClock(at)
	case "end":
		s.h.EndOfInput()
	case "checkpoint":
		s.nAtCheckpoint = s.n
		return "ok\n", s.h.Checkpoint()
	case "restart":
		// Events replayed after the restart get the ids they had.
		s.n = s.nAtCheckpoint
		return "ok\n", s.h.Restart()
	case "ids":
		s.showIDs = !s.showIDs
		return fmt.Sprintf("ids %v\n", s.showIDs), nil
	case "scan":
		return s.scan(argOrFail(d))
	default:
		return "", fmt.Errorf("unknown command %q", d.Cmd)
	}
	return s.outputs(), nil
}

func argOrFail(d *datadriven.TestData) string {
	if len(d.CmdArgs) == 0 {
		d.Fatalf(nil, "%s needs an argument", d.Cmd)
	}
	return d.CmdArgs[0].String()
}

func (s *script) newHarness(d *datadriven.TestData) error {
	if s.h != nil {
		_ = s.h.Close()
		s.h = nil
	}
	partitions := 1
	id := ""
	if len(d.CmdArgs) == 0 {
		return fmt.Errorf("new needs an operator type or `pipeline`")
	}
	typ := d.CmdArgs[0].Key
	for _, a := range d.CmdArgs[1:] {
		switch a.Key {
		case "partitions":
			n, err := strconv.Atoi(a.Vals[0])
			if err != nil {
				return fmt.Errorf("partitions: %w", err)
			}
			partitions = n
		case "id":
			id = a.Vals[0]
		default:
			return fmt.Errorf("new: unknown argument %q", a.Key)
		}
	}
	dir, err := os.MkdirTemp(s.t.TempDir(), "state")
	if err != nil {
		return err
	}
	var spec string
	if typ == "pipeline" {
		spec = d.Input
	} else {
		if id == "" {
			id = typ
		}
		with := strings.TrimSpace(d.Input)
		if with == "" {
			with = "{}"
		}
		spec = fmt.Sprintf("- id: %s\n  type: %s\n  with:\n%s\n", id, typ, indent(with, "    "))
	}
	full := fmt.Sprintf("version: 1\nname: script\nsource: {type: none}\npartitions: %d\nstate: {dir: %q}\noperators:\n%s",
		partitions, dir, indent(strings.TrimRight(spec, "\n"), "  "))
	parsed, err := pipeline.ParseSpec([]byte(full), d.Pos)
	if err != nil {
		return err
	}
	plan, err := pipeline.NewPlan(parsed)
	if err != nil {
		return err
	}
	s.h, err = pipeline.NewHarness(plan)
	return err
}

func indent(s, pre string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = pre + lines[i]
	}
	return strings.Join(lines, "\n")
}

// ParseTime reads a script time: HH:MM:SS[.mmm] on BaseDay, dN/HH:MM:SS N
// days later, or RFC 3339.
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	day := 0
	if rest, ok := strings.CutPrefix(s, "d"); ok {
		n, clock, found := strings.Cut(rest, "/")
		if !found {
			return time.Time{}, fmt.Errorf("time %q: want dN/HH:MM:SS", s)
		}
		var err error
		if day, err = strconv.Atoi(n); err != nil {
			return time.Time{}, fmt.Errorf("time %q: %w", s, err)
		}
		s = clock
	}
	c, err := time.Parse("15:04:05.999", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want HH:MM:SS, dN/HH:MM:SS or RFC 3339", s)
	}
	return BaseDay.AddDate(0, 0, day).Add(c.Sub(time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC))), nil
}

// FormatTime writes a time the way scripts write it.
func FormatTime(t time.Time) string {
	t = t.UTC()
	d := int(t.Sub(BaseDay).Hours() / 24)
	if t.Before(BaseDay) || d > 3650 {
		return t.Format(time.RFC3339Nano)
	}
	clock := t.Format("15:04:05.999")
	if d == 0 {
		return clock
	}
	return fmt.Sprintf("d%d/%s", d, clock)
}

func (s *script) parseEvent(line string) (pipeline.Event, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return pipeline.Event{}, fmt.Errorf("want KEY TIME TYPE [field=value ...], got %q", line)
	}
	s.n++
	e := pipeline.Event{EventID: "e" + strconv.Itoa(s.n), Type: f[2]}
	if anon, ok := strings.CutPrefix(f[0], "anon:"); ok {
		e.AnonymousID = anon
	} else {
		e.UserID = f[0]
	}
	at, err := ParseTime(f[1])
	if err != nil {
		return e, err
	}
	e.Timestamp = at
	for _, kv := range f[3:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return e, fmt.Errorf("field %q: want name=value", kv)
		}
		if err := setField(&e, k, v); err != nil {
			return e, err
		}
	}
	return e, nil
}

func setField(e *pipeline.Event, k, v string) error {
	num := func() (float64, error) { return strconv.ParseFloat(v, 64) }
	var err error
	switch k {
	case "id":
		e.EventID = v
	case "user":
		e.UserID = v
	case "product":
		e.Product.ID = v
	case "category":
		e.Product.Category = v
	case "brand":
		e.Product.Brand = v
	case "price":
		e.Product.Price, err = num()
	case "qty":
		e.Product.Quantity, err = strconv.Atoi(v)
	case "products":
		for _, item := range strings.Split(v, ",") {
			parts := strings.Split(item, ":")
			p := pipeline.Product{ID: parts[0], Quantity: 1}
			if len(parts) > 1 {
				if p.Quantity, err = strconv.Atoi(parts[1]); err != nil {
					return fmt.Errorf("products: %w", err)
				}
			}
			if len(parts) > 2 {
				if p.Price, err = strconv.ParseFloat(parts[2], 64); err != nil {
					return fmt.Errorf("products: %w", err)
				}
			}
			e.Products = append(e.Products, p)
		}
	case "query":
		e.Search.Query = v
	case "results":
		e.Search.Results, err = strconv.Atoi(v)
	case "order":
		e.Order.ID = v
	case "revenue":
		e.Order.Revenue, err = num()
	case "url":
		e.Context.Page.URL = v
	case "consent":
		if e.Consent == nil {
			e.Consent = map[string]bool{}
		}
		for _, p := range strings.Split(v, "+") {
			if name, deny := strings.CutPrefix(p, "-"); deny {
				e.Consent[name] = false
			} else {
				e.Consent[p] = true
			}
		}
	default:
		name, ok := strings.CutPrefix(k, "prop.")
		if !ok {
			return fmt.Errorf("unknown event field %q", k)
		}
		if e.Properties == nil {
			e.Properties = map[string]any{}
		}
		if f, ferr := strconv.ParseFloat(v, 64); ferr == nil {
			e.Properties[name] = f
		} else {
			e.Properties[name] = v
		}
	}
	if err != nil {
		return fmt.Errorf("field %s: %w", k, err)
	}
	return nil
}

func (s *script) outputs() string {
	var b strings.Builder
	for _, r := range s.h.Records() {
		b.WriteString(FormatRecord(r, s.showIDs))
		b.WriteByte('\n')
	}
	for _, l := range s.h.DeadLetters() {
		var e pipeline.Event
		var dec pipeline.EventDecoder
		what := string(l.Payload)
		if dec.Decode(l.Payload, &e) == nil {
			what = e.Key() + " " + FormatTime(e.Timestamp) + " " + e.Type
		}
		fmt.Fprintf(&b, "dead-letter %s: %s\n", what, l.Reason)
	}
	return b.String()
}

// FormatRecord writes a record as scripts show it: TYPE KEY @TIME
// field=value ..., with the id first when ids is set.
func FormatRecord(r pipeline.Record, ids bool) string {
	var b strings.Builder
	if ids {
		b.WriteString(r.ID)
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "%s %s @%s", r.Type, r.Key, FormatTime(r.Time))
	raw := pipeline.AppendRecordJSON(nil, &r)
	var rec struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return b.String() + " !bad json: " + err.Error()
	}
	var data map[string]any
	dec := json.NewDecoder(bytes.NewReader(rec.Data))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		fmt.Fprintf(&b, " %s", rec.Data)
		return b.String()
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, formatValue(data[k]))
	}
	return b.String()
}

func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return FormatTime(t)
		}
		if x == "" || strings.ContainsAny(x, " =\t") {
			return strconv.Quote(x)
		}
		return x
	case json.Number:
		return x.String()
	case nil:
		return "null"
	default:
		j, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(j)
	}
}

func (s *script) scan(key string) (string, error) {
	if err := s.h.Checkpoint(); err != nil {
		return "", err
	}
	db := s.h.State()
	if err := db.Compact(); err != nil {
		return "", err
	}
	n := 0
	k := []byte(key)
	err := db.ScanRaw(func(rk, rv []byte) bool {
		if bytes.Contains(rk, k) || bytes.Contains(rv, k) {
			n++
		}
		return true
	})
	return fmt.Sprintf("raw entries mentioning %q: %d\n", key, n), err
}
