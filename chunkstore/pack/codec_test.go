package pack

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
)

func TestCodecRoundTrip(t *testing.T) {
	c := newCodec(t, newKey(t))
	for i, plain := range samplePlains() {
		for _, typ := range []blob.Type{blob.Data, blob.Map} {
			id := c.Key().ID(plain)
			e, sealed := c.Seal(typ, id, plain, nil)
			if e.Type != typ || e.ID != id || e.RawLength != uint32(len(plain)) {
				t.Fatalf("plain %d: Seal gave entry %+v", i, e)
			}
			body := len(sealed) - crypto.Overhead
			if e.Compressed != (body < len(plain)) || body > len(plain) {
				t.Errorf("plain %d of %d bytes: sealed body of %d bytes, compressed %v: compression must be used exactly when it helps",
					i, len(plain), body, e.Compressed)
			}
			got, err := c.Open(e, sealed)
			if err != nil {
				t.Fatalf("plain %d: Open: %v", i, err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("plain %d: Open gave other bytes", i)
			}
		}
	}
	// Compression must actually happen where it pays.
	e, _ := c.Seal(blob.Data, blob.ID{}, make([]byte, 1<<20), nil)
	if !e.Compressed {
		t.Errorf("a MiB of zeros was not compressed")
	}
}

// sealedSamples returns an entry and a sealed blob, compressed and not.
func sealedSamples(t testing.TB, c *Codec) (entries []Entry, sealed [][]byte) {
	for _, plain := range [][]byte{[]byte("not worth compressing"), bytes.Repeat([]byte("worth compressing "), 20)} {
		e, s := c.Seal(blob.Data, c.Key().ID(plain), plain, nil)
		entries, sealed = append(entries, e), append(sealed, s)
	}
	if entries[0].Compressed || !entries[1].Compressed {
		t.Fatalf("samples: want one plain and one compressed blob, have %+v", entries)
	}
	return entries, sealed
}

func TestCodecOpenFlippedByte(t *testing.T) {
	c := newCodec(t, newKey(t))
	entries, sealed := sealedSamples(t, c)
	for s := range sealed {
		for i := range sealed[s] {
			for _, bit := range []byte{0x01, 0x80} {
				bad := bytes.Clone(sealed[s])
				bad[i] ^= bit
				if got, err := c.Open(entries[s], bad); !errors.Is(err, crypto.ErrAuth) {
					t.Fatalf("blob %d with byte %d flipped by %#x: Open = %q, %v; want ErrAuth", s, i, bit, got, err)
				}
			}
		}
	}
}

func TestCodecOpenWrongKey(t *testing.T) {
	c := newCodec(t, newKey(t))
	other := newCodec(t, newKey(t))
	entries, sealed := sealedSamples(t, c)
	for i := range sealed {
		if got, err := other.Open(entries[i], sealed[i]); !errors.Is(err, crypto.ErrAuth) {
			t.Errorf("blob %d opened with another key: %q, %v; want ErrAuth", i, got, err)
		}
	}
}

func TestCodecOpenWrongEntry(t *testing.T) {
	c := newCodec(t, newKey(t))
	entries, sealed := sealedSamples(t, c)
	for s := range sealed {
		good := entries[s]
		tests := []struct {
			name string
			fn   func(e *Entry)
			auth bool // the error must be crypto.ErrAuth
		}{
			{"other type", func(e *Entry) { e.Type = blob.Map }, true},
			{"unknown type", func(e *Entry) { e.Type = 0 }, true},
			{"other ID", func(e *Entry) { e.ID[31] ^= 1 }, true},
			{"raw length + 1", func(e *Entry) { e.RawLength++ }, false},
			{"raw length - 1", func(e *Entry) { e.RawLength-- }, false},
			{"raw length 0", func(e *Entry) { e.RawLength = 0 }, false},
			{"raw length MaxBlob", func(e *Entry) { e.RawLength = MaxBlob }, false},
			{"raw length beyond MaxBlob", func(e *Entry) { e.RawLength = MaxBlob + 1 }, false},
			{"raw length max", func(e *Entry) { e.RawLength = 1<<32 - 1 }, false},
			{"compression flag flipped", func(e *Entry) { e.Compressed = !e.Compressed }, false},
		}
		for _, tt := range tests {
			e := good
			tt.fn(&e)
			got, err := c.Open(e, sealed[s])
			if err == nil {
				t.Errorf("blob %d, %s: Open = %q, want an error", s, tt.name, got)
			} else if tt.auth && !errors.Is(err, crypto.ErrAuth) {
				t.Errorf("blob %d, %s: Open: %v, want ErrAuth", s, tt.name, err)
			}
		}
	}
}

// TestCodecOpenAllocation: a damaged blob that claims a large plaintext must
// be refused before anything of that size is allocated.
func TestCodecOpenAllocation(t *testing.T) {
	c := newCodec(t, newKey(t))
	garbage := bytes.Repeat([]byte{0x28, 0xb5, 0x2f, 0xfd}, 64)
	for _, raw := range []uint32{MaxBlob, MaxBlob + 1, 1<<32 - 1} {
		e := Entry{Type: blob.Data, RawLength: raw, Compressed: true}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; i < 10; i++ {
			if _, err := c.Open(e, garbage); err == nil {
				t.Fatalf("Open of garbage claiming %d bytes succeeded", raw)
			}
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("10 Opens of garbage claiming %d bytes allocated %d bytes", raw, n)
		}
	}
}

// sealBody seals body as the stored form of a blob, bypassing compression,
// as a writer with the key could.
func sealBody(c *Codec, e Entry, body []byte) []byte {
	return c.Key().Seal(nil, body, BlobAD(e.Type, e.ID))
}

// TestCodecOpenBomb: authentic compressed bodies that expand beyond the
// entry's length, or beyond MaxBlob, are refused.
func TestCodecOpenBomb(t *testing.T) {
	c := newCodec(t, newKey(t))
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	small := make([]byte, 1000)
	huge := make([]byte, MaxBlob+1)
	tests := []struct {
		name string
		body []byte
		raw  uint32
		id   blob.ID
	}{
		{"more than the entry says", enc.EncodeAll(small, nil), 999, c.Key().ID(small[:999])},
		{"less than the entry says", enc.EncodeAll(small, nil), 1001, c.Key().ID(append(bytes.Clone(small), 0))},
		{"beyond MaxBlob", enc.EncodeAll(huge, nil), 10, c.Key().ID(small[:10])},
		{"not zstd", []byte("plain bytes flagged compressed"), 30, c.Key().ID([]byte("plain bytes flagged compressed"))},
		{"truncated frame", enc.EncodeAll(small, nil)[:5], 1000, c.Key().ID(small)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Entry{Type: blob.Data, ID: tt.id, RawLength: tt.raw, Compressed: true}
			if got, err := c.Open(e, sealBody(c, e, tt.body)); err == nil {
				t.Errorf("Open = %d bytes, want an error", len(got))
			} else if errors.Is(err, crypto.ErrAuth) {
				t.Errorf("Open: %v; the blob is authentic, the error must say what is wrong", err)
			}
		})
	}
	// The honest entry of the same body opens.
	e := Entry{Type: blob.Data, ID: c.Key().ID(small), RawLength: 1000, Compressed: true}
	if got, err := c.Open(e, sealBody(c, e, enc.EncodeAll(small, nil))); err != nil || !bytes.Equal(got, small) {
		t.Errorf("Open of an honest compressed blob: %d bytes, %v", len(got), err)
	}
}

