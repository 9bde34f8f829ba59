package extfs

import (
	"encoding/binary"
	"io/fs"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Inode flags.
const (
	flagCompressed = 0x4
	flagEncrypt    = 0x800
	flagIndex      = 0x1000 // directory has an htree index
	flagHugeFile   = 0x40000
	flagExtents    = 0x80000
	flagInlineData = 0x10000000
	flagCasefold   = 0x40000000
)

// goodOldInodeSize is the inode of revision 0; larger inodes carry extra
// fields after it, then extended attributes.
const goodOldInodeSize = 128

// inode is a file as its inode describes it. It is never written after it
// is parsed, so goroutines share it freely.
type inode struct {
	ino      uint32
	mode     uint16
	flags    uint32
	size     uint64
	blocks   uint64 // i_blocks, in 512-byte sectors or, for huge files, in blocks
	fileACL  uint64 // block of extended attributes, if any
	block    [60]byte
	inlineEA []byte // for inline data: the extended attributes after the extra fields
	meta     fstree.Meta
}

func (n *inode) Meta() fstree.Meta { return n.meta }

func (n *inode) isDir() bool { return n.mode&0xf000 == 0x4000 }

// inode reads inode number ino.
func (r *Reader) inode(ino uint32) (*inode, error) {
	if ino == 0 || ino > r.sb.inodesCount {
		return nil, corrupt("inode %d of %d", ino, r.sb.inodesCount)
	}
	g, idx := (ino-1)/r.sb.inodesPerGroup, (ino-1)%r.sb.inodesPerGroup
	gd, err := r.group(g)
	if err != nil {
		return nil, err
	}
	if gd.flags&bgInodeUninit != 0 && r.sb.roCompat&(roCompatGdtCsum|roCompatMetadataCsum) != 0 {
		return nil, corrupt("inode %d: its group %d has no initialized inodes", ino, g)
	}
	off := uint64(idx) * uint64(r.sb.inodeSize)
	b, err := r.block(gd.inodeTable + off/uint64(r.bs))
	if err != nil {
		return nil, err
	}
	off %= uint64(r.bs)
	return r.parseInode(ino, b[off:off+uint64(r.sb.inodeSize)])
}

func (r *Reader) parseInode(ino uint32, b []byte) (*inode, error) {
	le := binary.LittleEndian
	n := &inode{
		ino:     ino,
		mode:    le.Uint16(b[0x0:]),
		flags:   le.Uint32(b[0x20:]),
		size:    uint64(le.Uint32(b[0x4:])),
		blocks:  uint64(le.Uint32(b[0x1c:])) | uint64(le.Uint16(b[0x74:]))<<32,
		fileACL: uint64(le.Uint32(b[0x68:])) | uint64(le.Uint16(b[0x76:]))<<32,
	}
	copy(n.block[:], b[0x28:0x64])
	mode, ok := fileMode(n.mode)
	if !ok {
		if n.mode == 0 {
			return nil, corrupt("inode %d is not in use", ino)
		}
		return nil, corrupt("inode %d: mode %#o", ino, n.mode)
	}
	if mode.IsRegular() || (mode.IsDir() && r.sb.incompat&incompatLargeDir != 0) {
		n.size |= uint64(le.Uint32(b[0x6c:])) << 32
	}
	if n.size > 1<<63-1 {
		return nil, corrupt("inode %d: size %d", ino, n.size)
	}
	if n.flags&flagInlineData != 0 && r.sb.incompat&incompatInlineData == 0 {
		return nil, corrupt("inode %d has inline data, the filesystem not", ino)
	}
	// Fields past the first 128 bytes exist only as far as i_extra_isize
	// says.
	var extra []byte
	if len(b) > goodOldInodeSize {
		isize := int(le.Uint16(b[0x80:]))
		if goodOldInodeSize+isize > len(b) || isize%4 != 0 {
			return nil, corrupt("inode %d: %d extra bytes in an inode of %d", ino, isize, len(b))
		}
		extra = b[goodOldInodeSize : goodOldInodeSize+isize]
		if n.flags&flagInlineData != 0 {
			n.inlineEA = append([]byte(nil), b[goodOldInodeSize+isize:]...)
		}
	}
	field := func(off int) (uint32, bool) {
		off -= goodOldInodeSize
		if off+4 > len(extra) {
			return 0, false
		}
		return le.Uint32(extra[off:]), true
	}
	stamp := func(off, extraOff int) time.Time {
		x, _ := field(extraOff)
		return timestamp(le.Uint32(b[off:]), x)
	}
	n.meta = fstree.Meta{
		Mode:     mode,
		Size:     int64(n.size),
		HasOwner: true,
		UID:      uint32(le.Uint16(b[0x2:])) | uint32(le.Uint16(b[0x78:]))<<16,
		GID:      uint32(le.Uint16(b[0x18:])) | uint32(le.Uint16(b[0x7a:]))<<16,
		Atime:    stamp(0x8, 0x8c),
		Ctime:    stamp(0xc, 0x84),
		Mtime:    stamp(0x10, 0x88),
		Inode:    uint64(ino),
		Nlink:    uint32(le.Uint16(b[0x1a:])),
	}
	if crtime, ok := field(0x90); ok {
		x, _ := field(0x94)
		n.meta.Btime = timestamp(crtime, x)
	}
	return n, nil
}

// timestamp decodes a time: signed seconds since 1970, and in the extra
// word two more bits of seconds (to year 2446) and the nanoseconds.
func timestamp(sec, extra uint32) time.Time {
	s := int64(int32(sec)) + int64(extra&3)<<32
	return time.Unix(s, int64(extra>>2))
}

// fileMode converts an i_mode; ok is false for an unknown file type.
func fileMode(m uint16) (mode fs.FileMode, ok bool) {
	mode = fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch m & 0xf000 {
	case 0x8000:
	case 0x4000:
		mode |= fs.ModeDir
	case 0xa000:
		mode |= fs.ModeSymlink
	case 0x2000:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case 0x6000:
		mode |= fs.ModeDevice
	case 0x1000:
		mode |= fs.ModeNamedPipe
	case 0xc000:
		mode |= fs.ModeSocket
	default:
		return 0, false
	}
	return mode, true
}
