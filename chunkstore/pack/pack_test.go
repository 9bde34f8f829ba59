package pack

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
)

func newKey(t testing.TB) *crypto.Key {
	t.Helper()
	k, err := crypto.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCodec(t testing.TB, k *crypto.Key) *Codec {
	t.Helper()
	c, err := NewCodec(k, zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// samplePlains are blob plaintexts of every kind: empty, tiny, compressible
// and not.
func samplePlains() [][]byte {
	random := make([]byte, 5000)
	var x uint32 = 1
	for i := range random {
		x = x*1664525 + 1013904223
		random[i] = byte(x >> 24)
	}
	return [][]byte{
		{},
		[]byte("a"),
		bytes.Repeat([]byte("compressible "), 1000),
		random,
		make([]byte, 64<<10),
	}
}

// buildPack packs plains with c and returns the pack, its ID and entries.
func buildPack(t testing.TB, c *Codec, plains [][]byte) ([]byte, blob.ID, []Entry) {
	t.Helper()
	w := NewWriter(0, nil)
	for i, p := range plains {
		typ := blob.Data
		if i%2 == 1 {
			typ = blob.Map
		}
		e, sealed := c.Seal(typ, c.Key().ID(p), p, nil)
		got := w.Add(e, sealed)
		if got.Length != uint32(len(sealed)) || got.Offset != uint32(w.Size()-len(sealed)) {
			t.Fatalf("Add filled in %+v for a blob of %d bytes ending at %d", got, len(sealed), w.Size())
		}
	}
	if w.Count() != len(plains) {
		t.Fatalf("Count = %d, want %d", w.Count(), len(plains))
	}
	return w.Finish(c.Key())
}

// trailerOf splits a pack into its sealed trailer, via the footer.
func trailerOf(t testing.TB, data []byte) []byte {
	t.Helper()
	n, err := ParseFooter(data[len(data)-FooterSize:], int64(len(data)))
	if err != nil {
		t.Fatalf("ParseFooter: %v", err)
	}
	return data[len(data)-FooterSize-n : len(data)-FooterSize]
}

func TestPackRoundTrip(t *testing.T) {
	k := newKey(t)
	c := newCodec(t, k)
	for _, plains := range [][][]byte{nil, samplePlains()[:1], samplePlains()} {
		data, id, entries := buildPack(t, c, plains)
		if id != blob.ID(sha256.Sum256(data)) {
			t.Errorf("pack ID is not the SHA-256 of its bytes")
		}
		if err := CheckHeader(data[:HeaderSize]); err != nil {
			t.Errorf("CheckHeader: %v", err)
		}
		got, err := OpenTrailer(k, trailerOf(t, data), int64(len(data)))
		if err != nil {
			t.Fatalf("OpenTrailer: %v", err)
		}
		if !slices.Equal(got, entries) {
			t.Fatalf("OpenTrailer = %+v, want %+v", got, entries)
		}
		for i, e := range got {
			plain, err := c.Open(e, data[e.Offset:e.Offset+e.Length])
			if err != nil {
				t.Fatalf("blob %d: Open: %v", i, err)
			}
			if !bytes.Equal(plain, plains[i]) {
				t.Fatalf("blob %d: Open gave %d bytes, want %d", i, len(plain), len(plains[i]))
			}
		}
	}
}

func TestCheckHeader(t *testing.T) {
	tests := []struct {
		h  string
		ok bool
	}{
		{"BWPK\x01", true},
		{"BWPK\x01trailing", true},
		{"BWPK\x02", false},
		{"BWPK\x00", false},
		{"BWPK", false},
		{"bwpk\x01", false},
		{"XWPK\x01", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := CheckHeader([]byte(tt.h)); (err == nil) != tt.ok {
			t.Errorf("CheckHeader(%q) = %v, want ok=%v", tt.h, err, tt.ok)
		}
	}
}

func footer(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }

func TestParseFooter(t *testing.T) {
	const ov = crypto.Overhead
	tests := []struct {
		name     string
		footer   []byte
		packSize int64
		want     int // 0: an error
	}{
		{"smallest trailer", append(footer(ov), "BWPK"...), int64(HeaderSize + FooterSize + ov), ov},
		{"room for blobs", append(footer(100), "BWPK"...), 1000, 100},
		{"largest trailer", append(footer(MaxTrailer), "BWPK"...), 1 << 40, MaxTrailer},
		{"below overhead", append(footer(ov-1), "BWPK"...), 1000, 0},
		{"zero", append(footer(0), "BWPK"...), 1000, 0},
		{"above MaxTrailer", append(footer(MaxTrailer+1), "BWPK"...), 1 << 40, 0},
		{"max uint32", append(footer(math.MaxUint32), "BWPK"...), 1 << 40, 0},
		{"longer than the pack", append(footer(100), "BWPK"...), int64(HeaderSize + FooterSize + 99), 0},
		{"pack too small", append(footer(ov), "BWPK"...), 0, 0},
		{"bad magic", append(footer(100), "BWPX"...), 1000, 0},
		{"short", append(footer(100), "BWP"...), 1000, 0},
		{"long", append(footer(100), "BWPK!"...), 1000, 0},
		{"empty", nil, 1000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseFooter(tt.footer, tt.packSize)
			if tt.want == 0 {
				if err == nil {
					t.Errorf("ParseFooter(%x, %d) = %d, want an error", tt.footer, tt.packSize, n)
				}
				return
			}
			if err != nil || n != tt.want {
				t.Errorf("ParseFooter(%x, %d) = %d, %v; want %d", tt.footer, tt.packSize, n, err, tt.want)
			}
		})
	}
}

// TestParseFooterNegativePackSize: packSize-13 can overflow for pack sizes
// near math.MinInt64; no trailer fits a pack of negative size.
func TestParseFooterNegativePackSize(t *testing.T) {
	for _, size := range []int64{-1, math.MinInt64, math.MinInt64 + 5} {
		if n, err := ParseFooter(append(footer(100), "BWPK"...), size); err == nil {
			t.Errorf("ParseFooter(trailer of 100 bytes, packSize %d) = %d, want an error", size, n)
		}
	}
}

// trailer builds a trailer's plaintext by hand: per entry type, flags, an ID
// and three numbers.
func trailer(version byte, count uint64, ents ...[5]uint64) []byte {
	b := []byte{version}
	b = binary.AppendUvarint(b, count)
	for _, e := range ents {
		b = append(b, byte(e[0]), byte(e[1]))
		b = append(b, make([]byte, 32)...)
		for _, v := range e[2:] {
			b = binary.AppendUvarint(b, v)
		}
	}
	return b
}

func TestDecodeTrailer(t *testing.T) {
	const ov = crypto.Overhead
	const h = 5 // HeaderSize, untyped
	if HeaderSize != h {
		t.Fatalf("HeaderSize = %d, test assumes %d", HeaderSize, h)
	}
	entries := []Entry{
		{Type: blob.Data, ID: blob.ID{1}, Offset: h, Length: 100, RawLength: 60},
		{Type: blob.Map, ID: blob.ID{2}, Offset: h + 100, Length: ov, RawLength: 0, Compressed: true},
		{Type: blob.Data, ID: blob.ID{3}, Offset: h + 100 + ov, Length: 1 << 20, RawLength: MaxBlob, Compressed: true},
	}
	area := uint32(h + 100 + ov + 1<<20)
	got, err := DecodeTrailer(EncodeTrailer(entries), area)
	if err != nil || !slices.Equal(got, entries) {
		t.Fatalf("DecodeTrailer(EncodeTrailer(%+v)) = %+v, %v", entries, got, err)
	}
	if got, err := DecodeTrailer(EncodeTrailer(nil), h); err != nil || len(got) != 0 {
		t.Errorf("empty trailer: %+v, %v", got, err)
	}

	tests := []struct {
		name string
		b    []byte
		area uint32
	}{
		{"empty", nil, h},
		{"version only", []byte{1}, h},
		{"version 2", trailer(2, 0), h},
		{"count overflows", append([]byte{1}, bytes.Repeat([]byte{0xff}, 10)...), h},
		{"count beyond bytes", trailer(1, 2, [5]uint64{1, 0, h, ov, 0}), h + ov},
		{"huge count", trailer(1, math.MaxUint64), h},
		{"empty pack with blob area", trailer(1, 0), h + ov},
		{"type 0", trailer(1, 1, [5]uint64{0, 0, h, ov, 0}), h + ov},
		{"type 3", trailer(1, 1, [5]uint64{3, 0, h, ov, 0}), h + ov},
		{"flags 2", trailer(1, 1, [5]uint64{1, 2, h, ov, 0}), h + ov},
		{"first blob not after header", trailer(1, 1, [5]uint64{1, 0, h + 1, ov, 0}), h + 1 + ov},
		{"blob in header", trailer(1, 1, [5]uint64{1, 0, 0, ov + h, 0}), h + ov},
		{"gap between blobs", trailer(1, 2, [5]uint64{1, 0, h, ov, 0}, [5]uint64{1, 0, h + ov + 1, ov, 0}), h + 2*ov + 1},
		{"overlapping blobs", trailer(1, 2, [5]uint64{1, 0, h, ov, 0}, [5]uint64{1, 0, h + ov - 1, ov, 0}), h + 2*ov - 1},
		{"blob shorter than overhead", trailer(1, 1, [5]uint64{1, 0, h, ov - 1, 0}), h + ov - 1},
		{"blob into trailer", trailer(1, 1, [5]uint64{1, 0, h, ov + 1, 0}), h + ov},
		{"blobs end before trailer", trailer(1, 1, [5]uint64{1, 0, h, ov, 0}), h + ov + 1},
		{"offset beyond uint32", trailer(1, 1, [5]uint64{1, 0, 1<<32 + h, ov, 0}), h + ov},
		{"length beyond uint32", trailer(1, 1, [5]uint64{1, 0, h, 1<<32 + ov, 0}), h + ov},
		{"raw length beyond uint32", trailer(1, 1, [5]uint64{1, 0, h, ov, 1 << 32}), h + ov},
		{"truncated number", trailer(1, 1, [5]uint64{1, 0, h, ov, 300})[:1+1+34+1+1+1], h + ov},
		{"stray byte", append(trailer(1, 1, [5]uint64{1, 0, h, ov, 0}), 0), h + ov},
		{"length wraps the area", trailer(1, 1, [5]uint64{1, 0, h, math.MaxUint32, 0}), math.MaxUint32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := DecodeTrailer(tt.b, tt.area); err == nil {
				t.Errorf("DecodeTrailer(%x, %d) = %+v, want an error", tt.b, tt.area, got)
			}
		})
	}
}

func TestOpenTrailerRejects(t *testing.T) {
	k := newKey(t)
	c := newCodec(t, k)
	data, _, _ := buildPack(t, c, samplePlains())
	sealed := trailerOf(t, data)
	size := int64(len(data))
	tests := []struct {
		name   string
		key    *crypto.Key
		sealed []byte
		size   int64
		auth   bool // the error must be crypto.ErrAuth
	}{
		{"wrong key", newKey(t), sealed, size, true},
		{"flipped first byte", k, flip(sealed, 0), size, true},
		{"flipped last byte", k, flip(sealed, len(sealed)-1), size, true},
		{"truncated", k, sealed[1:], size - 1, true},
		{"empty", k, nil, size, true},
		{"blob sealed as a trailer", k, data[HeaderSize : HeaderSize+len(sealed)], size, true},
		{"pack grew", k, sealed, size + 1, false},
		{"pack shrank", k, sealed, size - 1, false},
		{"no room for a header", k, sealed, int64(len(sealed) + FooterSize + HeaderSize - 1), false},
		{"pack beyond 4 GiB", k, sealed, 1 << 33, false},
		{"negative size", k, sealed, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OpenTrailer(tt.key, tt.sealed, tt.size)
			if err == nil {
				t.Fatalf("OpenTrailer = %+v, want an error", got)
			}
			if tt.auth != errors.Is(err, crypto.ErrAuth) {
				t.Errorf("OpenTrailer: %v; want ErrAuth: %v", err, tt.auth)
			}
		})
	}
	// The trailer is not sealed like a blob: a blob opener cannot read it.
	if _, err := k.Open(nil, sealed, BlobAD(blob.Data, blob.ID{})); !errors.Is(err, crypto.ErrAuth) {
		t.Errorf("trailer opened as a blob: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x20
	return b
}

// checkEntries checks what DecodeTrailer promises of entries it accepts.
func checkEntries(t *testing.T, entries []Entry, blobArea uint32) {
	t.Helper()
	next := uint64(HeaderSize)
	for i, e := range entries {
		if !e.Type.Valid() || uint64(e.Offset) != next || e.Length < crypto.Overhead {
			t.Fatalf("entry %d %+v: bad type, or not at %d, or shorter than the overhead", i, e, next)
		}
		next += uint64(e.Length)
	}
	if next != uint64(blobArea) {
		t.Fatalf("entries end at %d, blob area at %d", next, blobArea)
	}
}

func addTrailerSeeds(f *testing.F, k *crypto.Key) {
	c := newCodec(f, k)
	for _, plains := range [][][]byte{nil, samplePlains()[:2], samplePlains()} {
		data, _, entries := buildPack(f, c, plains)
		area := uint32(HeaderSize)
		if len(entries) > 0 {
			last := entries[len(entries)-1]
			area = last.Offset + last.Length
		}
		f.Add(EncodeTrailer(entries), area, int64(len(data)))
	}
	const ov = crypto.Overhead
	f.Add(trailer(1, 1, [5]uint64{2, 1, uint64(HeaderSize), ov, 7}), uint32(HeaderSize+ov), int64(HeaderSize+ov+FooterSize+100))
	f.Add(trailer(1, 1, [5]uint64{3, 0, uint64(HeaderSize), ov, 0}), uint32(HeaderSize+ov), int64(1000))
	f.Add(trailer(2, 0), uint32(HeaderSize), int64(1000))
	f.Add([]byte{1, 0x80, 0x00}, uint32(HeaderSize), int64(0))
	f.Add([]byte{}, uint32(0), int64(-1))
}

func FuzzDecodeTrailer(f *testing.F) {
	addTrailerSeeds(f, newKey(f))
	f.Fuzz(func(t *testing.T, b []byte, blobArea uint32, _ int64) {
		entries, err := DecodeTrailer(b, blobArea)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "pack trailer: ") {
				t.Errorf("error %q does not say what it is about", err)
			}
			return
		}
		checkEntries(t, entries, blobArea)
		re := EncodeTrailer(entries)
		if len(re) > len(b) {
			t.Fatalf("trailer %x re-encodes to %x, longer than the original", b, re)
		}
		again, err := DecodeTrailer(re, blobArea)
		if err != nil {
			t.Fatalf("re-encoded trailer %x does not decode: %v", re, err)
		}
		if !slices.Equal(again, entries) {
			t.Fatalf("trailer %x decodes to %+v, re-encoded to %+v", b, entries, again)
		}
	})
}

// FuzzOpenTrailer seals fuzz input as a trailer with a real key, and also
// tries it as a sealed trailer as it is.
func FuzzOpenTrailer(f *testing.F) {
	k := newKey(f)
	addTrailerSeeds(f, k)
	f.Fuzz(func(t *testing.T, plain []byte, _ uint32, packSize int64) {
		if entries, err := OpenTrailer(k, plain, packSize); err == nil {
			t.Fatalf("OpenTrailer accepted unsealed bytes %x as %+v", plain, entries)
		} else if len(plain) >= crypto.Overhead && !errors.Is(err, crypto.ErrAuth) {
			t.Fatalf("OpenTrailer of unsealed bytes: %v, want ErrAuth", err)
		}
		sealed := k.Seal(nil, plain, trailerAD)
		entries, err := OpenTrailer(k, sealed, packSize)
		blobArea := packSize - int64(FooterSize) - int64(len(sealed))
		if blobArea < int64(HeaderSize) || blobArea > math.MaxUint32 {
			if err == nil {
				t.Fatalf("OpenTrailer accepted pack of %d bytes with a trailer of %d: %+v", packSize, len(sealed), entries)
			}
			return
		}
		want, wantErr := DecodeTrailer(plain, uint32(blobArea))
		if (err == nil) != (wantErr == nil) || !slices.Equal(entries, want) {
			t.Fatalf("OpenTrailer = %+v, %v; DecodeTrailer = %+v, %v", entries, err, want, wantErr)
		}
		if err == nil {
			checkEntries(t, entries, uint32(blobArea))
		}
	})
}

func FuzzParseFooter(f *testing.F) {
	f.Add(append(footer(crypto.Overhead), "BWPK"...), int64(HeaderSize+FooterSize+crypto.Overhead))
	f.Add(append(footer(100), "BWPK"...), int64(1000))
	f.Add(append(footer(MaxTrailer+1), "BWPK"...), int64(1<<40))
	f.Add(append(footer(100), "BWPX"...), int64(1000))
	f.Add([]byte("BWPK"), int64(10))
	f.Fuzz(func(t *testing.T, b []byte, packSize int64) {
		packSize &= math.MaxInt64 // negative sizes: TestParseFooterNegativePackSize
		n, err := ParseFooter(b, packSize)
		if err != nil {
			return
		}
		if len(b) != FooterSize || string(b[4:]) != "BWPK" || n != int(binary.LittleEndian.Uint32(b)) {
			t.Fatalf("ParseFooter(%x) accepted a bad footer as %d", b, n)
		}
		if n < crypto.Overhead || n > MaxTrailer || int64(n) > packSize-int64(HeaderSize+FooterSize) {
			t.Fatalf("ParseFooter(%x, %d) = %d, which does not fit", b, packSize, n)
		}
	})
}

func FuzzCheckHeader(f *testing.F) {
	f.Add([]byte("BWPK\x01"))
	f.Add([]byte("BWPK\x02rest"))
	f.Add([]byte("BW"))
	f.Fuzz(func(t *testing.T, h []byte) {
		want := bytes.HasPrefix(h, []byte("BWPK\x01"))
		if err := CheckHeader(h); (err == nil) != want {
			t.Fatalf("CheckHeader(%x) = %v, want ok=%v", h, err, want)
		}
	})
}

// FuzzParse damages a real pack at a fuzz-chosen place, or cuts it, and
// parses it whole: Parse must not panic, and what it accepts must lie
// within the pack's blob area.
func FuzzParse(f *testing.F) {
	k := newKey(f)
	w := NewWriter(1<<10, nil)
	for i := range 3 {
		var id blob.ID
		id[0] = byte(i)
		w.Add(Entry{ID: id, Type: blob.Data, RawLength: 10}, bytes.Repeat([]byte{byte(i)}, crypto.Overhead+10+i))
	}
	good, _, want := w.Finish(k)
	if got, err := Parse(k, good); err != nil || !slices.Equal(got, want) {
		f.Fatalf("Parse of a sound pack = %+v, %v; want %+v", got, err, want)
	}
	f.Add(uint32(0), byte(0), uint32(len(good)))
	f.Add(uint32(len(good)-1), byte(1), uint32(len(good)))
	f.Add(uint32(7), byte(0x80), uint32(len(good)-3))
	f.Add(uint32(HeaderSize+3), byte(1), uint32(len(good)))
	f.Add(uint32(len(good)-10), byte(0xff), uint32(len(good)))
	f.Fuzz(func(t *testing.T, at uint32, flip byte, size uint32) {
		data := slices.Clone(good[:min(int(size), len(good))])
		if len(data) > 0 {
			data[int(at)%len(data)] ^= flip
		}
		entries, err := Parse(k, data)
		if err != nil {
			return
		}
		// Blobs are sealed one by one and opened when read: Parse checks
		// the header, footer and sealed trailer, and damage there or a cut
		// must be refused.
		n, _ := ParseFooter(good[len(good)-FooterSize:], int64(len(good)))
		blobArea := len(good) - FooterSize - n
		pos := 0
		if len(data) > 0 {
			pos = int(at) % len(data)
		}
		if len(data) != len(good) || flip != 0 && (pos < HeaderSize || pos >= blobArea) {
			t.Fatalf("Parse accepted a pack damaged at %d (^%#x) or cut to %d bytes", pos, flip, len(data))
		}
		checkEntries(t, entries, uint32(blobArea))
	})
}
