package retention

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones below must load even where the system has none
)

func loadLocation(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mustSpan(t testing.TB, s string) Span {
	t.Helper()
	sp, err := ParseSpan(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// ts parses an RFC 3339 time; an explicit offset says which instant is
// meant where a zone's wall clock is ambiguous.
func ts(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// check applies p to items and compares the result with want, which maps the
// ID of every item that must be kept to its reasons in order.
func check(t *testing.T, p Policy, items []Item, want map[string][]string) {
	t.Helper()
	orig := slices.Clone(items)
	got, err := p.Apply(items)
	if err != nil {
		t.Fatalf("%v: Apply: %v", p, err)
	}
	if !slices.Equal(items, orig) {
		t.Fatalf("%v: Apply modified its input", p)
	}
	if len(got) != len(items) {
		t.Fatalf("%v: Apply returned %d decisions for %d items", p, len(got), len(items))
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	bad := 0
	for i, d := range got {
		if d.Item != items[i] {
			t.Fatalf("%v: decision %d is for %+v, want %+v", p, i, d.Item, items[i])
		}
		w, keep := want[d.ID]
		if d.Keep == keep && slices.Equal(d.Reasons, w) {
			continue
		}
		if bad++; bad > 10 {
			t.Fatalf("%v: too many errors", p)
		}
		t.Errorf("%v: %s (%s, %s): Keep %v %q, want %v %q",
			p, d.ID, d.Group, d.Time.In(loc).Format(time.RFC3339), d.Keep, d.Reasons, keep, w)
	}
}

// --- Generated series and a reference implementation of the semantics. ---

// series returns n points of a group, starting at start and step apart, with
// IDs that sort as their times do.
func series(group string, start time.Time, step time.Duration, n int) []Item {
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{ID: fmt.Sprintf("%s-%06d", group, i), Group: group, Time: start.Add(time.Duration(i) * step)}
	}
	return items
}

// daily returns a point for each of n days at the wall time of start.
func daily(group string, start time.Time, n int) []Item {
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{ID: fmt.Sprintf("%s-%06d", group, i), Group: group, Time: start.AddDate(0, 0, i)}
	}
	return items
}

// irregular returns n points with random gaps of up to two days, some of
// them zero so that times tie, and IDs that do not sort as the times do.
func irregular(group string, start time.Time, n int, seed uint64) []Item {
	r := rand.New(rand.NewPCG(seed, 1))
	items := make([]Item, n)
	tm := start
	for i := range items {
		if r.IntN(10) > 0 {
			tm = tm.Add(time.Duration(r.Int64N(int64(48 * time.Hour))))
		}
		items[i] = Item{ID: fmt.Sprintf("%s-%08x", group, r.Uint32()), Group: group, Time: tm}
	}
	r.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	return items
}

// A refRule is a bucket rule of the reference implementation: key names the
// bucket of a time in the policy's location, which is also its reason.
type refRule struct {
	name string
	n    int
	key  func(t time.Time) string
}

func refRules(p Policy) []refRule {
	return []refRule{
		{"hourly", p.Hourly, func(t time.Time) string { return t.Format("2006-01-02 15h") }},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%d-W%02d", y, w)
		}},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"quarterly", p.Quarterly, func(t time.Time) string {
			return fmt.Sprintf("%s-Q%d", t.Format("2006"), (t.Month()+2)/3)
		}},
		{"yearly", p.Yearly, func(t time.Time) string { return t.Format("2006") }},
	}
}

// newer reports whether a comes before b when walking newest first.
func newer(a, b Item) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.ID < b.ID
}

