package volume

import (
	"bytes"
	"io"
)

// swap reports whether a volume is Linux swap, and its label. The
// signature ends the first page; pages of 4 KiB are the ones x86 knows.
func swap(r io.ReaderAt, size int64) (label string, ok bool) {
	const page = 4096
	if size < page {
		return "", false
	}
	b := make([]byte, page)
	if n, _ := r.ReadAt(b, 0); n != page {
		return "", false
	}
	if sig := string(b[page-10:]); sig != "SWAPSPACE2" && sig != "SWAP-SPACE" {
		return "", false
	}
	// The header after 1 KiB of boot block: version, last page, bad
	// pages, UUID, then a 16-byte label.
	l := b[1024+12+16:][:16]
	if i := bytes.IndexByte(l, 0); i >= 0 {
		l = l[:i]
	}
	return string(l), true
}
