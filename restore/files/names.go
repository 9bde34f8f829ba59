package files

import (
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// CheckName reports whether name can be the name of a file on goos's
// filesystems, with an error wrapping ErrInvalidName if not. Every system
// refuses "", ".", "..", '/' and NUL. Windows also refuses the device
// names (CON, PRN, AUX, NUL, COM1-9, LPT1-9, CONIN$, CONOUT$), with any
// extension; the characters <>:"\|?* and the control characters; a
// trailing dot or space; names longer than 255 UTF-16 units; and bytes
// that are not UTF-8, which Windows cannot spell.
func CheckName(goos, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%q: %w", name, ErrInvalidName)
	}
	if goos == "windows" {
		if why := windowsName(name); why != "" {
			return fmt.Errorf("%q: %s: %w", name, why, ErrInvalidName)
		}
	}
	return nil
}

func windowsName(name string) string {
	if !utf8.ValidString(name) {
		return "not UTF-8"
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return r < 0x20 || strings.ContainsRune(`<>:"\|?*`, r)
	}); i >= 0 {
		return fmt.Sprintf("character %q", name[i])
	}
	if n := len(utf16.Encode([]rune(name))); n > 255 {
		return fmt.Sprintf("%d UTF-16 units, more than 255", n)
	}
	if last := name[len(name)-1]; last == '.' || last == ' ' {
		return "ends with a dot or a space"
	}
	if reservedWindowsName(name) {
		return "a device name"
	}
	return ""
}

// reservedWindowsName reports whether name opens a device rather than a
// file, as Windows before 11 decides: the part before the first dot, less
// trailing spaces, is a device name.
func reservedWindowsName(name string) bool {
	base, _, _ := strings.Cut(name, ".")
	base = strings.TrimRight(base, " ")
	switch strings.ToUpper(base) {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if len(base) < 4 {
		return false
	}
	switch strings.ToUpper(base[:3]) {
	case "COM", "LPT":
		// Superscript digits count as digits here.
		switch d := base[3:]; d {
		case "1", "2", "3", "4", "5", "6", "7", "8", "9", "\u00b9", "\u00b2", "\u00b3":
			return true
		}
	}
	return false
}

// foldName is the key under which goos's filesystems see two names as the
// same: Windows' are case-insensitive.
func foldName(goos, name string) string {
	if goos == "windows" {
		return strings.ToUpper(name)
	}
	return name
}