// reference computes the reasons for keeping each item the straightforward
// way: it finds the newest point of every bucket, then keeps those of the
// newest buckets. IDs must be unique.
func reference(p Policy, items []Item) map[string][]string {
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	groups := make(map[string][]Item)
	for _, it := range items {
		groups[it.Group] = append(groups[it.Group], it)
	}
	reasons := make(map[string][]string)
	add := func(id, reason string) { reasons[id] = append(reasons[id], reason) }
	for _, g := range groups {
		slices.SortFunc(g, func(a, b Item) int {
			if newer(a, b) {
				return -1
			}
			return 1
		})
		for _, it := range g {
			if it.Pinned {
				add(it.ID, "pinned")
			}
		}
		for i, it := range g {
			if p.Last == -1 || i < p.Last {
				add(it.ID, "last")
			}
		}
		for _, r := range refRules(p) {
			if r.n == 0 {
				continue
			}
			newest := make(map[string]Item)
			for _, it := range g {
				k := r.key(it.Time.In(loc))
				if cur, ok := newest[k]; !ok || newer(it, cur) {
					newest[k] = it
				}
			}
			keys := make([]string, 0, len(newest))
			for k := range newest {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, func(a, b string) int {
				if newer(newest[a], newest[b]) {
					return -1
				}
				return 1
			})
			if r.n != -1 && len(keys) > r.n {
				keys = keys[:r.n]
			}
			kept := make(map[string]string)
			for _, k := range keys {
				kept[newest[k].ID] = k
			}
			for _, it := range g {
				if k, ok := kept[it.ID]; ok {
					add(it.ID, r.name+" "+k)
				}
			}
		}
		if w := p.Within; w != (Span{}) && len(g) > 0 {
			n := g[0].Time.In(loc)
			from := time.Date(n.Year()-w.Years, n.Month()-time.Month(w.Months), n.Day()-w.Days,
				n.Hour(), n.Minute(), n.Second(), n.Nanosecond(), loc).Add(-time.Duration(w.Hours) * time.Hour)
			for _, it := range g {
				if !it.Time.Before(from) {
					add(it.ID, "within "+w.String())
				}
			}
		}
	}
	return reasons
}

// TestRulesGenerated checks every rule on its own, in several zones, over
// long series against the reference implementation.
func TestRulesGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	start := time.Date(2026, 1, 1, 0, 17, 0, 0, time.UTC)
	serieses := []struct {
		name  string
		items []Item
	}{
		// Both 2026 clock changes of every zone below, the 53rd ISO week of
		// 2026 and the turn of the year.
		{"hourly for 400 days", series("h", start, time.Hour, 400*24)},
		// Three turns of the year and February 29, 2028.
		{"daily for 3 years", daily("d", time.Date(2025, 11, 15, 1, 30, 0, 0, time.UTC), 3*365)},
		{"irregular", irregular("i", start, 3000, 1)},
	}
	var locs []*time.Location
	for _, name := range []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe"} {
		locs = append(locs, loadLocation(t, name))
	}
	var policies []Policy
	for _, n := range []int{1, 7, 30, 1000, -1} {
		policies = append(policies,
			Policy{Last: n}, Policy{Hourly: n}, Policy{Daily: n}, Policy{Weekly: n},
			Policy{Monthly: n}, Policy{Quarterly: n}, Policy{Yearly: n})
	}
	for _, s := range []string{"36h", "7d", "2w", "1m", "1y", "1y6m", "2m3d4h"} {
		policies = append(policies, Policy{Within: mustSpan(t, s)})
	}
	for _, s := range serieses {
		for _, loc := range locs {
			t.Run(s.name+"/"+loc.String(), func(t *testing.T) {
				t.Parallel()
				for _, p := range policies {
					p.Location = loc
					check(t, p, s.items, reference(p, s.items))
				}
			})
		}
	}
}

// TestRandomPolicies checks random combinations of rules, on several groups
// with pinned points, against the reference implementation.
func TestRandomPolicies(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 17, 0, 0, time.UTC)
	var items []Item
	items = append(items, series("h", start, time.Hour, 2000)...)
	items = append(items, daily("d", start.Add(-400*24*time.Hour), 800)...)
	items = append(items, irregular("i", start, 1000, 2)...)
	items = append(items, irregular("j", start.AddDate(-1, 0, 0), 500, 3)...)
	r := rand.New(rand.NewPCG(4, 5))
	for i := range items {
		items[i].Pinned = r.IntN(50) == 0
	}
	r.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })

	var locs []*time.Location
	for _, name := range []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"} {
		locs = append(locs, loadLocation(t, name))
	}
	counts := []int{0, 0, 0, 1, 3, 10, -1}
	spans := []Span{{}, {}, {Hours: 36}, {Days: 7}, {Months: 1}, {Years: 1, Days: 3}}
	count := func() int { return counts[r.IntN(len(counts))] }
	for range 40 {
		p := Policy{
			Last: count(), Hourly: count(), Daily: count(), Weekly: count(),
			Monthly: count(), Quarterly: count(), Yearly: count(),
			Within:   spans[r.IntN(len(spans))],
			Location: locs[r.IntN(len(locs))],
		}
		if p.Empty() {
			p.Last = 1
		}
		check(t, p, items, reference(p, items))
	}
}

