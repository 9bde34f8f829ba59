package files

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name           string
		linux, windows bool // valid on each
	}{
		{"hosts", true, true},
		{"日本語 テキスト.txt", true, true},
		{".hidden", true, true},
		{"", false, false},
		{".", false, false},
		{"..", false, false},
		{"a/b", false, false},
		{"a\x00b", false, false},
		{"CON", true, false},
		{"con", true, false},
		{"Con.txt", true, false},
		{"nul.tar.gz", true, false},
		{"AUX .txt", true, false},
		{"PRN", true, false},
		{"COM1", true, false},
		{"lpt9.log", true, false},
		{"COM\u00b2", true, false},
		{"CONIN$", true, false},
		{"COM0", true, true},
		{"COM10", true, true},
		{"CONSOLE", true, true},
		{"NULL", true, true},
		{"xCON", true, true},
		{"a:b", true, false},
		{`a\b`, true, false},
		{"a<b>", true, false},
		{`"q"`, true, false},
		{"a|b", true, false},
		{"what?", true, false},
		{"*", true, false},
		{"tab\there", true, false},
		{"trail.", true, false},
		{"trail ", true, false},
		{" lead", true, true},
		{"\xff\xfe", true, false},
		{strings.Repeat("x", 255), true, true},
		{strings.Repeat("x", 256), true, false},
		{strings.Repeat("é", 255), true, true},
		{strings.Repeat("😀", 128), true, false}, // 256 UTF-16 units
	} {
		for _, c := range []struct {
			goos  string
			valid bool
		}{{"linux", tc.linux}, {"windows", tc.windows}} {
			err := CheckName(c.goos, tc.name)
			if (err == nil) != c.valid || (err != nil && !errors.Is(err, ErrInvalidName)) {
				t.Errorf("CheckName(%s, %q) = %v, want valid %v", c.goos, tc.name, err, c.valid)
			}
		}
	}
}

func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"hosts", "CON.txt", "a:b", "trail.", "COM\u00b9", "\xff", "日本語"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		win, linux := CheckName("windows", name), CheckName("linux", name)
		if win == nil && linux != nil {
			t.Errorf("%q is valid on Windows, not on Linux: %v", name, linux)
		}
		if linux != nil && !errors.Is(linux, ErrInvalidName) || win != nil && !errors.Is(win, ErrInvalidName) {
			t.Errorf("%q: errors %v, %v do not wrap ErrInvalidName", name, linux, win)
		}
	})
}
