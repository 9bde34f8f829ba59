package crypto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// tinyKDF is the cheapest cost ParseKeyFile accepts.
var tinyKDF = KDFParams{Time: 1, Memory: 8, Threads: 1}

var testPassword = []byte("correct horse battery staple")

// wrapped returns a key and its key file, encoded, made with tinyKDF.
func wrapped(t testing.TB) (*Key, []byte) {
	t.Helper()
	k := testKey(t, 9)
	kf, err := Wrap(k, testPassword, tinyKDF, "host")
	if err != nil {
		t.Fatal(err)
	}
	b, err := kf.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return k, b
}

// edit decodes a key file's JSON, applies fn and re-encodes it.
func edit(t testing.TB, b []byte, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func params(m map[string]any) map[string]any { return m["params"].(map[string]any) }

func TestWrapUnwrap(t *testing.T) {
	k, b := wrapped(t)
	kf, err := ParseKeyFile(b)
	if err != nil {
		t.Fatalf("ParseKeyFile: %v", err)
	}
	if kf.Version != 1 || kf.KDF != "argon2id" || kf.Params != tinyKDF || len(kf.Salt) != 32 || kf.Host != "host" {
		t.Errorf("key file = %+v, want version 1, argon2id, %+v, 32-byte salt, host", kf, tinyKDF)
	}
	if time.Since(kf.Created) > time.Hour || kf.Created.Location() != time.UTC {
		t.Errorf("key file created %v, want now in UTC", kf.Created)
	}
	got, err := kf.Unwrap(testPassword)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got.bytes(), k.bytes()) {
		t.Errorf("Unwrap gave another key")
	}
	if bytes.Contains(b, k.encKey[:]) || bytes.Contains(b, k.idKey[:]) {
		t.Errorf("key file holds the master key in clear")
	}
	// Two wraps of one key use different salts.
	kf2, err := Wrap(k, testPassword, tinyKDF, "")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(kf2.Salt, kf.Salt) || bytes.Equal(kf2.Wrapped, kf.Wrapped) {
		t.Errorf("two wraps share salt or ciphertext")
	}
}

func TestWrapEmptyPassword(t *testing.T) {
	if kf, err := Wrap(testKey(t, 1), nil, tinyKDF, ""); err == nil {
		t.Errorf("Wrap with an empty password = %+v, want an error", kf)
	}
}

func TestUnwrapWrongPassword(t *testing.T) {
	_, b := wrapped(t)
	kf, err := ParseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"", "correct horse battery stapl", "correct horse battery staple ", "Correct horse battery staple"} {
		if k, err := kf.Unwrap([]byte(pw)); !errors.Is(err, ErrWrongPassword) {
			t.Errorf("Unwrap(%q) = %v, %v; want ErrWrongPassword", pw, k, err)
		}
	}
}

// TestUnwrapDamaged: any change to what the wrapping depends on makes the
// password fail, never yields another key.
func TestUnwrapDamaged(t *testing.T) {
	_, b := wrapped(t)
	good, err := ParseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func(kf *KeyFile)
	}{
		{"salt", func(kf *KeyFile) { kf.Salt[0] ^= 1 }},
		{"wrapped first byte", func(kf *KeyFile) { kf.Wrapped[0] ^= 1 }},
		{"wrapped last byte", func(kf *KeyFile) { kf.Wrapped[len(kf.Wrapped)-1] ^= 1 }},
		{"wrapped truncated", func(kf *KeyFile) { kf.Wrapped = kf.Wrapped[:len(kf.Wrapped)-1] }},
		{"wrapped empty", func(kf *KeyFile) { kf.Wrapped = nil }},
		{"time", func(kf *KeyFile) { kf.Params.Time = 2 }},
		{"memory", func(kf *KeyFile) { kf.Params.Memory = 16 }},
		{"threads", func(kf *KeyFile) { kf.Params.Threads = 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kf := *good
			kf.Salt, kf.Wrapped = bytes.Clone(good.Salt), bytes.Clone(good.Wrapped)
			tt.fn(&kf)
			if k, err := kf.Unwrap(testPassword); !errors.Is(err, ErrWrongPassword) {
				t.Errorf("Unwrap = %v, %v; want ErrWrongPassword", k, err)
			}
		})
	}
}

func TestUnwrapUnsupported(t *testing.T) {
	_, b := wrapped(t)
	for _, fn := range []func(kf *KeyFile){
		func(kf *KeyFile) { kf.Version = 2 },
		func(kf *KeyFile) { kf.Version = 0 },
		func(kf *KeyFile) { kf.KDF = "scrypt" },
		func(kf *KeyFile) { kf.KDF = "" },
	} {
		kf, err := ParseKeyFile(b)
		if err != nil {
			t.Fatal(err)
		}
		fn(kf)
		k, err := kf.Unwrap(testPassword)
		if err == nil || errors.Is(err, ErrWrongPassword) {
			t.Errorf("Unwrap of version %d, kdf %q = %v, %v; want an unsupported error", kf.Version, kf.KDF, k, err)
		}
	}
}

