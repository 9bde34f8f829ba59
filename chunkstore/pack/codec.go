package pack

import (
	"fmt"
	"runtime"

	"github.com/klauspost/compress/zstd"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
)

// MaxBlob bounds a blob's plaintext; larger claims are damage.
const MaxBlob = 64 << 20

// Codec turns plaintext blobs into sealed ones and back. It is safe for
// concurrent use.
type Codec struct {
	key *crypto.Key
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// NewCodec returns a codec that compresses at level and seals with k.
func NewCodec(k *crypto.Key, level zstd.EncoderLevel) (*Codec, error) {
	// EncodeAll borrows one of the encoder's instances: there must be one for
	// every goroutine that seals at once, or compression runs on one core.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(2*runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(false)) // the AEAD tag and the ID check already cover the content
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	// The cap limit stops a frame that claims more than the index says
	// before it is decoded.
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxBlob),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &Codec{key: k, enc: enc, dec: dec}, nil
}

// Key returns the key the codec seals with.
func (c *Codec) Key() *crypto.Key { return c.key }

// Scratch holds a goroutine's buffers for Seal, so that sealing a stream of
// chunks makes no garbage.
type Scratch struct{ z, sealed []byte }

// Seal compresses plain when that makes it smaller and seals it. The sealed
// bytes live in sc and are valid until its next use; a nil sc allocates.
// The entry's Offset and Length are set when the blob is added to a pack.
func (c *Codec) Seal(t blob.Type, id blob.ID, plain []byte, sc *Scratch) (Entry, []byte) {
	if sc == nil {
		sc = &Scratch{}
	}
	e := Entry{Type: t, ID: id, RawLength: uint32(len(plain))}
	body := plain
	sc.z = c.enc.EncodeAll(plain, sc.z[:0])
	if len(sc.z) < len(plain) {
		body, e.Compressed = sc.z, true
	}
	sc.sealed = c.key.Seal(sc.sealed[:0], body, BlobAD(t, id))
	return e, sc.sealed
}

// decodeSlack is room left after a blob's plaintext: zstd's fast path may
// write up to 32 bytes beyond what it decodes, and takes its slow path
// when it has no such room.
const decodeSlack = 64

// OpenScratch holds a goroutine's buffers for OpenTo, so that opening a
// stream of blobs makes no garbage.
type OpenScratch struct{ body, plain []byte }

// Open authenticates, decrypts and decompresses a sealed blob, and checks
// that its plaintext hashes to its ID.
func (c *Codec) Open(e Entry, sealed []byte) ([]byte, error) { return c.OpenTo(e, sealed, nil) }

// OpenTo is Open into sc's buffers: the plaintext is valid until sc's next
// use. A nil sc allocates.
func (c *Codec) OpenTo(e Entry, sealed []byte, sc *OpenScratch) ([]byte, error) {
	if e.RawLength > MaxBlob {
		return nil, fmt.Errorf("blob %s: length %d exceeds the limit", e.ID.Short(), e.RawLength)
	}
	if sc == nil {
		sc = &OpenScratch{}
	}
	body, err := c.key.Open(sc.body[:0], sealed, BlobAD(e.Type, e.ID))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", e.ID.Short(), err)
	}
	sc.body = body
	plain := body
	if e.Compressed {
		need := int(e.RawLength) + decodeSlack
		if cap(sc.plain) < need {
			sc.plain = make([]byte, 0, need)
		}
		plain, err = c.dec.DecodeAll(body, sc.plain[:0:need])
		if err != nil {
			return nil, fmt.Errorf("blob %s: decompress: %w", e.ID.Short(), err)
		}
	}
	if len(plain) != int(e.RawLength) {
		return nil, fmt.Errorf("blob %s: length %d, index says %d", e.ID.Short(), len(plain), e.RawLength)
	}
	if c.key.ID(plain) != e.ID {
		return nil, fmt.Errorf("blob %s: content does not match its ID", e.ID.Short())
	}
	return plain, nil
}
