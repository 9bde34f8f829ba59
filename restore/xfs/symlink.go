package xfs

import (
	"encoding/binary"
	"fmt"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

const (
	xslmMagic     = 0x58534c4d // "XSLM": version 5 remote symlink block
	symlinkHdrV5  = 56         // magic, offset, bytes, CRC, UUID, owner, address, LSN
	maxSymlinkLen = 1024       // XFS_SYMLINK_MAXLEN
)

// readLink returns a symlink's target: inline in the inode, or in blocks
// of its own, whose extents on version 5 each start with a header saying
// which bytes of the target they hold.
func (r *Reader) readLink(in *inode) (string, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("symlink inode %d: %s: %w", in.ino, fmt.Sprintf(format, args...), fstree.ErrCorrupt)
	}
	size := int(in.size)
	if in.size <= 0 || in.size > maxSymlinkLen {
		return "", corrupt("target of %d bytes", in.size)
	}
	switch in.format {
	case formatLocal:
		return string(in.fork[:size]), nil
	case formatExtents, formatBtree:
	default:
		return "", corrupt("data fork format %d", in.format)
	}
	hdr := 0
	if r.sb.v5 {
		hdr = symlinkHdrV5
	}
	be := binary.BigEndian
	m := r.mapper(in)
	bs := int(r.sb.blockSize)
	blocks := uint64((size + bs - hdr - 1) / (bs - hdr))
	out := make([]byte, 0, size)
	// As the kernel writes them, each extent is one buffer, with one
	// header on version 5.
	for lb := uint64(0); lb < blocks; {
		e, ok, err := m.find(lb)
		if err != nil {
			return "", err
		}
		if !ok || e.off > lb || e.unwritten {
			return "", corrupt("block %d of the target not written", lb)
		}
		n := min(e.end(), blocks) - lb
		b := make([]byte, n*uint64(bs))
		if err := r.readMapped(in.ino, m, b, int64(lb<<r.sb.blockLog)); err != nil {
			return "", err
		}
		chunk := min(len(b)-hdr, size-len(out))
		if r.sb.v5 {
			switch {
			case be.Uint32(b) != xslmMagic:
				return "", corrupt("block %d: bad magic %#x", lb, be.Uint32(b))
			case be.Uint32(b[4:]) != uint32(len(out)) || be.Uint32(b[8:]) != uint32(chunk):
				return "", corrupt("block %d holds %d bytes at %d, want %d at %d", lb, be.Uint32(b[8:]), be.Uint32(b[4:]), chunk, len(out))
			case be.Uint64(b[32:]) != in.ino:
				return "", corrupt("block %d owned by inode %d", lb, be.Uint64(b[32:]))
			}
		}
		out = append(out, b[hdr:hdr+chunk]...)
		lb += n
	}
	if len(out) != size {
		return "", corrupt("%d of %d bytes in %d blocks", len(out), size, blocks)
	}
	return string(out), nil
}
