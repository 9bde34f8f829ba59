//go:build unix

package files

import (
	"io/fs"
	"syscall"
)

// hostMeta fills in what a host filesystem's stat says (os.DirFS).
func hostMeta(info fs.FileInfo, m *fileMeta) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	m.id, m.hasID = fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
	m.nlink = uint64(st.Nlink)
	m.uid, m.gid, m.hasOwner = st.Uid, st.Gid, true
}
