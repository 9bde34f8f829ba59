//go:build unix

package fstreetest

import (
	"io/fs"
	"syscall"
)

// hostStat is what Compare needs of a source file beyond io/fs.
type hostStat struct {
	uid, gid   uint32
	ino, nlink uint64
}

func statOf(info fs.FileInfo) (hostStat, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return hostStat{}, false
	}
	return hostStat{uid: st.Uid, gid: st.Gid, ino: st.Ino, nlink: uint64(st.Nlink)}, true
}
