package ntfs

import (
	"encoding/binary"
	"fmt"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// lzntChunk is the size of the chunks LZNT1 compresses independently.
const lzntChunk = 4096

// decompressLZNT1 decompresses one compression unit from src into dst,
// which it fills: each chunk takes 4 KiB of dst, a chunk shorter than that
// is followed by zeros, and so is the last chunk.
func decompressLZNT1(dst, src []byte) error {
	clear(dst)
	for out := 0; out < len(dst) && len(src) >= 2; out += lzntChunk {
		h := binary.LittleEndian.Uint16(src)
		if h == 0 {
			break
		}
		size := int(h&0xfff) + 1
		if size > len(src)-2 {
			return fmt.Errorf("LZNT1 chunk of %d bytes, %d left: %w", size, len(src)-2, fstree.ErrCorrupt)
		}
		data := src[2 : 2+size]
		src = src[2+size:]
		chunk := dst[out:min(out+lzntChunk, len(dst))]
		if h&0x8000 == 0 {
			copy(chunk, data)
			continue
		}
		if err := decompressChunk(chunk, data); err != nil {
			return err
		}
	}
	return nil
}

// decompressChunk decodes one compressed chunk into out: groups of a flag
// byte and eight tokens, each a literal byte or a back-reference whose
// split between offset and length bits depends on the position.
func decompressChunk(out, in []byte) error {
	o := 0
	for i := 0; i < len(in); {
		flags := in[i]
		i++
		for bit := 0; bit < 8 && i < len(in); bit, flags = bit+1, flags>>1 {
			if o >= len(out) {
				return fmt.Errorf("LZNT1 chunk decodes past %d bytes: %w", len(out), fstree.ErrCorrupt)
			}
			if flags&1 == 0 {
				out[o] = in[i]
				o, i = o+1, i+1
				continue
			}
			if i+2 > len(in) {
				return fmt.Errorf("LZNT1 back-reference cut short: %w", fstree.ErrCorrupt)
			}
			tok := int(binary.LittleEndian.Uint16(in[i:]))
			i += 2
			lenBits := 12
			for p := o - 1; p >= 0x10; p >>= 1 {
				lenBits--
			}
			back := tok>>lenBits + 1
			n := tok&(1<<lenBits-1) + 3
			if back > o || n > len(out)-o {
				return fmt.Errorf("LZNT1 back-reference of %d bytes from %d at %d: %w", n, back, o, fstree.ErrCorrupt)
			}
			// Byte by byte: the source may overlap what it writes.
			for k := range n {
				out[o+k] = out[o-back+k]
			}
			o += n
		}
	}
	return nil
}
