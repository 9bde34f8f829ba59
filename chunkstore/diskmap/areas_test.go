package diskmap

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseAreas(t *testing.T) {
	tests := []struct {
		name string
		in   string
		size int64
		want []Area
	}{
		{"empty", "", 100, []Area{}},
		{"one", "10 5\n", 100, []Area{{10, 5}}},
		{"no final newline", "10 5", 100, []Area{{10, 5}}},
		{"comments and blanks", "# changed\n\n  \n10 5\n  # more\n", 100, []Area{{10, 5}}},
		{"tabs and spaces", " \t10\t  5 \t\n", 100, []Area{{10, 5}}},
		{"CRLF", "10 5\r\n15 5\r\n", 100, []Area{{10, 10}}},
		{"unsorted and overlapping", "50 10\n0 10\n55 10\n", 100, []Area{{0, 10}, {50, 15}}},
		{"zero length dropped", "10 0\n", 100, []Area{}},
		{"up to the end", "90 10\n100 0\n", 100, []Area{{90, 10}}},
		{"whole disk", "0 100", 100, []Area{{0, 100}}},
		{"plus sign", "+10 +5", 100, []Area{{10, 5}}},
		{"largest disk", "0 9223372036854775807", math.MaxInt64, []Area{{0, math.MaxInt64}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAreas(strings.NewReader(tt.in), tt.size)
			if err != nil {
				t.Fatalf("ParseAreas(%q, %d): %v", tt.in, tt.size, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseAreas(%q, %d) = %v, want %v", tt.in, tt.size, got, tt.want)
			}
		})
	}
}

func TestParseAreasErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int // the line the error must name; 0: none
	}{
		{"beyond the disk", "0 10\n# c\n95 10\n", 3},
		{"starts beyond the disk", "\n101 0\n", 2},
		{"length beyond the disk", "0 101", 1},
		{"huge length", "1 9223372036854775807", 1},
		{"huge offset", "9223372036854775807 1", 1},
		{"one field", "10\n", 1},
		{"three fields", "1 2\n1 2 3\n", 2},
		{"negative offset", "-1 5", 1},
		{"negative length", "5 -1", 1},
		{"hex", "0x10 5", 1},
		{"underscore", "1_0 5", 1},
		{"not a number", "ten five", 1},
		{"int64 overflow", "99999999999999999999 1", 1},
		{"trailing comment", "10 5 # why", 1},
		{"comma", "10,5", 1},
		{"line too long", strings.Repeat(" ", 5000) + "1 1\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAreas(strings.NewReader(tt.in), 100)
			if err == nil {
				t.Fatalf("ParseAreas(%q, 100) = %v, want an error", tt.in, got)
			}
			if tt.line > 0 && !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d:", tt.line)) {
				t.Errorf("ParseAreas(%q, 100): error %q does not name line %d", tt.in, err, tt.line)
			}
		})
	}
}

// refParseAreas is a plain reading of ParseAreas's contract, used to judge
// its answers: the areas, or the number of the first bad line.
func refParseAreas(s string, size int64) (areas []Area, badLine int) {
	lines := strings.Split(s, "\n")
	if strings.HasSuffix(s, "\n") {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		l = strings.TrimSpace(strings.TrimSuffix(l, "\r"))
		if l == "" || l[0] == '#' {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, i + 1
		}
		off, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || off < 0 || n < 0 || off > size || n > size-off {
			return nil, i + 1
		}
		areas = append(areas, Area{off, n})
	}
	return areas, 0
}

func FuzzParseAreas(f *testing.F) {
	f.Add("", int64(0))
	f.Add("10 5\n", int64(100))
	f.Add("# changed areas\n0 4096\n8192 4096\r\n\n4096 4096\n", int64(1<<20))
	f.Add("50 10\n0 10\n55 10\n", int64(100))
	f.Add("0 10\n# c\n95 10\n", int64(100))
	f.Add("1 2 3\n", int64(100))
	f.Add("-1 5\n", int64(100))
	f.Add("9223372036854775807 9223372036854775807", int64(math.MaxInt64))
	f.Add("7777777777 1\n\n\n1 1 1\n", int64(100))
	f.Fuzz(func(t *testing.T, s string, size int64) {
		size &= math.MaxInt64
		got, err := ParseAreas(strings.NewReader(s), size)
		ref, badLine := refParseAreas(s, size)
		longLine := slices.ContainsFunc(strings.Split(s, "\n"), func(l string) bool { return len(l) >= 4000 })
		if err != nil {
			if longLine {
				return // the scanner's line limit
			}
			if badLine == 0 {
				t.Fatalf("ParseAreas(%q, %d): %v; but every line is good", s, size, err)
			}
			if want := fmt.Sprintf("line %d:", badLine); !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("ParseAreas(%q, %d): error %q should name line %d", s, size, err, badLine)
			}
			return
		}
		if badLine != 0 {
			t.Fatalf("ParseAreas(%q, %d) = %v, but line %d is bad", s, size, got, badLine)
		}
		if err := checkNormalized(got, size); err != nil {
			t.Fatalf("ParseAreas(%q, %d) = %v: %v", s, size, got, err)
		}
		if size <= 4096 {
			if want := bitmapAreas(ref, size); !slices.Equal(got, want) && len(got)+len(want) > 0 {
				t.Fatalf("ParseAreas(%q, %d) = %v, want %v", s, size, got, want)
			}
		} else {
			for _, a := range ref {
				if a.Length > 0 && containing(got, a.Offset, a.End()) < 0 {
					t.Fatalf("ParseAreas(%q, %d) = %v does not cover line area %v", s, size, got, a)
				}
			}
			var total int64
			for _, a := range got {
				total += a.Length
			}
			var refTotal int64
			for _, a := range ref {
				refTotal += a.Length
				if refTotal < 0 {
					refTotal = math.MaxInt64
				}
			}
			if total > refTotal {
				t.Fatalf("ParseAreas(%q, %d) = %v covers %d bytes, more than its lines' %d", s, size, got, total, refTotal)
			}
		}
	})
}
