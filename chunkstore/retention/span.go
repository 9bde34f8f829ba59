package retention

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxSpanUnit bounds every field of a Span. It is far beyond any sensible
// retention window, and keeps the arithmetic on times (hours in particular,
// which become a time.Duration) clear of overflow.
const maxSpanUnit = 100000

// A Span is a calendar duration: years, months, days and hours. Unlike a
// time.Duration its length depends on where it is applied, as months and
// years differ in length and days do too when clocks change.
type Span struct {
	Years, Months, Days, Hours int
}

// spanUnits lists the units of a span in the only order ParseSpan accepts.
// Weeks are a spelling of seven days; they have no field of their own.
const spanUnits = "ymwdh"

// ParseSpan parses a span such as "7d", "2w", "36h" or "1y6m": one or more
// decimal numbers, each followed by a unit, y (years), m (months),
// w (weeks, stored as 7 days), d (days) or h (hours). Units must appear at
// most once and in that order, so that "1h30m" (where m could be mistaken
// for minutes) is an error rather than a surprise. A span of zero length is
// rejected: a zero Span means that a rule is off.
func ParseSpan(s string) (Span, error) {
	bad := func(format string, args ...any) (Span, error) {
		return Span{}, fmt.Errorf("invalid span %q: %s", s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return bad("empty")
	}
	var sp Span
	next := 0 // index into spanUnits of the first unit still allowed
	for i := 0; i < len(s); {
		start := i
		n, tooBig := 0, false
		for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
			if n = n*10 + int(s[i]-'0'); n > maxSpanUnit {
				tooBig, n = true, 0
			}
		}
		num := s[start:i]
		if num == "" {
			switch r, _ := utf8.DecodeRuneInString(s[i:]); {
			case r == '-':
				return bad("negative")
			case strings.ContainsRune(spanUnits, r):
				return bad("missing number before %q", r)
			default:
				return bad("unexpected %q, want a number", r)
			}
		}
		if tooBig {
			return bad("%s is too large (max %d)", num, maxSpanUnit)
		}
		if i == len(s) {
			return bad("missing unit after %s (want y, m, w, d or h)", num)
		}
		r, _ := utf8.DecodeRuneInString(s[i:])
		u := strings.IndexRune(spanUnits, r)
		switch {
		case r == '.' || r == ',':
			return bad("fractions are not supported")
		case u < 0:
			return bad("unknown unit %q (want y, m, w, d or h)", r)
		case u < next:
			return bad("unit %q repeated or out of order (write y, m, w, d, h in this order)", r)
		}
		next = u + 1
		i++
		switch r {
		case 'y':
			sp.Years = n
		case 'm':
			sp.Months = n
		case 'w':
			sp.Days = 7 * n
		case 'd':
			sp.Days += n
		case 'h':
			sp.Hours = n
		}
	}
	if sp.Days > maxSpanUnit {
		return bad("%d days is too many (max %d)", sp.Days, maxSpanUnit)
	}
	if sp == (Span{}) {
		return bad("zero length")
	}
	return sp, nil
}

// String formats s in the form ParseSpan accepts, with weeks written as days
// ("2w" becomes "14d") so that every Span has a single spelling. The zero
// Span, which ParseSpan does not accept, is "0d".
func (s Span) String() string {
	var b []byte
	for _, f := range [...]struct {
		n    int
		unit byte
	}{{s.Years, 'y'}, {s.Months, 'm'}, {s.Days, 'd'}, {s.Hours, 'h'}} {
		if f.n != 0 {
			b = strconv.AppendInt(b, int64(f.n), 10)
			b = append(b, f.unit)
		}
	}
	if b == nil {
		return "0d"
	}
	return string(b)
}

// validate checks a Span built by hand as ParseSpan checks a parsed one,
// except that the zero Span is allowed: in a Policy it means "off".
func (s Span) validate() error {
	for _, f := range [...]struct {
		n    int
		name string
	}{{s.Years, "years"}, {s.Months, "months"}, {s.Days, "days"}, {s.Hours, "hours"}} {
		if f.n < 0 {
			return fmt.Errorf("span %v: %s is negative", s, f.name)
		}
		if f.n > maxSpanUnit {
			return fmt.Errorf("span %v: %d %s is too many (max %d)", s, f.n, f.name, maxSpanUnit)
		}
	}
	return nil
}
