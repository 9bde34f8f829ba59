// Package retention decides which restore points a retention policy keeps.
//
// It works on plain [Item] values rather than on the store's own types, so
// that backup jobs, the command line and previews share one implementation
// and cannot disagree about what a policy means.
//
// # Rules
//
// A [Policy] is a set of rules. A point is kept if any rule keeps it, and
// [Decision.Reasons] lists every rule that does. Points are grouped by
// [Item.Group], normally their source, and the rules apply to each group on
// its own: a VM backed up every hour must not push out the points of one
// backed up weekly. Within a group, points are taken newest first; points with
// the same time are ordered by ID, the smaller ID counting as the newer, so
// that the result does not depend on the order of the input.
//
// Pinned points are always kept. For every other rule they are ordinary
// points: a pinned point can be the newest of its day, and it takes up a place
// among the last N, so pinning a point never makes a policy keep more
// unpinned ones.
//
// Keep-last N keeps the N newest points.
//
// Keep-hourly, -daily, -weekly, -monthly, -quarterly and -yearly N divide time
// into buckets. Walking the points newest first, the first point met in each
// bucket, which is the newest in it, is kept, until N buckets have been kept.
// Buckets without points do not count, so a source that was switched off for
// a while still has N daily points rather than a gap.
//
// Buckets follow the wall clock of [Policy.Location] (UTC if nil), since one
// point a day means one for each of the operator's days. Therefore:
//
//   - an hour bucket is a local date and hour. When the clocks fall back, the
//     hour they repeat is a single bucket two hours long (in Europe/Berlin,
//     02:00 to 03:00 on the last Sunday of October), so it keeps one point,
//     not two; when they spring forward, the skipped hour is no bucket at all;
//   - a day bucket is a local calendar date, so on the days the clocks change
//     it lasts 23 or 25 hours;
//   - a week bucket is an ISO 8601 week (see [time.Time.ISOWeek]), Monday to
//     Sunday, named by its ISO year, which near New Year can differ from the
//     calendar year: 2026-W01 begins on 2025-12-29, and 2026-W53 ends on
//     2027-01-03;
//   - month, quarter (January to March is Q1) and year buckets are calendar
//     ones.
//
// A count of -1 keeps a point for every bucket (or, for keep-last, every
// point); a count of 0 turns the rule off.
//
// Keep-within SPAN keeps every point no older than SPAN before the newest
// point of its group; a point exactly at that boundary is kept. The boundary
// is computed on the calendar of Location: the years, months and days of the
// [Span] are taken off with [time.Time.AddDate], then the hours as elapsed
// time. So "1d" across a clock change is 23 or 25 hours, "1m" reaches back to
// the same day of the previous month, and, as with AddDate, a day that the
// previous month lacks overflows into the next one: a month before March 31 is
// March 3 (March 2 in a leap year), and a year before February 29 is March 1.
//
// The window ends at the group's newest point rather than at the current time.
// When a source is no longer backed up (its VM was deleted, its agent broke)
// a window ending now would in time expire every point it has, silently
// destroying the last copies of its data; a window ending at its newest point
// keeps its most recent history until someone deletes it on purpose. It also
// makes a decision depend only on the points, not on when it is made.
package retention

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A Policy says which restore points to keep. A point is kept if any rule
// keeps it. For the counts, 0 turns a rule off and -1 makes it unlimited.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Quarterly, Yearly int

	// Within keeps the points that are no older than Within before the
	// newest point of their group. The zero Span turns it off.
	Within Span

	// Location is the calendar of the buckets and of Within; nil means UTC.
	Location *time.Location
}

// An Item is a restore point as seen by a policy.
type Item struct {
	ID     string
	Group  string // the rules apply to each group separately
	Time   time.Time
	Pinned bool // kept whatever the policy
}

// A Decision is the verdict of a policy on one item.
type Decision struct {
	Item
	Keep bool

	// Reasons names every rule that keeps the item, such as "pinned",
	// "last", "daily 2026-11-24" or "within 30d", in the order of the fields
	// of Policy with "pinned" first. It is empty if Keep is false.
	Reasons []string
}

// A countRule is a rule of a Policy that takes a count.
type countRule struct {
	name string
	n    int
}

// counts returns the count rules of p in the order in which they are applied,
// reported and printed: keep-last, then one for each period.
func (p Policy) counts() [7]countRule {
	return [7]countRule{
		{"last", p.Last},
		{"hourly", p.Hourly},
		{"daily", p.Daily},
		{"weekly", p.Weekly},
		{"monthly", p.Monthly},
		{"quarterly", p.Quarterly},
		{"yearly", p.Yearly},
	}
}

// Validate reports whether p can be applied. Since an empty policy would
// delete every unpinned point, it is an error, not a policy that keeps
// everything.
func (p Policy) Validate() error {
	for _, c := range p.counts() {
		if c.n < -1 {
			return fmt.Errorf("keep %s %d: want a count of at least 0, or -1 for unlimited", c.name, c.n)
		}
	}
	if err := p.Within.validate(); err != nil {
		return fmt.Errorf("keep within: %w", err)
	}
	if p.Empty() {
		return errors.New("no keep rule: give at least one")
	}
	return nil
}

