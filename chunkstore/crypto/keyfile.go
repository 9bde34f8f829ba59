package crypto

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// ErrWrongPassword is returned when a password opens no key file.
var ErrWrongPassword = errors.New("wrong password: it opens no key of this store")

// KDFParams are the argon2id costs used to derive a wrapping key.
type KDFParams struct {
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory_kib"`
	Threads uint8  `json:"threads"`
}

// DefaultKDF costs about a quarter second and 64 MiB on a small appliance:
// the RFC 9106 second recommendation, scaled to the 2 cores it has.
var DefaultKDF = KDFParams{Time: 3, Memory: 64 << 10, Threads: 2}

// keyFileVersion is the only key-file layout so far.
const keyFileVersion = 1

var keyFileAD = []byte("bulwark key v1")

// KeyFile is the stored, password-wrapped form of a master key.
type KeyFile struct {
	Version int       `json:"version"`
	KDF     string    `json:"kdf"`
	Params  KDFParams `json:"params"`
	Salt    []byte    `json:"salt"`
	Wrapped []byte    `json:"wrapped"`
	Created time.Time `json:"created"`
	Host    string    `json:"host,omitempty"`
}

// Wrap seals k under a key derived from password.
func Wrap(k *Key, password []byte, p KDFParams, host string) (*KeyFile, error) {
	if len(password) == 0 {
		return nil, errors.New("empty password")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("wrap key: %w", err)
	}
	wk, err := wrappingKey(password, salt, p)
	if err != nil {
		return nil, err
	}
	return &KeyFile{
		Version: keyFileVersion,
		KDF:     "argon2id",
		Params:  p,
		Salt:    salt,
		Wrapped: wk.Seal(nil, k.bytes(), keyFileAD),
		Created: time.Now().UTC(),
		Host:    host,
	}, nil
}

// Unwrap returns the master key in kf, or ErrWrongPassword.
func (kf *KeyFile) Unwrap(password []byte) (*Key, error) {
	if kf.Version != keyFileVersion || kf.KDF != "argon2id" {
		return nil, fmt.Errorf("key file version %d, kdf %q: not supported", kf.Version, kf.KDF)
	}
	wk, err := wrappingKey(password, kf.Salt, kf.Params)
	if err != nil {
		return nil, err
	}
	raw, err := wk.Open(nil, kf.Wrapped, keyFileAD)
	if err != nil {
		return nil, ErrWrongPassword
	}
	return keyFromBytes(raw)
}

// ParseKeyFile decodes a key file, refusing costs that would exhaust the
// machine: the file is read before anything in it can be authenticated.
func ParseKeyFile(data []byte) (*KeyFile, error) {
	var kf KeyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("decode key file: %w", err)
	}
	if err := kf.Params.Validate(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if len(kf.Salt) < 16 {
		return nil, fmt.Errorf("key file: salt of %d bytes is too short", len(kf.Salt))
	}
	return &kf, nil
}

// Validate checks p against bounds that a small appliance can afford: key
// files are read before anything in them can be authenticated, so a planted
// one must not be able to exhaust the machine.
func (p KDFParams) Validate() error {
	switch {
	case p.Time < 1 || p.Time > 20:
		return fmt.Errorf("argon2id time %d out of range 1..20", p.Time)
	case p.Memory < 8 || p.Memory > 1<<20:
		return fmt.Errorf("argon2id memory %d KiB out of range 8 KiB..1 GiB", p.Memory)
	case p.Threads < 1 || p.Threads > 16:
		return fmt.Errorf("argon2id threads %d out of range 1..16", p.Threads)
	}
	return nil
}

// Marshal encodes kf for storage.
func (kf *KeyFile) Marshal() ([]byte, error) { return json.MarshalIndent(kf, "", "  ") }

func wrappingKey(password, salt []byte, p KDFParams) (*Key, error) {
	dk := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, chacha20poly1305.KeySize)
	raw := make([]byte, 64)
	copy(raw, dk) // the ID half is unused for wrapping
	return keyFromBytes(raw)
}
