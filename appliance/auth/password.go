package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the parameters of argon2id password hashing.
type Argon2Params struct {
	Time      uint32 // passes over the memory
	MemoryKiB uint32
	Threads   uint8
	KeyLen    uint32 // bytes of hash
	SaltLen   uint32 // bytes of random salt
}

// Bounds of the parameters, both for new hashes and for the hashes that
// VerifyPassword reads: a corrupted or hostile hash must not make the
// appliance allocate gigabytes or spin for minutes.
const (
	maxArgonTime   = 100
	maxArgonMemKiB = 1 << 20 // 1 GiB
	minHashLen     = 16
	maxHashLen     = 64
	minSaltLen     = 8
	maxSaltLen     = 64

	minPasswordChars = 12
	maxPasswordBytes = 1024
)

var defaultArgon = Argon2Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 2, KeyLen: 32, SaltLen: 16}

func (p Argon2Params) withDefaults() Argon2Params {
	if p.Time == 0 {
		p.Time = defaultArgon.Time
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = defaultArgon.MemoryKiB
	}
	if p.Threads == 0 {
		p.Threads = defaultArgon.Threads
	}
	if p.KeyLen == 0 {
		p.KeyLen = defaultArgon.KeyLen
	}
	if p.SaltLen == 0 {
		p.SaltLen = defaultArgon.SaltLen
	}
	return p
}

func (p Argon2Params) validate() error {
	switch {
	case p.Time < 1 || p.Time > maxArgonTime:
		return fmt.Errorf("%w time %d: want 1 to %d", ErrInvalid, p.Time, maxArgonTime)
	case p.Threads < 1:
		return fmt.Errorf("%w threads %d: want at least 1", ErrInvalid, p.Threads)
	// Argon2 needs 8 KiB per thread.
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgonMemKiB:
		return fmt.Errorf("%w memory %d KiB: want %d to %d", ErrInvalid, p.MemoryKiB, 8*uint32(p.Threads), maxArgonMemKiB)
	case p.KeyLen < minHashLen || p.KeyLen > maxHashLen:
		return fmt.Errorf("%w hash length %d: want %d to %d bytes", ErrInvalid, p.KeyLen, minHashLen, maxHashLen)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("%w salt length %d: want %d to %d bytes", ErrInvalid, p.SaltLen, minSaltLen, maxSaltLen)
	}
	return nil
}

// checkPassword enforces the length rules for new passwords.
func checkPassword(password string) error {
	// The lower bound counts characters, not bytes, so that a passphrase in
	// any script is held to the same rule; the upper bound counts bytes, as
	// it only bounds the work of hashing.
	if len(password) > maxPasswordBytes {
		return fmt.Errorf("%w: longer than %d bytes", ErrWeakPassword, maxPasswordBytes)
	}
	if utf8.RuneCountInString(password) < minPasswordChars {
		return fmt.Errorf("%w: shorter than %d characters", ErrWeakPassword, minPasswordChars)
	}
	return nil
}

var b64 = base64.RawStdEncoding.Strict()

// HashPassword hashes password with argon2id and a random salt, and returns
// the hash in the PHC string format:
//
//	$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>
//
// with salt and hash in unpadded standard base64. Zero fields of p take the
// defaults: Time 3, MemoryKiB 65536, Threads 2, KeyLen 32, SaltLen 16.
// Passwords shorter than 12 characters or longer than 1024 bytes are
// refused with ErrWeakPassword.
func HashPassword(password string, p Argon2Params) (string, error) {
	if err := checkPassword(password); err != nil {
		return "", err
	}
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	hash := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(hash)), nil
}

// VerifyPassword reports whether password matches encoded, a hash made by
// HashPassword. It takes the parameters from encoded, so hashes made with
// earlier parameters still verify. It returns an error only if encoded is
// malformed.
func VerifyPassword(encoded, password string) (bool, error) {
	p, salt, want, err := decodeHash(encoded)
	if err != nil {
		return false, fmt.Errorf("verify password: %w", err)
	}
	if len(password) > maxPasswordBytes {
		return false, nil // HashPassword made no such hash
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

var errMalformedHash = errors.New("malformed password hash")

// decodeHash parses a PHC string made by HashPassword. The error does not
// quote encoded, which is as good as a password to an offline attacker.
func decodeHash(encoded string) (p Argon2Params, salt, hash []byte, err error) {
	fail := func(what string) (Argon2Params, []byte, []byte, error) {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: %s", errMalformedHash, what)
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return fail("not a PHC string")
	}
	if parts[1] != "argon2id" {
		return fail("not argon2id")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return fail("unsupported version")
	}
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return fail("parameters")
	}
	m, ok1 := param(fields[0], "m=", 32)
	t, ok2 := param(fields[1], "t=", 32)
	threads, ok3 := param(fields[2], "p=", 8)
	if !ok1 || !ok2 || !ok3 {
		return fail("parameters")
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return fail("salt")
	}
	if hash, err = b64.DecodeString(parts[5]); err != nil {
		return fail("hash")
	}
	// Bound the lengths before converting them: a huge length must not wrap
	// into a valid one.
	if len(hash) > maxHashLen || len(salt) > maxSaltLen {
		return fail("hash or salt too long")
	}
	p = Argon2Params{
		Time:      uint32(t),
		MemoryKiB: uint32(m),
		Threads:   uint8(threads),
		KeyLen:    uint32(len(hash)),
		SaltLen:   uint32(len(salt)),
	}
	if err := p.validate(); err != nil {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: %w", errMalformedHash, err)
	}
	return p, salt, hash, nil
}

// param parses "<name><decimal>" into a value of at most bits bits.
func param(s, name string, bits int) (uint64, bool) {
	v, ok := strings.CutPrefix(s, name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, bits)
	return n, err == nil
}

// passwordAlphabet is URL-safe and leaves out characters that look alike
// (0 O o, 1 l I), so that a generated password survives being read aloud
// or copied from a console by hand.
const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"

// GeneratePassword returns a random password of 20 characters, for the
// first admin or a reset.
func GeneratePassword() (string, error) {
	const n = 20
	// Take bytes below the largest multiple of the alphabet's size, so that
	// every character is equally likely.
	const limit = 256 - 256%len(passwordAlphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, passwordAlphabet[int(b)%len(passwordAlphabet)])
			}
		}
	}
	return string(out), nil
}
