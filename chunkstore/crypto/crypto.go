// Package crypto holds the store's keys: the master key that seals every blob
// (XChaCha20-Poly1305, whose random 192-bit nonces are safe for any number of
// blobs), the key of the chunk-ID hash (keyed BLAKE3, so IDs reveal nothing of
// the plaintext), and the key files that wrap the master key with a password.
package crypto

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
)

// Overhead is what sealing adds to a plaintext: nonce and tag.
const Overhead = chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// ErrAuth reports a sealed message that failed authentication: it was
// damaged, or sealed with another key or for another purpose.
var ErrAuth = errors.New("authentication failed (data damaged or wrong key)")

// Key is a store's master key.
type Key struct {
	encKey [32]byte
	idKey  [32]byte
	aead   cipher.AEAD
	hashes sync.Pool
}

// NewKey returns a fresh random master key.
func NewKey() (*Key, error) {
	var raw [64]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("new key: %w", err)
	}
	return keyFromBytes(raw[:])
}

func keyFromBytes(raw []byte) (*Key, error) {
	if len(raw) != 64 {
		return nil, fmt.Errorf("master key: want 64 bytes, have %d", len(raw))
	}
	k := &Key{}
	copy(k.encKey[:], raw[:32])
	copy(k.idKey[:], raw[32:])
	aead, err := chacha20poly1305.NewX(k.encKey[:])
	if err != nil {
		return nil, err
	}
	k.aead = aead
	k.hashes.New = func() any {
		h, err := blake3.NewKeyed(k.idKey[:])
		if err != nil {
			panic(err) // the key is always 32 bytes
		}
		return h
	}
	return k, nil
}

func (k *Key) bytes() []byte {
	b := make([]byte, 0, 64)
	b = append(b, k.encKey[:]...)
	return append(b, k.idKey[:]...)
}

// ID returns the keyed hash of data: the ID of the blob whose plaintext it is.
func (k *Key) ID(data []byte) blob.ID {
	h := k.hashes.Get().(*blake3.Hasher)
	h.Reset()
	_, _ = h.Write(data)
	var id blob.ID
	h.Sum(id[:0])
	k.hashes.Put(h)
	return id
}

// Seal appends the sealed form of plaintext to dst: a random nonce, then the
// ciphertext and tag. ad binds the message to its purpose and name.
func (k *Key) Seal(dst, plaintext, ad []byte) []byte {
	var nonce [chacha20poly1305.NonceSizeX]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // never on Linux
	}
	dst = append(dst, nonce[:]...)
	return k.aead.Seal(dst, nonce[:], plaintext, ad)
}

// Open authenticates and decrypts a message made by Seal, appending the
// plaintext to dst.
func (k *Key) Open(dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("sealed message of %d bytes is shorter than its overhead: %w", len(sealed), ErrAuth)
	}
	n := chacha20poly1305.NonceSizeX
	out, err := k.aead.Open(dst, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}
