// Package pack holds the pack file format. A pack is
//
//	"BWPK" version(1)            header, 5 bytes
//	sealed blob ...              each blob sealed on its own
//	sealed trailer               the list of the blobs, sealed
//	trailer length (u32 LE) "BWPK"  footer, 8 bytes
//
// Packs are built in memory, written once and never modified; their name is
// the SHA-256 of their bytes, so a pack whose content changed no longer
// matches its name.
package pack

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
)

const (
	magic      = "BWPK"
	version    = 1
	HeaderSize = len(magic) + 1
	FooterSize = 4 + len(magic)
	// entryMax bounds one encoded trailer entry: flags, type, ID, three uvarints.
	entryMax = 2 + 32 + 3*binary.MaxVarintLen64
	// MaxTrailer bounds the sealed trailer a reader accepts.
	MaxTrailer = 64 << 20
)

var trailerAD = []byte("bulwark pack trailer v1")

// Entry says where a blob is in its pack.
type Entry struct {
	Type       blob.Type
	ID         blob.ID
	Offset     uint32 // of the sealed blob in the pack
	Length     uint32 // of the sealed blob
	RawLength  uint32 // of the plaintext, uncompressed
	Compressed bool
}

// BlobAD returns the additional data a blob is sealed with, which binds the
// ciphertext to its ID and type: a blob moved under another name fails to open.
func BlobAD(t blob.Type, id blob.ID) []byte {
	ad := make([]byte, 1+len(id))
	ad[0] = byte(t)
	copy(ad[1:], id[:])
	return ad
}

// Writer builds one pack in memory.
type Writer struct {
	buf     []byte
	entries []Entry
}

// NewWriter returns an empty pack of expected size sizeHint, built in buf
// if it is large enough (the buffer of a finished pack, say).
func NewWriter(sizeHint int, buf []byte) *Writer {
	if cap(buf) < sizeHint {
		buf = make([]byte, 0, sizeHint+sizeHint/8)
	}
	w := &Writer{buf: buf[:0]}
	w.buf = append(w.buf, magic...)
	w.buf = append(w.buf, version)
	return w
}

// Add appends an already sealed blob; e's Offset and Length are filled in.
func (w *Writer) Add(e Entry, sealed []byte) Entry {
	e.Offset = uint32(len(w.buf))
	e.Length = uint32(len(sealed))
	w.buf = append(w.buf, sealed...)
	w.entries = append(w.entries, e)
	return e
}

// Size is the number of bytes so far.
func (w *Writer) Size() int { return len(w.buf) }

// Count is the number of blobs so far.
func (w *Writer) Count() int { return len(w.entries) }

// Finish seals the trailer and returns the pack's bytes, its ID and entries.
func (w *Writer) Finish(k *crypto.Key) (data []byte, id blob.ID, entries []Entry) {
	plain := EncodeTrailer(w.entries)
	sealed := k.Seal(nil, plain, trailerAD)
	w.buf = append(w.buf, sealed...)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(sealed)))
	w.buf = append(w.buf, magic...)
	return w.buf, sha256.Sum256(w.buf), w.entries
}

// EncodeTrailer encodes a trailer's plaintext.
func EncodeTrailer(entries []Entry) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(entries)*entryMax)
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		var flags byte
		if e.Compressed {
			flags = 1
		}
		b = append(b, byte(e.Type), flags)
		b = append(b, e.ID[:]...)
		b = binary.AppendUvarint(b, uint64(e.Offset))
		b = binary.AppendUvarint(b, uint64(e.Length))
		b = binary.AppendUvarint(b, uint64(e.RawLength))
	}
	return b
}

