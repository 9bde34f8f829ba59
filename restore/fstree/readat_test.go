package fstree_test

import (
	"io"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

func TestClipRead(t *testing.T) {
	buf := make([]byte, 8)
	for _, tc := range []struct {
		off, size int64
		n         int
		eof       bool
		fail      bool
	}{
		{off: 0, size: 10, n: 8},
		{off: 2, size: 10, n: 8},
		{off: 3, size: 10, n: 7, eof: true},
		{off: 10, size: 10, eof: true},
		{off: 11, size: 10, eof: true},
		{off: -1, size: 10, fail: true},
	} {
		p, err := fstree.ClipRead(buf, tc.off, tc.size)
		switch {
		case len(p) != tc.n:
			t.Errorf("at %d of %d: %d bytes, want %d", tc.off, tc.size, len(p), tc.n)
		case tc.fail && (err == nil || err == io.EOF):
			t.Errorf("at %d of %d: %v, want an error", tc.off, tc.size, err)
		case !tc.fail && (err == io.EOF) != tc.eof:
			t.Errorf("at %d of %d: %v", tc.off, tc.size, err)
		}
	}
}