// --- Hand-written cases with their expectations spelled out. ---

func TestApplyExact(t *testing.T) {
	berlin := loadLocation(t, "Europe/Berlin")
	newYork := loadLocation(t, "America/New_York")
	tokyo := loadLocation(t, "Asia/Tokyo")
	it := func(id, tm string) Item { return Item{ID: id, Time: ts(t, tm)} }
	pin := func(i Item) Item { i.Pinned = true; return i }
	in := func(group string, i Item) Item { i.Group = group; return i }

	tests := []struct {
		name  string
		p     Policy
		items []Item
		want  map[string][]string
	}{
		{
			"last",
			Policy{Last: 2},
			[]Item{it("a", "2026-11-24T10:00:00Z"), it("c", "2026-11-24T12:00:00Z"), it("b", "2026-11-24T11:00:00Z")},
			map[string][]string{"c": {"last"}, "b": {"last"}},
		},
		{
			"last with a tie: the smaller ID counts as newer",
			Policy{Last: 1},
			[]Item{it("z", "2026-11-23T10:00:00Z"), it("y", "2026-11-24T10:00:00Z"), it("x", "2026-11-24T10:00:00Z")},
			map[string][]string{"x": {"last"}},
		},
		{
			"last unlimited",
			Policy{Last: -1},
			[]Item{it("a", "2026-11-24T10:00:00Z"), it("b", "2000-01-01T00:00:00Z"), it("c", "2030-01-01T00:00:00Z")},
			map[string][]string{"a": {"last"}, "b": {"last"}, "c": {"last"}},
		},
		{
			"rules set to 0 are off",
			Policy{Last: 1, Daily: 0, Within: Span{}},
			[]Item{it("a", "2026-11-24T10:00:00Z"), it("b", "2026-11-23T10:00:00Z")},
			map[string][]string{"a": {"last"}},
		},
		{
			"hourly skips hours without points",
			Policy{Hourly: 3},
			[]Item{
				it("a", "2026-11-24T13:05:00Z"), it("b", "2026-11-24T13:55:00Z"), it("c", "2026-11-24T12:10:00Z"),
				it("d", "2026-11-24T10:00:00Z"), it("e", "2026-11-24T09:00:00Z"),
			},
			map[string][]string{"b": {"hourly 2026-11-24 13h"}, "c": {"hourly 2026-11-24 12h"}, "d": {"hourly 2026-11-24 10h"}},
		},
		{
			"daily",
			Policy{Daily: 2},
			[]Item{
				it("a", "2026-11-24T08:00:00Z"), it("b", "2026-11-24T20:00:00Z"),
				it("c", "2026-11-23T10:00:00Z"), it("d", "2026-11-22T10:00:00Z"),
			},
			map[string][]string{"b": {"daily 2026-11-24"}, "c": {"daily 2026-11-23"}},
		},
		{
			"ISO weeks across the turn of the year",
			Policy{Weekly: -1},
			[]Item{
				it("2025-12-28", "2025-12-28T12:00:00Z"), // Sunday of 2025-W52
				it("2025-12-29", "2025-12-29T12:00:00Z"), // Monday of 2026-W01
				it("2026-01-01", "2026-01-01T12:00:00Z"),
				it("2026-12-28", "2026-12-28T12:00:00Z"), // Monday of 2026-W53
				it("2026-12-31", "2026-12-31T12:00:00Z"),
				it("2027-01-01", "2027-01-01T12:00:00Z"),
				it("2027-01-03", "2027-01-03T12:00:00Z"), // Sunday of 2026-W53
				it("2027-01-04", "2027-01-04T12:00:00Z"), // Monday of 2027-W01
			},
			map[string][]string{
				"2027-01-04": {"weekly 2027-W01"},
				"2027-01-03": {"weekly 2026-W53"},
				"2026-01-01": {"weekly 2026-W01"},
				"2025-12-28": {"weekly 2025-W52"},
			},
		},
		{
			"month, quarter and year together",
			Policy{Monthly: 3, Quarterly: -1, Yearly: 5},
			[]Item{
				it("11-24", "2026-11-24T12:00:00Z"), it("11-01", "2026-11-01T12:00:00Z"),
				it("10-31", "2026-10-31T12:00:00Z"), it("09-30", "2026-09-30T12:00:00Z"),
				it("07-01", "2026-07-01T12:00:00Z"), it("06-30", "2026-06-30T12:00:00Z"),
				it("2025-12-31", "2025-12-31T23:59:59Z"), it("2025-01-01", "2025-01-01T00:00:00Z"),
			},
			map[string][]string{
				"11-24":      {"monthly 2026-11", "quarterly 2026-Q4", "yearly 2026"},
				"10-31":      {"monthly 2026-10"},
				"09-30":      {"monthly 2026-09", "quarterly 2026-Q3"},
				"06-30":      {"quarterly 2026-Q2"},
				"2025-12-31": {"quarterly 2025-Q4", "yearly 2025"},
				"2025-01-01": {"quarterly 2025-Q1"},
			},
		},
		{
			"leap day",
			Policy{Daily: -1, Monthly: -1},
			[]Item{it("a", "2028-02-28T12:00:00Z"), it("b", "2028-02-29T23:00:00Z"), it("c", "2028-03-01T00:00:00Z")},
			map[string][]string{
				"c": {"daily 2028-03-01", "monthly 2028-03"},
				"b": {"daily 2028-02-29", "monthly 2028-02"},
				"a": {"daily 2028-02-28"},
			},
		},
		{
			"Berlin falls back: 02:00 to 03:00 is one hour bucket",
			Policy{Hourly: -1, Location: berlin},
			[]Item{
				it("a", "2026-10-25T01:30:00+02:00"),
				it("b", "2026-10-25T02:10:00+02:00"),
				it("c", "2026-10-25T02:30:00+02:00"),
				it("d", "2026-10-25T02:10:00+01:00"),
				it("e", "2026-10-25T02:30:00+01:00"),
				it("f", "2026-10-25T03:30:00+01:00"),
			},
			map[string][]string{
				"f": {"hourly 2026-10-25 03h"},
				"e": {"hourly 2026-10-25 02h"},
				"a": {"hourly 2026-10-25 01h"},
			},
		},
		{
			"Berlin springs forward: no bucket for 02:00",
			Policy{Hourly: 2, Location: berlin},
			[]Item{it("a", "2026-03-29T01:30:00+01:00"), it("b", "2026-03-29T03:30:00+02:00"), it("c", "2026-03-29T00:30:00+01:00")},
			map[string][]string{"b": {"hourly 2026-03-29 03h"}, "a": {"hourly 2026-03-29 01h"}},
		},
		{
			"New York falls back: 01:00 to 02:00 is one hour bucket",
			Policy{Hourly: -1, Location: newYork},
			[]Item{
				it("a", "2026-11-01T01:20:00-04:00"),
				it("b", "2026-11-01T01:40:00-04:00"),
				it("c", "2026-11-01T01:20:00-05:00"), // 40 minutes after b
				it("d", "2026-11-01T00:50:00-04:00"),
			},
			map[string][]string{"c": {"hourly 2026-11-01 01h"}, "d": {"hourly 2026-11-01 00h"}},
		},
		{
			"New York springs forward: a minute apart, two hours apart on the clock",
			Policy{Hourly: -1, Location: newYork},
			[]Item{it("a", "2026-03-08T01:59:00-05:00"), it("b", "2026-03-08T03:00:00-04:00")},
			map[string][]string{"b": {"hourly 2026-03-08 03h"}, "a": {"hourly 2026-03-08 01h"}},
		},
		{
			"Berlin's 25-hour day",
			Policy{Daily: -1, Location: berlin},
			[]Item{
				it("a", "2026-10-24T23:59:00+02:00"),
				it("b", "2026-10-25T00:00:00+02:00"),
				it("c", "2026-10-25T23:59:00+01:00"), // 24h59m after b, still the same day
				it("d", "2026-10-26T00:00:00+01:00"),
			},
			map[string][]string{"d": {"daily 2026-10-26"}, "c": {"daily 2026-10-25"}, "a": {"daily 2026-10-24"}},
		},
		{
			"Berlin's 23-hour day",
			Policy{Daily: -1, Location: berlin},
			[]Item{
				it("a", "2026-03-28T23:59:00+01:00"),
				it("b", "2026-03-29T00:00:00+01:00"),
				it("c", "2026-03-29T23:59:00+02:00"), // 22h59m after b
				it("d", "2026-03-30T00:00:00+02:00"),
			},
			map[string][]string{"d": {"daily 2026-03-30"}, "c": {"daily 2026-03-29"}, "a": {"daily 2026-03-28"}},
		},
		{
			"New York's 23-hour day",
			Policy{Daily: -1, Location: newYork},
			[]Item{
				it("a", "2026-03-07T23:59:00-05:00"),
				it("b", "2026-03-08T00:00:00-05:00"),
				it("c", "2026-03-08T23:59:00-04:00"),
				it("d", "2026-03-09T00:00:00-04:00"),
			},
			map[string][]string{"d": {"daily 2026-03-09"}, "c": {"daily 2026-03-08"}, "a": {"daily 2026-03-07"}},
		},
		{
			"days in UTC",
			Policy{Daily: -1},
			[]Item{it("a", "2026-11-24T14:00:00Z"), it("b", "2026-11-24T23:30:00Z")},
			map[string][]string{"b": {"daily 2026-11-24"}},
		},
		{
			"days in UTC, given explicitly",
			Policy{Daily: -1, Location: time.UTC},
			[]Item{it("a", "2026-11-24T14:00:00Z"), it("b", "2026-11-24T23:30:00Z")},
			map[string][]string{"b": {"daily 2026-11-24"}},
		},
		{
			"days in Tokyo: 23:30 UTC is the next morning",
			Policy{Daily: -1, Location: tokyo},
			[]Item{it("a", "2026-11-24T14:00:00Z"), it("b", "2026-11-24T23:30:00Z")},
			map[string][]string{"b": {"daily 2026-11-25"}, "a": {"daily 2026-11-24"}},
		},
		{
			"years in Tokyo",
			Policy{Yearly: -1, Location: tokyo},
			[]Item{it("a", "2026-12-31T14:59:59Z"), it("b", "2026-12-31T15:00:00Z")},
			map[string][]string{"b": {"yearly 2027"}, "a": {"yearly 2026"}},
		},
		{
			"within: the boundary is kept",
			Policy{Within: mustSpan(t, "1d")},
			[]Item{
				it("new", "2026-11-24T12:00:00Z"),
				it("edge", "2026-11-23T12:00:00Z"),
				it("out", "2026-11-23T11:59:59.999999999Z"),
			},
			map[string][]string{"new": {"within 1d"}, "edge": {"within 1d"}},
		},
		{
			"within hours",
			Policy{Within: mustSpan(t, "36h")},
			[]Item{it("new", "2026-11-24T12:00:00Z"), it("edge", "2026-11-23T00:00:00Z"), it("out", "2026-11-22T23:59:00Z")},
			map[string][]string{"new": {"within 36h"}, "edge": {"within 36h"}},
		},
		{
			"within weeks",
			Policy{Within: mustSpan(t, "2w")},
			[]Item{it("new", "2026-11-24T12:00:00Z"), it("edge", "2026-11-10T12:00:00Z"), it("out", "2026-11-10T11:00:00Z")},
			map[string][]string{"new": {"within 14d"}, "edge": {"within 14d"}},
		},
		{
			"within a month of February 28",
			Policy{Within: mustSpan(t, "1m")},
			[]Item{
				it("new", "2027-02-28T12:00:00Z"),
				it("jan31", "2027-01-31T00:00:00Z"),
				it("edge", "2027-01-28T12:00:00Z"),
				it("out", "2027-01-28T11:59:00Z"),
			},
			map[string][]string{"new": {"within 1m"}, "jan31": {"within 1m"}, "edge": {"within 1m"}},
		},
		{
			"within a month of February 29",
			Policy{Within: mustSpan(t, "1m")},
			[]Item{it("new", "2028-02-29T12:00:00Z"), it("edge", "2028-01-29T12:00:00Z"), it("out", "2028-01-29T11:00:00Z")},
			map[string][]string{"new": {"within 1m"}, "edge": {"within 1m"}},
		},
		{
			"within a month of March 31: February 31 is March 3",
			Policy{Within: mustSpan(t, "1m")},
			[]Item{
				it("new", "2026-03-31T12:00:00Z"),
				it("edge", "2026-03-03T12:00:00Z"),
				it("out", "2026-03-03T11:00:00Z"),
				it("feb28", "2026-02-28T12:00:00Z"),
			},
			map[string][]string{"new": {"within 1m"}, "edge": {"within 1m"}},
		},
		{
			"within a year of February 29: February 29 is March 1",
			Policy{Within: mustSpan(t, "1y")},
			[]Item{it("new", "2028-02-29T12:00:00Z"), it("edge", "2027-03-01T12:00:00Z"), it("out", "2027-02-28T12:00:00Z")},
			map[string][]string{"new": {"within 1y"}, "edge": {"within 1y"}},
		},
		{
			"within a day in Berlin as the clocks fall back is 25 hours",
			Policy{Within: mustSpan(t, "1d"), Location: berlin},
			[]Item{it("new", "2026-10-25T12:00:00+01:00"), it("edge", "2026-10-24T12:00:00+02:00"), it("out", "2026-10-24T11:59:00+02:00")},
			map[string][]string{"new": {"within 1d"}, "edge": {"within 1d"}},
		},
		{
			"within a day in UTC is 24 hours",
			Policy{Within: mustSpan(t, "1d")},
			[]Item{it("new", "2026-10-25T12:00:00+01:00"), it("edge", "2026-10-24T12:00:00+02:00"), it("in", "2026-10-24T13:00:00+02:00")},
			map[string][]string{"new": {"within 1d"}, "in": {"within 1d"}},
		},
		{
			"within a day in Berlin as the clocks spring forward is 23 hours",
			Policy{Within: mustSpan(t, "1d"), Location: berlin},
			[]Item{it("new", "2026-03-29T12:00:00+02:00"), it("edge", "2026-03-28T12:00:00+01:00"), it("out", "2026-03-28T11:59:00+01:00")},
			map[string][]string{"new": {"within 1d"}, "edge": {"within 1d"}},
		},
		{
			"within hours are elapsed time",
			// On the wall clock, 04:00 less 3h is 01:00; but 02:00 never
			// happened that night, so 3 hours before is midnight.
			Policy{Within: mustSpan(t, "3h"), Location: berlin},
			[]Item{it("new", "2026-03-29T04:00:00+02:00"), it("edge", "2026-03-29T00:00:00+01:00"), it("out", "2026-03-28T23:59:00+01:00")},
			map[string][]string{"new": {"within 3h"}, "edge": {"within 3h"}},
		},
		{
			"within takes off days before hours",
			// A day before is 04:00 on March 28, and 2 hours before that
			// is 02:00; hours first would make it 01:00.
			Policy{Within: mustSpan(t, "1d2h"), Location: berlin},
			[]Item{it("new", "2026-03-29T04:00:00+02:00"), it("edge", "2026-03-28T02:00:00+01:00"), it("out", "2026-03-28T01:59:00+01:00")},
			map[string][]string{"new": {"within 1d2h"}, "edge": {"within 1d2h"}},
		},
		{
			"groups are independent",
			Policy{Last: 1, Daily: 1},
			[]Item{
				in("vm1", it("a", "2026-11-24T10:00:00Z")), in("vm1", it("b", "2026-11-24T11:00:00Z")),
				in("vm2", it("c", "2026-11-24T09:00:00Z")), in("vm2", it("d", "2026-11-23T12:00:00Z")),
				in("", it("e", "2020-01-01T00:00:00Z")),
			},
			map[string][]string{
				"b": {"last", "daily 2026-11-24"},
				"c": {"last", "daily 2026-11-24"},
				"e": {"last", "daily 2020-01-01"},
			},
		},
		{
			"within is measured from the newest point of each group",
			Policy{Within: mustSpan(t, "7d")},
			[]Item{
				in("live", it("a", "2026-11-24T10:00:00Z")), in("live", it("b", "2026-11-10T10:00:00Z")),
				in("gone", it("c", "2024-05-10T10:00:00Z")), in("gone", it("d", "2024-05-03T10:00:00Z")),
				in("gone", it("e", "2024-05-03T09:59:00Z")),
			},
			map[string][]string{"a": {"within 7d"}, "c": {"within 7d"}, "d": {"within 7d"}},
		},
		{
			"pinned points take their place among the last",
			Policy{Last: 1},
			[]Item{pin(it("old", "2020-01-01T00:00:00Z")), it("mid", "2026-11-23T00:00:00Z"), pin(it("new", "2026-11-24T00:00:00Z"))},
			map[string][]string{"new": {"pinned", "last"}, "old": {"pinned"}},
		},
		{
			"pinned points are kept with every other reason",
			Policy{Daily: 2, Monthly: 1, Within: mustSpan(t, "1h")},
			[]Item{
				pin(it("a", "2026-11-24T10:00:00Z")), it("b", "2026-11-24T09:00:00Z"),
				pin(it("c", "2026-11-23T09:00:00Z")), pin(it("d", "2026-11-22T09:00:00Z")),
			},
			map[string][]string{
				"a": {"pinned", "daily 2026-11-24", "monthly 2026-11", "within 1h"},
				"b": {"within 1h"},
				"c": {"pinned", "daily 2026-11-23"},
				"d": {"pinned"},
			},
		},
		{
			"a union of rules lists all reasons",
			Policy{Last: 2, Hourly: 3, Daily: 3, Within: mustSpan(t, "1d")},
			[]Item{
				it("a", "2026-11-24T12:30:00Z"),
				it("b", "2026-11-24T12:10:00Z"),
				it("c", "2026-11-24T10:00:00Z"),
				it("d", "2026-11-23T12:30:00Z"),
				it("e", "2026-11-23T12:00:00Z"),
				it("f", "2026-11-21T23:00:00Z"),
				it("g", "2026-11-21T22:00:00Z"),
			},
			map[string][]string{
				"a": {"last", "hourly 2026-11-24 12h", "daily 2026-11-24", "within 1d"},
				"b": {"last", "within 1d"},
				"c": {"hourly 2026-11-24 10h", "within 1d"},
				"d": {"hourly 2026-11-23 12h", "daily 2026-11-23", "within 1d"},
				"f": {"daily 2026-11-21"},
			},
		},
		{
			"extreme times",
			Policy{Last: -1, Yearly: -1, Within: Span{Years: 100000}},
			[]Item{{ID: "zero"}, it("far", "9999-12-31T23:59:59Z"), it("dup", "9999-12-31T23:59:59Z")},
			map[string][]string{
				"dup":  {"last", "yearly 9999", "within 100000y"},
				"far":  {"last", "within 100000y"},
				"zero": {"last", "yearly 0001", "within 100000y"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, tt.p, tt.items, tt.want)
			// The same expectations must hold for any order of the input.
			rev := slices.Clone(tt.items)
			slices.Reverse(rev)
			check(t, tt.p, rev, tt.want)
		})
	}
}