// DecodeTrailer decodes a trailer's plaintext and checks every entry against
// the pack's size: blobs lie between header and trailer, in order, apart.
func DecodeTrailer(b []byte, blobArea uint32) ([]Entry, error) {
	if len(b) < 2 || b[0] != version {
		return nil, errors.New("pack trailer: unknown version")
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 {
		return nil, errors.New("pack trailer: bad entry count")
	}
	b = b[1+k:]
	const minEntry = 2 + 32 + 3
	if n > uint64(len(b)/minEntry) {
		return nil, fmt.Errorf("pack trailer: %d entries do not fit in %d bytes", n, len(b))
	}
	entries := make([]Entry, 0, n)
	next := uint64(HeaderSize)
	for i := uint64(0); i < n; i++ {
		if len(b) < 34 {
			return nil, fmt.Errorf("pack trailer: entry %d truncated", i)
		}
		e := Entry{Type: blob.Type(b[0])}
		if !e.Type.Valid() {
			return nil, fmt.Errorf("pack trailer: entry %d: unknown blob type %d", i, b[0])
		}
		if b[1] > 1 {
			return nil, fmt.Errorf("pack trailer: entry %d: unknown flags %#x", i, b[1])
		}
		e.Compressed = b[1] == 1
		copy(e.ID[:], b[2:34])
		b = b[34:]
		var v [3]uint64
		for j := range v {
			x, k := binary.Uvarint(b)
			if k <= 0 || x > 1<<32-1 {
				return nil, fmt.Errorf("pack trailer: entry %d: bad number", i)
			}
			v[j] = x
			b = b[k:]
		}
		if v[0] != next || v[1] < crypto.Overhead || v[0]+v[1] > uint64(blobArea) {
			return nil, fmt.Errorf("pack trailer: entry %d (%s): blob at %d+%d outside the pack's blob area %d..%d",
				i, e.ID.Short(), v[0], v[1], next, blobArea)
		}
		e.Offset, e.Length, e.RawLength = uint32(v[0]), uint32(v[1]), uint32(v[2])
		next = v[0] + v[1]
		entries = append(entries, e)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("pack trailer: %d stray bytes after the entries", len(b))
	}
	if next != uint64(blobArea) {
		return nil, fmt.Errorf("pack trailer: blobs end at %d, trailer starts at %d", next, blobArea)
	}
	return entries, nil
}

// ParseFooter returns the length of the sealed trailer from a pack's last
// FooterSize bytes, checked against the pack's size.
func ParseFooter(footer []byte, packSize int64) (int, error) {
	if len(footer) != FooterSize || string(footer[4:]) != magic {
		return 0, errors.New("pack footer: bad magic (not a pack, or truncated)")
	}
	if packSize < int64(HeaderSize+FooterSize) {
		return 0, fmt.Errorf("pack footer: a pack of %d bytes is too short", packSize)
	}
	n := binary.LittleEndian.Uint32(footer)
	if n < crypto.Overhead || n > MaxTrailer || int64(n) > packSize-int64(HeaderSize+FooterSize) {
		return 0, fmt.Errorf("pack footer: trailer length %d does not fit a pack of %d bytes", n, packSize)
	}
	return int(n), nil
}

// OpenTrailer authenticates and decodes a sealed trailer of a pack of packSize bytes.
func OpenTrailer(k *crypto.Key, sealed []byte, packSize int64) ([]Entry, error) {
	plain, err := k.Open(nil, sealed, trailerAD)
	if err != nil {
		return nil, fmt.Errorf("pack trailer: %w", err)
	}
	blobArea := packSize - int64(FooterSize) - int64(len(sealed))
	if blobArea < int64(HeaderSize) || blobArea > 1<<32-1 {
		return nil, fmt.Errorf("pack trailer: pack of %d bytes has no room for blobs", packSize)
	}
	return DecodeTrailer(plain, uint32(blobArea))
}

// CheckHeader checks a pack's first HeaderSize bytes.
func CheckHeader(h []byte) error {
	if len(h) < HeaderSize || string(h[:4]) != magic || h[4] != version {
		return errors.New("pack header: bad magic or version")
	}
	return nil
}

// Parse checks a whole pack's header and footer and returns its blobs as
// its trailer lists them.
func Parse(k *crypto.Key, data []byte) ([]Entry, error) {
	if err := CheckHeader(data); err != nil {
		return nil, err
	}
	size := int64(len(data))
	if size < int64(HeaderSize+FooterSize) {
		return nil, fmt.Errorf("pack of %d bytes is too short", size)
	}
	n, err := ParseFooter(data[size-int64(FooterSize):], size)
	if err != nil {
		return nil, err
	}
	end := size - int64(FooterSize)
	return OpenTrailer(k, data[end-int64(n):end], size)
}
