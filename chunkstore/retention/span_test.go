package retention

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseSpan(t *testing.T) {
	tests := []struct {
		in   string
		want Span
		str  string // want.String()
	}{
		{"7d", Span{Days: 7}, "7d"},
		{"1y", Span{Years: 1}, "1y"},
		{"1m", Span{Months: 1}, "1m"},
		{"36h", Span{Hours: 36}, "36h"},
		{"2w", Span{Days: 14}, "14d"},
		{"1w2d", Span{Days: 9}, "9d"},
		{"1y6m", Span{Years: 1, Months: 6}, "1y6m"},
		{"1y2m3d4h", Span{1, 2, 3, 4}, "1y2m3d4h"},
		{"1y2m1w3d4h", Span{1, 2, 10, 4}, "1y2m10d4h"},
		{"1m1h", Span{Months: 1, Hours: 1}, "1m1h"},
		{"0y7d", Span{Days: 7}, "7d"},
		{"007d", Span{Days: 7}, "7d"},
		{"0000000000000000000000000001d", Span{Days: 1}, "1d"},
		{"100000y", Span{Years: 100000}, "100000y"},
		{"100000h", Span{Hours: 100000}, "100000h"},
		{"100000d", Span{Days: 100000}, "100000d"},
		{"14285w5d", Span{Days: 100000}, "100000d"},
	}
	for _, tt := range tests {
		got, err := ParseSpan(tt.in)
		if err != nil {
			t.Errorf("ParseSpan(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSpan(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if s := got.String(); s != tt.str {
			t.Errorf("ParseSpan(%q).String() = %q, want %q", tt.in, s, tt.str)
		}
	}
}

func TestParseSpanErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // in the error, after the quoted input
	}{
		{"", "empty"},
		{"-1d", "negative"},
		{"1y-2m", "negative"},
		{"+1d", "unexpected '+'"},
		{"d", "missing number before 'd'"},
		{"7dd", "missing number before 'd'"},
		{"7", "missing unit after 7"},
		{"1y7", "missing unit after 7"},
		{"7x", "unknown unit 'x'"},
		{"7D", "unknown unit 'D'"},
		{"1s", "unknown unit 's'"},
		{"7 d", "unknown unit ' '"},
		{" 7d", "unexpected ' '"},
		{"7d ", "unexpected ' '"},
		{"7d\n", "unexpected '\\n'"},
		{"1.5d", "fractions"},
		{"1,5d", "fractions"},
		{"1h30m", "unit 'm' repeated or out of order"},
		{"1d1d", "unit 'd' repeated or out of order"},
		{"1d1w", "unit 'w' repeated or out of order"},
		{"1m1y", "unit 'y' repeated or out of order"},
		{"100001d", "100001 is too large"},
		{"100001w", "100001 is too large"},
		{"99999999999999999999999999999y", "99999999999999999999999999999 is too large"},
		{"14286w", "100002 days is too many"},
		{"14285w6d", "100001 days is too many"},
		{"0d", "zero length"},
		{"0y0m0w0d0h", "zero length"},
		{"\uff17d", "unexpected '\uff17'"}, // a fullwidth digit
		{"7\xffd", "unknown unit"},
		{"seven days", "unexpected 's'"},
	}
	for _, tt := range tests {
		got, err := ParseSpan(tt.in)
		if err == nil {
			t.Errorf("ParseSpan(%q) = %+v, want an error", tt.in, got)
			continue
		}
		if got != (Span{}) {
			t.Errorf("ParseSpan(%q) = %+v with its error, want the zero Span", tt.in, got)
		}
		prefix := "invalid span " + strconv.Quote(tt.in) + ": "
		if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg[len(prefix):], tt.want) {
			t.Errorf("ParseSpan(%q) error %q, want %q followed by %q", tt.in, msg, prefix, tt.want)
		}
	}
}

func TestSpanStringZero(t *testing.T) {
	if s := (Span{}).String(); s != "0d" {
		t.Errorf("Span{}.String() = %q, want %q", s, "0d")
	}
}

func FuzzParseSpan(f *testing.F) {
	for _, s := range []string{
		"7d", "2w", "36h", "1y6m", "1y2m1w3d4h", "0d", "", "-1d", "1h30m",
		"100000d", "100001d", "14286w", "007d", "1.5d", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpan(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Errorf("ParseSpan(%q) error %q does not quote the input", s, err)
			}
			return
		}
		if sp == (Span{}) {
			t.Fatalf("ParseSpan(%q) accepted a zero span", s)
		}
		if err := sp.validate(); err != nil {
			t.Fatalf("ParseSpan(%q) = %+v, which does not validate: %v", s, sp, err)
		}
		str := sp.String()
		back, err := ParseSpan(str)
		if err != nil {
			t.Fatalf("ParseSpan(%q) = %+v, whose String %q does not parse: %v", s, sp, str, err)
		}
		if back != sp {
			t.Fatalf("ParseSpan(%q) = %+v, but ParseSpan(%q) = %+v", s, sp, str, back)
		}
		if back.String() != str {
			t.Fatalf("String of %+v is %q, then %q", sp, str, back.String())
		}
	})
}