// TestDSTDays counts the hour buckets and the hours of a day of Within on the
// days the clocks change, over points every ten minutes.
func TestDSTDays(t *testing.T) {
	tests := []struct {
		zone      string
		day       string // the local date on which the clocks change
		end       string // the last point, 23:50 local that day
		hours     int    // hour buckets that day
		withinDay int    // points within a day of end
	}{
		{"Europe/Berlin", "2026-03-29", "2026-03-29T23:50:00+02:00", 23, 23*6 + 1},
		{"Europe/Berlin", "2026-10-25", "2026-10-25T23:50:00+01:00", 24, 25*6 + 1},
		{"America/New_York", "2026-03-08", "2026-03-08T23:50:00-04:00", 23, 23*6 + 1},
		{"America/New_York", "2026-11-01", "2026-11-01T23:50:00-05:00", 24, 25*6 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.zone+"/"+tt.day, func(t *testing.T) {
			loc := loadLocation(t, tt.zone)
			end := ts(t, tt.end)
			items := series("p", end.Add(-3*24*time.Hour), 10*time.Minute, 3*24*6+1)

			p := Policy{Hourly: -1, Location: loc}
			got, err := p.Apply(items)
			if err != nil {
				t.Fatal(err)
			}
			hours := 0
			for _, d := range got {
				for _, r := range d.Reasons {
					if strings.HasPrefix(r, "hourly "+tt.day+" ") {
						hours++
					}
				}
			}
			if hours != tt.hours {
				t.Errorf("%v: %d hour buckets on %s, want %d", p, hours, tt.day, tt.hours)
			}
			check(t, p, items, reference(p, items))

			p = Policy{Within: Span{Days: 1}, Location: loc}
			if got, err = p.Apply(items); err != nil {
				t.Fatal(err)
			}
			kept := 0
			for _, d := range got {
				if d.Keep {
					kept++
				}
			}
			if kept != tt.withinDay {
				t.Errorf("%v: kept %d points, want %d", p, kept, tt.withinDay)
			}
		})
	}
}