func entryFrom(typ uint8, id []byte, raw uint32, compressed bool) Entry {
	e := Entry{Type: blob.Type(typ), RawLength: raw, Compressed: compressed}
	copy(e.ID[:], id)
	return e
}

// FuzzCodecOpen feeds arbitrary sealed bytes and entries to Codec.Open:
// only blobs this process sealed may open, and then to their plaintext.
// Each fuzz worker has a key of its own, so there the seeds are forgeries
// too; FuzzCodecOpenBody explores what lies behind authentication.
func FuzzCodecOpen(f *testing.F) {
	c := newCodec(f, newKey(f))
	genuine := map[string]bool{}
	for _, plain := range samplePlains()[:4] {
		e, sealed := c.Seal(blob.Data, c.Key().ID(plain), plain, nil)
		genuine[string(sealed)] = true
		f.Add(sealed, uint8(e.Type), e.ID[:], e.RawLength, e.Compressed)
	}
	f.Add([]byte{}, uint8(1), []byte{}, uint32(0), false)
	f.Add(make([]byte, crypto.Overhead), uint8(2), []byte{1}, uint32(0), false)
	f.Add(make([]byte, 100), uint8(1), []byte{}, uint32(MaxBlob+1), true)
	f.Fuzz(func(t *testing.T, sealed []byte, typ uint8, id []byte, raw uint32, compressed bool) {
		e := entryFrom(typ, id, raw, compressed)
		got, err := c.Open(e, sealed)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "blob "+e.ID.Short()) {
				t.Errorf("error %q does not name the blob", err)
			}
			return
		}
		if !genuine[string(sealed)] {
			t.Fatalf("Open accepted bytes this test never sealed: %x", sealed)
		}
		if len(got) != int(e.RawLength) || c.Key().ID(got) != e.ID {
			t.Fatalf("Open gave %d bytes that do not match entry %+v", len(got), e)
		}
	})
}

