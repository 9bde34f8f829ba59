package fstree

import (
	"fmt"
	"io"
)

// ClipRead bounds a ReadAt of p at off to data of size bytes. It returns
// the part of p to fill, and what the ReadAt returns once it has filled
// it: io.EOF when p reaches the end, nil when it does not. When the result
// is empty, there is nothing to fill and the error is to be returned at
// once: io.EOF at or past the end, or a negative offset.
func ClipRead(p []byte, off, size int64) ([]byte, error) {
	if off < 0 {
		return nil, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= size {
		return nil, io.EOF
	}
	if rem := size - off; int64(len(p)) > rem {
		return p[:rem], io.EOF
	}
	return p, nil
}