func TestApplyEmpty(t *testing.T) {
	for _, items := range [][]Item{nil, {}} {
		got, err := Policy{Last: 1, Daily: -1, Within: Span{Days: 1}}.Apply(items)
		if err != nil || len(got) != 0 {
			t.Errorf("Apply(%#v) = %v, %v; want no decisions and no error", items, got, err)
		}
	}
}

func TestApplyInvalid(t *testing.T) {
	items := []Item{{ID: "a", Time: time.Now()}}
	for _, p := range []Policy{{}, {Last: -2}, {Within: Span{Days: -1}}} {
		got, err := p.Apply(items)
		if err == nil || got != nil {
			t.Errorf("%+v.Apply = %v, %v; want nil and an error", p, got, err)
		}
	}
}

func TestValidate(t *testing.T) {
	berlin := loadLocation(t, "Europe/Berlin")
	tests := []struct {
		p    Policy
		want string // in the error; "" if valid
	}{
		{Policy{Last: 1}, ""},
		{Policy{Quarterly: -1}, ""},
		{Policy{Within: Span{Hours: 1}}, ""},
		{Policy{Within: Span{100000, 100000, 100000, 100000}}, ""},
		{Policy{Yearly: math.MaxInt, Location: berlin}, ""},
		{Policy{}, "no keep rule: give at least one"},
		{Policy{Location: berlin}, "no keep rule: give at least one"},
		{Policy{Last: -2}, "keep last -2: want a count of at least 0, or -1 for unlimited"},
		{Policy{Last: 3, Hourly: -2}, "keep hourly -2"},
		{Policy{Daily: -5}, "keep daily -5"},
		{Policy{Weekly: -2}, "keep weekly -2"},
		{Policy{Monthly: -2}, "keep monthly -2"},
		{Policy{Quarterly: -2}, "keep quarterly -2"},
		{Policy{Yearly: math.MinInt}, fmt.Sprintf("keep yearly %d", math.MinInt)},
		{Policy{Within: Span{Days: -1}}, "keep within: span -1d: days is negative"},
		{Policy{Last: 1, Within: Span{Years: 1, Months: -1}}, "months is negative"},
		{Policy{Within: Span{Hours: 100001}}, "100001 hours is too many"},
		{Policy{Within: Span{Years: math.MaxInt}}, "years is too many"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v.Validate() = %v, want nil", tt.p, err)
		case tt.want != "" && err == nil:
			t.Errorf("%+v.Validate() = nil, want an error with %q", tt.p, tt.want)
		case tt.want != "" && !strings.Contains(err.Error(), tt.want):
			t.Errorf("%+v.Validate() = %q, want an error with %q", tt.p, err, tt.want)
		}
	}
}

func TestPolicyString(t *testing.T) {
	tests := []struct {
		p     Policy
		want  string
		empty bool
	}{
		{Policy{}, "no rule", true},
		{Policy{Location: time.UTC}, "no rule", true},
		{Policy{Last: 3, Daily: 7, Within: Span{Days: 30}}, "last 3, daily 7, within 30d", false},
		{Policy{Yearly: -1, Hourly: 24}, "hourly 24, yearly all", false},
		{
			Policy{Last: 1, Hourly: 2, Daily: 3, Weekly: 4, Monthly: 5, Quarterly: 6, Yearly: 7, Within: Span{1, 6, 0, 0}},
			"last 1, hourly 2, daily 3, weekly 4, monthly 5, quarterly 6, yearly 7, within 1y6m",
			false,
		},
		{Policy{Within: Span{Hours: 36}}, "within 36h", false},
		{Policy{Last: -2}, "last -2", false},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
		if got := tt.p.Empty(); got != tt.empty {
			t.Errorf("%#v.Empty() = %v, want %v", tt.p, got, tt.empty)
		}
	}
}