// Empty reports whether p has no rule.
func (p Policy) Empty() bool {
	for _, c := range p.counts() {
		if c.n != 0 {
			return false
		}
	}
	return p.Within == Span{}
}

// String describes the rules of p for messages, as in
// "last 3, daily 7, within 30d"; an unlimited count is "all".
func (p Policy) String() string {
	var parts []string
	for _, c := range p.counts() {
		switch c.n {
		case 0:
		case -1:
			parts = append(parts, c.name+" all")
		default:
			parts = append(parts, c.name+" "+strconv.Itoa(c.n))
		}
	}
	if p.Within != (Span{}) {
		parts = append(parts, "within "+p.Within.String())
	}
	if parts == nil {
		return "no rule"
	}
	return strings.Join(parts, ", ")
}

// A period is the length of the buckets of a calendar rule. Periods are
// numbered in the order of their rules after keep-last in Policy.counts.
type period int

const (
	hour period = iota
	day
	week
	month
	quarter
	year
)

// A bucket identifies one period: a year and up to three finer numbers
// (month, day and hour; ISO week; quarter).
type bucket struct {
	year, a, b, c int
}

// bucket returns the bucket of t, which is already in the policy's location.
func (p period) bucket(t time.Time) bucket {
	switch p {
	case hour:
		return bucket{t.Year(), int(t.Month()), t.Day(), t.Hour()}
	case day:
		return bucket{t.Year(), int(t.Month()), t.Day(), 0}
	case week:
		y, w := t.ISOWeek()
		return bucket{y, w, 0, 0}
	case month:
		return bucket{t.Year(), int(t.Month()), 0, 0}
	case quarter:
		return bucket{t.Year(), (int(t.Month())-1)/3 + 1, 0, 0}
	default:
		return bucket{t.Year(), 0, 0, 0}
	}
}

// label names b for Decision.Reasons.
func (p period) label(b bucket) string {
	switch p {
	case hour:
		return fmt.Sprintf("%04d-%02d-%02d %02dh", b.year, b.a, b.b, b.c)
	case day:
		return fmt.Sprintf("%04d-%02d-%02d", b.year, b.a, b.b)
	case week:
		return fmt.Sprintf("%04d-W%02d", b.year, b.a)
	case month:
		return fmt.Sprintf("%04d-%02d", b.year, b.a)
	case quarter:
		return fmt.Sprintf("%04d-Q%d", b.year, b.a)
	default:
		return fmt.Sprintf("%04d", b.year)
	}
}

// Apply decides, after validating p, which items p keeps. The decisions are
// in the order of items.
func (p Policy) Apply(items []Item) ([]Decision, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	out := make([]Decision, len(items))
	groups := make(map[string][]int)
	for i, it := range items {
		out[i].Item = it
		groups[it.Group] = append(groups[it.Group], i)
	}
	// Groups touch disjoint decisions, so the order of the map is harmless.
	for _, idx := range groups {
		p.applyGroup(out, idx, loc)
	}
	return out, nil
}

// applyGroup decides on the items out[i] for i in idx, which make up a group.
func (p Policy) applyGroup(out []Decision, idx []int, loc *time.Location) {
	slices.SortStableFunc(idx, func(i, j int) int {
		if c := out[j].Time.Compare(out[i].Time); c != 0 {
			return c
		}
		return strings.Compare(out[i].ID, out[j].ID)
	})
	keep := func(i int, reason string) {
		out[i].Keep = true
		out[i].Reasons = append(out[i].Reasons, reason)
	}

	for _, i := range idx {
		if out[i].Pinned {
			keep(i, "pinned")
		}
	}
	for k, i := range idx {
		if p.Last >= 0 && k >= p.Last {
			break
		}
		keep(i, "last")
	}

	counts := p.counts()
	for r, c := range counts[1:] {
		per, n := period(r), c.n
		if n == 0 {
			continue
		}
		// A set, not a comparison with the previous point's bucket: where
		// the clocks fall back across the start of a bucket (an hour back
		// at 00:30, say), the points of one bucket are not consecutive.
		seen := make(map[bucket]bool)
		for _, i := range idx {
			if n > 0 && len(seen) >= n {
				break
			}
			b := per.bucket(out[i].Time.In(loc))
			if seen[b] {
				continue
			}
			seen[b] = true
			keep(i, c.name+" "+per.label(b))
		}
	}

	if w := p.Within; w != (Span{}) && len(idx) > 0 {
		newest := out[idx[0]].Time.In(loc)
		from := newest.AddDate(-w.Years, -w.Months, -w.Days).Add(-time.Duration(w.Hours) * time.Hour)
		reason := "within " + w.String()
		for _, i := range idx {
			if out[i].Time.Before(from) {
				break
			}
			keep(i, reason)
		}
	}
}
