package xfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

const inodeMagic = 0x494e // "IN"

// Data fork formats (di_format).
const (
	formatDev     = 0
	formatLocal   = 1
	formatExtents = 2
	formatBtree   = 3
)

// Mode type bits (S_IFMT).
const (
	sIFMT   = 0o170000
	sIFIFO  = 0o010000
	sIFCHR  = 0o020000
	sIFDIR  = 0o040000
	sIFBLK  = 0o060000
	sIFREG  = 0o100000
	sIFLNK  = 0o120000
	sIFSOCK = 0o140000
)

// Inode flags.
const (
	diflagRealtime = 0x1     // di_flags: data on the realtime device
	diflag2Bigtime = 0x8     // di_flags2: 64-bit nanosecond timestamps
	diflag2Nrext64 = 0x10    // di_flags2: 64-bit data fork extent count
	bigtimeEpoch   = 1 << 31 // bigtime counts from 1901-12-13, the smallest 32-bit time
)

// Inode core sizes: the data fork starts right after.
const (
	coreSizeV2 = 100 // versions 1 and 2, through di_next_unlinked
	coreSizeV3 = 176
)

// inode is a parsed on-disk inode; it implements fstree.Node. It is never
// changed after parsing, so goroutines share it through the cache.
type inode struct {
	ino      uint64
	mode     uint16
	format   uint8
	uid, gid uint32
	nlink    uint32
	size     int64
	flags    uint16
	// nextents is the data fork's extent count.
	nextents                    uint64
	atime, mtime, ctime, crtime time.Time
	// fork is the data fork area of the inode.
	fork []byte
	// extents is the data fork of an extents-format inode.
	extents extentList
	// root is the data fork of a btree-format inode.
	root *bmdrRoot
}

func (in *inode) isDir() bool { return in.mode&sIFMT == sIFDIR }

// Meta implements fstree.Node.
func (in *inode) Meta() fstree.Meta {
	m := fstree.Meta{
		Mode:     fs.FileMode(in.mode & 0o777),
		Size:     in.size,
		HasOwner: true,
		UID:      in.uid,
		GID:      in.gid,
		Mtime:    in.mtime,
		Atime:    in.atime,
		Ctime:    in.ctime,
		Btime:    in.crtime,
		Inode:    in.ino,
		Nlink:    in.nlink,
	}
	if in.mode&0o4000 != 0 {
		m.Mode |= fs.ModeSetuid
	}
	if in.mode&0o2000 != 0 {
		m.Mode |= fs.ModeSetgid
	}
	if in.mode&0o1000 != 0 {
		m.Mode |= fs.ModeSticky
	}
	switch in.mode & sIFMT {
	case sIFDIR:
		m.Mode |= fs.ModeDir
	case sIFLNK:
		m.Mode |= fs.ModeSymlink
	case sIFCHR:
		m.Mode |= fs.ModeDevice | fs.ModeCharDevice
	case sIFBLK:
		m.Mode |= fs.ModeDevice
	case sIFIFO:
		m.Mode |= fs.ModeNamedPipe
	case sIFSOCK:
		m.Mode |= fs.ModeSocket
	}
	if m.Mode&fs.ModeType != 0 && !m.Mode.IsDir() && m.Mode&fs.ModeSymlink == 0 {
		m.Size = 0 // devices, fifos and sockets have no data
	}
	return m
}

// parseInode checks and parses the inode ino, whose bytes are b.
func (s *super) parseInode(ino uint64, b []byte) (*inode, error) {
	be := binary.BigEndian
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("inode %d: %s: %w", ino, fmt.Sprintf(format, args...), fstree.ErrCorrupt)
	}
	if be.Uint16(b) != inodeMagic {
		return nil, corrupt("bad magic %#x", be.Uint16(b))
	}
	in := &inode{
		ino:    ino,
		mode:   be.Uint16(b[2:]),
		format: b[5],
		uid:    be.Uint32(b[8:]),
		gid:    be.Uint32(b[12:]),
		size:   int64(be.Uint64(b[56:])),
		flags:  be.Uint16(b[90:]),
	}
	version := b[4]
	core := coreSizeV2
	var flags2 uint64
	switch {
	case s.v5 && version == 3:
		core = coreSizeV3
		flags2 = be.Uint64(b[120:])
		if got := be.Uint64(b[152:]); got != ino {
			return nil, corrupt("records inode number %d", got)
		}
	case !s.v5 && version == 1:
		in.nlink = uint32(be.Uint16(b[6:]))
	case !s.v5 && version == 2:
	default:
		return nil, corrupt("version %d", version)
	}
	if version >= 2 {
		in.nlink = be.Uint32(b[16:])
	}
	bigtime := flags2&diflag2Bigtime != 0
	in.atime = decodeTime(b[32:], bigtime)
	in.mtime = decodeTime(b[40:], bigtime)
	in.ctime = decodeTime(b[48:], bigtime)
	if version == 3 {
		in.crtime = decodeTime(b[144:], bigtime)
	}
	if s.nrext64 && flags2&diflag2Nrext64 != 0 {
		in.nextents = be.Uint64(b[24:])
	} else {
		in.nextents = uint64(be.Uint32(b[76:]))
	}

	lit := int(s.inodeSize) - core
	dsize := lit
	if forkoff := int(b[82]) * 8; forkoff != 0 {
		if forkoff >= lit {
			return nil, corrupt("attribute fork at %d of %d bytes", forkoff, lit)
		}
		dsize = forkoff
	}
	in.fork = b[core : core+dsize]

	if in.size < 0 {
		return nil, corrupt("size %d", in.size)
	}
	switch in.mode & sIFMT {
	case sIFIFO, sIFCHR, sIFBLK, sIFSOCK:
		if in.format != formatDev {
			return nil, corrupt("device in data fork format %d", in.format)
		}
		return in, nil
	case sIFDIR, sIFREG, sIFLNK:
	case 0:
		return nil, corrupt("not in use (mode 0)")
	default:
		return nil, corrupt("mode %#o", in.mode)
	}
	switch in.format {
	case formatLocal:
		if in.size > int64(dsize) {
			return nil, corrupt("%d bytes inline in a fork of %d", in.size, dsize)
		}
	case formatExtents:
		if in.nextents > uint64(dsize/extentSize) {
			return nil, corrupt("%d extents in a fork of %d bytes", in.nextents, dsize)
		}
		ext, err := s.parseExtents(in.fork[:in.nextents*extentSize])
		if err != nil {
			return nil, fmt.Errorf("inode %d: %w", ino, err)
		}
		in.extents = ext
	case formatBtree:
		root, err := parseBmdr(in.fork)
		if err != nil {
			return nil, fmt.Errorf("inode %d: %w", ino, err)
		}
		in.root = root
	default:
		return nil, corrupt("data fork format %d", in.format)
	}
	return in, nil
}

// decodeTime decodes an inode timestamp: seconds and nanoseconds since
// 1970, or with bigtime nanoseconds since 1901 in one 64-bit number.
func decodeTime(b []byte, bigtime bool) time.Time {
	if bigtime {
		ns := binary.BigEndian.Uint64(b)
		return time.Unix(int64(ns/1e9)-bigtimeEpoch, int64(ns%1e9))
	}
	sec := int32(binary.BigEndian.Uint32(b))
	nsec := binary.BigEndian.Uint32(b[4:])
	return time.Unix(int64(sec), int64(nsec))
}