// FuzzCodecOpenBody seals fuzz input as a blob's stored body with the real
// key, so that decompression and the checks after it see arbitrary
// authentic bytes.
func FuzzCodecOpenBody(f *testing.F) {
	c := newCodec(f, newKey(f))
	ref, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxBlob), zstd.WithDecoderConcurrency(1))
	// ref is a decoder of its own, configured like the codec's.
	if err != nil {
		f.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		f.Fatal(err)
	}
	// Small seeds keep each run, and the minimizing of what the fuzzer
	// finds, cheap.
	for _, plain := range [][]byte{{}, []byte("a"), bytes.Repeat([]byte("compressible "), 50), samplePlains()[3][:300]} {
		f.Add(enc.EncodeAll(plain, nil), uint8(blob.Data), true, true, uint32(len(plain)))
		f.Add(plain, uint8(blob.Map), false, true, uint32(len(plain)))
	}
	f.Add(enc.EncodeAll(make([]byte, 256<<10), nil), uint8(blob.Data), true, false, uint32(10))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0}, uint8(blob.Data), true, true, uint32(0))
	f.Fuzz(func(t *testing.T, body []byte, typ uint8, compressed, honest bool, raw uint32) {
		raw %= 1 << 17 // keep each run cheap; larger claims: TestCodecOpenWrongEntry
		e := Entry{Type: blob.Type(typ), RawLength: raw, Compressed: compressed}
		want := body
		var err error // the reference decoder's verdict
		if compressed {
			want, err = ref.DecodeAll(body, nil)
		}
		if honest && err == nil {
			e.RawLength = uint32(len(want))
		}
		e.ID = c.Key().ID(want)
		got, openErr := c.Open(e, sealBody(c, e, body))
		switch {
		case openErr != nil && errors.Is(openErr, crypto.ErrAuth):
			t.Fatalf("authentic blob failed authentication: %v", openErr)
		case openErr == nil && (len(got) != int(e.RawLength) || c.Key().ID(got) != e.ID):
			t.Fatalf("Open gave %d bytes that do not match entry %+v", len(got), e)
		case compressed && err != nil && openErr == nil:
			t.Fatalf("Open decompressed %x, which the reference decoder refuses: %v", body, err)
		case err == nil && len(want) <= MaxBlob && int(e.RawLength) == len(want) && openErr != nil:
			t.Fatalf("Open of an honest blob of %d bytes: %v", len(want), openErr)
		case openErr == nil && !bytes.Equal(got, want):
			t.Fatalf("Open gave other bytes than the reference decoder")
		}
	})
}
