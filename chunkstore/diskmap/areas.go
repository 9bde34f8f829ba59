package diskmap

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseAreas reads a changed-areas list: one "OFFSET LENGTH" per line, in
// decimal bytes; blank lines and lines starting with # are ignored. Every
// area must lie within a disk of size bytes. The result is normalized.
func ParseAreas(r io.Reader, size int64) ([]Area, error) {
	var areas []Area
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 4096)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"OFFSET LENGTH\", have %q", line, text)
		}
		off, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || off < 0 {
			return nil, fmt.Errorf("line %d: bad offset %q", line, f[0])
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("line %d: bad length %q", line, f[1])
		}
		if off > size || n > size-off {
			return nil, fmt.Errorf("line %d: area %d+%d extends beyond the disk's %d bytes", line, off, n, size)
		}
		areas = append(areas, Area{off, n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read changed areas: %w", err)
	}
	return Normalize(areas, size), nil
}
