package extfs

import (
	"bytes"
	"encoding/binary"
)

const (
	xattrMagic       = 0xea020000
	xattrIndexSystem = 7 // the "system." namespace
)

// inlineEA returns the value of the system.data attribute that an
// inline-data inode keeps in its body: the part of its data that does not
// fit in i_block. Data that fits in i_block may have none.
func (r *Reader) inlineEA(n *inode) ([]byte, error) {
	le := binary.LittleEndian
	b := n.inlineEA
	if len(b) < 4 || le.Uint32(b) != xattrMagic {
		return nil, nil
	}
	// Entries follow the magic; values are placed from the end of the
	// area, at offsets counted from the first entry.
	entries := b[4:]
	for off := 0; off+16 <= len(entries); {
		e := entries[off:]
		if le.Uint32(e) == 0 { // end of the entries
			break
		}
		nameLen := int(e[0])
		index := e[1]
		valueOff := int(le.Uint16(e[2:]))
		valueInode := le.Uint32(e[4:])
		valueSize := int(le.Uint32(e[8:]))
		if off+16+nameLen > len(entries) {
			return nil, corrupt("inode %d: extended attribute at %d past the inode", n.ino, off)
		}
		name := e[16 : 16+nameLen]
		if index == xattrIndexSystem && bytes.Equal(name, []byte("data")) {
			if valueInode != 0 || valueOff > len(entries) || valueSize > len(entries)-valueOff {
				return nil, corrupt("inode %d: inline data of %d bytes at %d", n.ino, valueSize, valueOff)
			}
			return entries[valueOff : valueOff+valueSize], nil
		}
		off += (16 + nameLen + 3) &^ 3
	}
	return nil, nil
}

// inlineFile returns the data of an inline-data file.
func (r *Reader) inlineFile(n *inode) ([]byte, error) {
	ea, err := r.inlineEA(n)
	if err != nil {
		return nil, err
	}
	if n.size > uint64(len(n.block)+len(ea)) {
		return nil, corrupt("inode %d: size %d with %d bytes of inline data", n.ino, n.size, len(n.block)+len(ea))
	}
	data := make([]byte, 0, n.size)
	data = append(data, n.block[:min(n.size, uint64(len(n.block)))]...)
	return append(data, ea[:n.size-uint64(len(data))]...), nil
}
