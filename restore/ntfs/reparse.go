package ntfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Reparse tags of the reparse points read as symlinks.
const (
	tagMountPoint = 0xa0000003 // junction
	tagSymlink    = 0xa000000c
	tagLXSymlink  = 0xa000001d // WSL, and ntfs-3g with special_files=wsl
)

const (
	maxReparseData      = 16 << 10 // the most Windows stores
	symlinkFlagRelative = 1
)

// interixLink starts the data of an Interix symlink, the kind ntfs-3g
// makes by default: a system file holding "IntxLNK\1" and the UTF-16
// target.
var interixLink = []byte("IntxLNK\x01")

// symlink returns a node's target when the node is a symlink: a Windows
// symlink or junction, a WSL symlink or an Interix symlink.
func (r *Reader) symlink(n *node) (string, bool, error) {
	if a := n.find(attrReparsePoint, ""); a != nil {
		v, err := r.attrValue(a, maxReparseData)
		if err != nil {
			return "", false, fmt.Errorf("reparse point: %w", err)
		}
		return parseReparse(v)
	}
	if n.dir || n.meta.Attributes&fstree.AttrSystem == 0 || n.data == nil || n.data.compressed() || n.data.encrypted {
		return "", false, nil
	}
	size := n.data.size
	if size <= int64(len(interixLink)) || size > int64(len(interixLink))+2*fstree.MaxPath || size%2 != 0 {
		return "", false, nil
	}
	v := n.data.value
	if !n.data.resident {
		v = make([]byte, size)
		if _, err := r.newStream(n.data).ReadAt(v, 0); err != nil {
			return "", false, fmt.Errorf("read Interix symlink: %w", err)
		}
	}
	if !bytes.HasPrefix(v, interixLink) {
		return "", false, nil
	}
	return decodeName(v[len(interixLink):]), true, nil
}

// attrValue returns the value of a single-extent attribute other than
// $DATA, which is resident but for a hostile image.
func (r *Reader) attrValue(a *attr, limit int64) ([]byte, error) {
	if a.resident {
		return a.value, nil
	}
	if a.dataSize > limit || a.lowVCN != 0 {
		return nil, fmt.Errorf("non-resident value of %d bytes from VCN %d: %w", a.dataSize, a.lowVCN, fstree.ErrCorrupt)
	}
	d := &dataAttr{runs: a.runs, size: a.dataSize, init: min(a.initSize, a.dataSize)}
	if err := r.checkData(d, ""); err != nil {
		return nil, err
	}
	v := make([]byte, d.size)
	if _, err := r.newStream(d).ReadAt(v, 0); err != nil {
		return nil, err
	}
	return v, nil
}

// parseReparse returns the target of reparse data that is a symlink.
func parseReparse(v []byte) (string, bool, error) {
	if len(v) < 8 {
		return "", false, fmt.Errorf("reparse point of %d bytes: %w", len(v), fstree.ErrCorrupt)
	}
	tag := binary.LittleEndian.Uint32(v)
	size := int(binary.LittleEndian.Uint16(v[4:]))
	if size > len(v)-8 {
		return "", false, fmt.Errorf("reparse data of %d bytes in %d: %w", size, len(v)-8, fstree.ErrCorrupt)
	}
	data := v[8 : 8+size]
	switch tag {
	case tagLXSymlink:
		if len(data) < 4 {
			return "", false, fmt.Errorf("WSL symlink of %d bytes: %w", len(data), fstree.ErrCorrupt)
		}
		return string(data[4:]), true, nil
	case tagSymlink, tagMountPoint:
		buf := 8 // a junction has no flags
		if tag == tagSymlink {
			buf = 12
		}
		if len(data) < buf {
			return "", false, fmt.Errorf("reparse point 0x%x of %d bytes: %w", tag, len(data), fstree.ErrCorrupt)
		}
		path := func(at int) (string, error) {
			off := int(binary.LittleEndian.Uint16(data[at:]))
			n := int(binary.LittleEndian.Uint16(data[at+2:]))
			if buf+off+n > len(data) || n%2 != 0 {
				return "", fmt.Errorf("reparse path of %d bytes at %d: %w", n, off, fstree.ErrCorrupt)
			}
			return decodeName(data[buf+off : buf+off+n]), nil
		}
		sub, err := path(0)
		if err != nil {
			return "", false, err
		}
		print, err := path(4)
		if err != nil {
			return "", false, err
		}
		relative := tag == tagSymlink && binary.LittleEndian.Uint32(data[8:])&symlinkFlagRelative != 0
		return windowsTarget(sub, print, relative), true, nil
	}
	return "", false, nil
}

// windowsTarget turns a Windows link target into a path within the
// volume: a relative one keeps its place, an absolute one on a drive
// starts at the volume's root. Targets elsewhere (volume GUIDs, UNC
// shares) keep their names and resolve nowhere.
func windowsTarget(sub, print string, relative bool) string {
	p := sub
	if p == "" {
		p = print
	}
	if !relative {
		rest := strings.TrimPrefix(strings.TrimPrefix(p, `\??\`), `\\?\`)
		if len(rest) >= 2 && rest[1] == ':' && ('A' <= rest[0] && rest[0] <= 'Z' || 'a' <= rest[0] && rest[0] <= 'z') {
			p = rest[2:]
			if p == "" {
				p = `\`
			}
		}
	}
	return strings.ReplaceAll(p, `\`, "/")
}
