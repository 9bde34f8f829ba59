package auth

import (
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestHashPasswordDefaults(t *testing.T) {
	enc, err := HashPassword(alicePassword, Argon2Params{})
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "$argon2id$v=19$m=65536,t=3,p=2$"
	if !strings.HasPrefix(enc, prefix) {
		t.Fatalf("hash %q does not start with %q", enc, prefix)
	}
	parts := strings.Split(strings.TrimPrefix(enc, prefix), "$")
	if len(parts) != 2 {
		t.Fatalf("hash %q: want salt and hash after the parameters", enc)
	}
	for i, want := range []int{16, 32} {
		b, err := base64.RawStdEncoding.DecodeString(parts[i])
		if err != nil || len(b) != want {
			t.Errorf("part %d of %q: %d bytes, err %v; want %d bytes", i, enc, len(b), err, want)
		}
	}
	if ok, err := VerifyPassword(enc, alicePassword); !ok || err != nil {
		t.Errorf("VerifyPassword(right password) = %v, %v", ok, err)
	}
	if ok, err := VerifyPassword(enc, bobPassword); ok || err != nil {
		t.Errorf("VerifyPassword(wrong password) = %v, %v", ok, err)
	}
	again, err := HashPassword(alicePassword, Argon2Params{})
	if err != nil {
		t.Fatal(err)
	}
	if again == enc {
		t.Error("two hashes of the same password are equal: no random salt")
	}
}

func TestVerifyPassword(t *testing.T) {
	enc, err := HashPassword(alicePassword, tinyArgon)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q does not have the parameters it was made with", enc)
	}
	parts := strings.Split(enc, "$")
	salt, hash := parts[4], parts[5]
	with := func(params, salt, hash string) string {
		return "$argon2id$v=19$" + params + "$" + salt + "$" + hash
	}

	for _, tt := range []struct {
		name, enc, password string
		want                bool
	}{
		{"right", enc, alicePassword, true},
		{"wrong", enc, bobPassword, false},
		{"empty password", enc, "", false},
		{"prefix of password", enc, alicePassword[:len(alicePassword)-1], false},
		{"too long", enc, strings.Repeat("x", 2000), false},
		// The parameters are part of what is verified.
		{"other time", with("m=64,t=2,p=1", salt, hash), alicePassword, false},
		{"other memory", with("m=128,t=1,p=1", salt, hash), alicePassword, false},
		{"other threads", with("m=64,t=1,p=2", salt, hash), alicePassword, false},
		{"other salt", with("m=64,t=1,p=1", "AAAAAAAAAAAAAAAAAAAAAA", hash), alicePassword, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyPassword(tt.enc, tt.password)
			if ok != tt.want || err != nil {
				t.Errorf("VerifyPassword = %v, %v; want %v, nil", ok, err, tt.want)
			}
		})
	}

	for _, tt := range []struct{ name, enc string }{
		{"empty", ""},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"argon2i", strings.Replace(enc, "argon2id", "argon2i", 1)},
		{"version 16", strings.Replace(enc, "v=19", "v=16", 1)},
		{"no version", "$argon2id$m=64,t=1,p=1$" + salt + "$" + hash},
		{"trailing field", enc + "$"},
		{"leading text", "x" + enc},
		{"parameters reordered", with("t=1,m=64,p=1", salt, hash)},
		{"parameter missing", with("m=64,t=1", salt, hash)},
		{"negative", with("m=64,t=-1,p=1", salt, hash)},
		{"time 0", with("m=64,t=0,p=1", salt, hash)},
		{"threads 0", with("m=64,t=1,p=0", salt, hash)},
		{"threads 256", with("m=4096,t=1,p=256", salt, hash)},
		{"memory below 8 KiB per thread", with("m=8,t=1,p=2", salt, hash)},
		{"memory 4 GiB", with("m=4194304,t=1,p=1", salt, hash)},
		{"memory overflows", with("m=99999999999,t=1,p=1", salt, hash)},
		{"time 1000", with("m=64,t=1000,p=1", salt, hash)},
		{"padded salt", with("m=64,t=1,p=1", salt+"==", hash)},
		{"bad base64", with("m=64,t=1,p=1", salt, "!!!!"+hash[4:])},
		{"short hash", with("m=64,t=1,p=1", salt, hash[:8])},
		{"long hash", with("m=64,t=1,p=1", salt, strings.Repeat(hash, 3))},
		{"no salt", with("m=64,t=1,p=1", "", hash)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyPassword(tt.enc, alicePassword)
			if ok || !errors.Is(err, errMalformedHash) {
				t.Errorf("VerifyPassword = %v, %v; want false, a malformed hash error", ok, err)
			}
		})
	}
}

func TestPasswordRules(t *testing.T) {
	for _, tt := range []struct {
		name, password, reason string
	}{
		{"empty", "", "shorter than 12 characters"},
		{"11 characters", "abcdefghijk", "shorter than 12 characters"},
		// 11 characters in 22 bytes: characters count, not bytes.
		{"11 two-byte characters", strings.Repeat("é", 11), "shorter than 12 characters"},
		{"1025 bytes", strings.Repeat("a", 1025), "longer than 1024 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := HashPassword(tt.password, tinyArgon)
			wantErr(t, err, ErrWeakPassword)
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not give the reason %q", err, tt.reason)
			}
		})
	}
	for _, pw := range []string{"abcdefghijkl", strings.Repeat("é", 12), strings.Repeat("a", 1024)} {
		enc, err := HashPassword(pw, tinyArgon)
		if err != nil {
			t.Errorf("HashPassword(%d bytes): %v", len(pw), err)
			continue
		}
		if ok, err := VerifyPassword(enc, pw); !ok || err != nil {
			t.Errorf("VerifyPassword(%d bytes) = %v, %v", len(pw), ok, err)
		}
	}
}

func TestHashPasswordBadParams(t *testing.T) {
	for _, p := range []Argon2Params{
		{Time: 101},
		{MemoryKiB: 2 << 20},
		{MemoryKiB: 8, Threads: 2},
		{KeyLen: 8},
		{KeyLen: 65},
		{SaltLen: 4},
	} {
		if _, err := HashPassword(alicePassword, p); !errors.Is(err, ErrInvalid) {
			t.Errorf("HashPassword with %+v: err = %v, want ErrInvalid", p, err)
		}
	}
}

func TestGeneratePassword(t *testing.T) {
	valid := regexp.MustCompile(`^[A-HJ-NP-Za-km-np-z2-9]{20}$`)
	seen := make(map[string]bool)
	for range 200 {
		pw, err := GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		if !valid.MatchString(pw) {
			t.Fatalf("password %q: want 20 characters without look-alikes", pw)
		}
		if seen[pw] {
			t.Fatalf("password %q generated twice", pw)
		}
		seen[pw] = true
		if err := checkPassword(pw); err != nil {
			t.Fatalf("generated password refused: %v", err)
		}
	}
	if strings.ContainsAny(passwordAlphabet, "0O1lI") {
		t.Errorf("alphabet %q has look-alikes", passwordAlphabet)
	}
}
