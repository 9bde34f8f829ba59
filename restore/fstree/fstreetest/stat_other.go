//go:build !unix

package fstreetest

import "io/fs"

// hostStat is what Compare needs of a source file beyond io/fs; the
// readers' tests that compare owners and links run on Unix only.
type hostStat struct {
	uid, gid   uint32
	ino, nlink uint64
}

func statOf(fs.FileInfo) (hostStat, bool) { return hostStat{}, false }