func TestParseKeyFile(t *testing.T) {
	_, b := wrapped(t)
	tests := []struct {
		name string
		fn   func(m map[string]any)
		ok   bool
	}{
		{"as written", func(m map[string]any) {}, true},
		{"largest costs", func(m map[string]any) {
			params(m)["time"], params(m)["memory_kib"], params(m)["threads"] = 20, 1<<20, 16
		}, true},
		{"time 0", func(m map[string]any) { params(m)["time"] = 0 }, false},
		{"time 21", func(m map[string]any) { params(m)["time"] = 21 }, false},
		{"time 2^32-1", func(m map[string]any) { params(m)["time"] = 1<<32 - 1 }, false},
		{"time 2^32", func(m map[string]any) { params(m)["time"] = 1 << 32 }, false},
		{"time negative", func(m map[string]any) { params(m)["time"] = -1 }, false},
		{"memory 7", func(m map[string]any) { params(m)["memory_kib"] = 7 }, false},
		{"memory 1GiB+1KiB", func(m map[string]any) { params(m)["memory_kib"] = 1<<20 + 1 }, false},
		{"memory 2^32-1", func(m map[string]any) { params(m)["memory_kib"] = 1<<32 - 1 }, false},
		{"threads 0", func(m map[string]any) { params(m)["threads"] = 0 }, false},
		{"threads 17", func(m map[string]any) { params(m)["threads"] = 17 }, false},
		{"no params", func(m map[string]any) { delete(m, "params") }, false},
		{"params null", func(m map[string]any) { m["params"] = nil }, false},
		{"salt 15 bytes", func(m map[string]any) { m["salt"] = "AAAAAAAAAAAAAAAAAAAA" }, false},
		{"salt 16 bytes", func(m map[string]any) { m["salt"] = "AAAAAAAAAAAAAAAAAAAAAA==" }, true},
		{"salt not base64", func(m map[string]any) { m["salt"] = "!!!!" }, false},
		{"no salt", func(m map[string]any) { delete(m, "salt") }, false},
		{"wrapped not base64", func(m map[string]any) { m["wrapped"] = "%%" }, false},
		{"bad time", func(m map[string]any) { m["created"] = "yesterday" }, false},
		{"version a string", func(m map[string]any) { m["version"] = "1" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := edit(t, b, tt.fn)
			kf, err := ParseKeyFile(in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseKeyFile(%s) = %+v, %v; want ok=%v", in, kf, err, tt.ok)
			}
		})
	}
	for _, in := range []string{"", "null", "[]", "{", `{"version":1}`, "\x00"} {
		if kf, err := ParseKeyFile([]byte(in)); err == nil {
			t.Errorf("ParseKeyFile(%q) = %+v, want an error", in, kf)
		}
	}
}

// TestWrapRejectsUnopenableParams: costs that argon2 panics on, or that
// ParseKeyFile would refuse, must not produce a key file nobody can open.
func TestWrapRejectsUnopenableParams(t *testing.T) {
	k := testKey(t, 1)
	for _, p := range []KDFParams{
		{Time: 0, Memory: 8, Threads: 1},
		{Time: 1, Memory: 8, Threads: 0},
		{Time: 1, Memory: 1, Threads: 1},
		{Time: 101, Memory: 8, Threads: 1},
	} {
		kf, err := func() (kf *KeyFile, err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
					t.Errorf("Wrap with %+v panicked: %v", p, r)
				}
			}()
			return Wrap(k, testPassword, p, "")
		}()
		if err != nil {
			continue // refused: fine
		}
		b, err := kf.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseKeyFile(b); err != nil {
			t.Errorf("Wrap accepted %+v, but its key file cannot be read back: %v", p, err)
		}
	}
}

func FuzzParseKeyFile(f *testing.F) {
	k, b := wrapped(f)
	f.Add(b)
	f.Add(edit(f, b, func(m map[string]any) { m["version"] = 2 }))
	f.Add(edit(f, b, func(m map[string]any) { params(m)["memory_kib"] = 4<<20 + 1 }))
	f.Add(edit(f, b, func(m map[string]any) { params(m)["threads"] = 4 }))
	f.Add(edit(f, b, func(m map[string]any) { m["salt"] = "AAAA" }))
	f.Add([]byte(`{"version":1,"kdf":"argon2id","params":{"time":1,"memory_kib":8,"threads":1},"salt":"AAAAAAAAAAAAAAAAAAAAAA==","wrapped":""}`))
	f.Add([]byte("{}"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := ParseKeyFile(data)
		if err != nil {
			return
		}
		p := kf.Params
		if p.Time < 1 || p.Time > 20 || p.Memory < 8 || p.Memory > 1<<20 || p.Threads < 1 || p.Threads > 16 || len(kf.Salt) < 16 {
			t.Fatalf("ParseKeyFile accepted costs %+v, salt of %d bytes", p, len(kf.Salt))
		}
		// Costs within bounds may still be too dear for a fuzzer: only
		// unwrap cheap ones.
		if p.Time > 2 || p.Memory > 1024 || p.Threads > 4 {
			return
		}
		supported := kf.Version == 1 && kf.KDF == "argon2id"
		if got, err := kf.Unwrap([]byte("not the password")); err == nil {
			t.Fatalf("Unwrap with a wrong password gave key %x", got.bytes())
		} else if supported && !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("Unwrap with a wrong password: %v, want ErrWrongPassword", err)
		}
		got, err := kf.Unwrap(testPassword)
		switch {
		case !supported && err == nil:
			t.Fatalf("Unwrap of version %d, kdf %q succeeded", kf.Version, kf.KDF)
		case err == nil && !bytes.Equal(got.bytes(), k.bytes()):
			t.Fatalf("Unwrap gave a key that is not the wrapped one")
		case err != nil && supported && !errors.Is(err, ErrWrongPassword) && !strings.Contains(err.Error(), "master key"):
			t.Fatalf("Unwrap: unexpected error %v", err)
		}
	})
}
