package crypto

import (
	"bytes"
	"errors"
	"testing"
)

// testKey returns a fixed key, different for each seed.
func testKey(t testing.TB, seed byte) *Key {
	t.Helper()
	raw := make([]byte, 64)
	for i := range raw {
		raw[i] = seed + byte(i)
	}
	k, err := keyFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyFromBytes(t *testing.T) {
	for _, n := range []int{0, 32, 63, 65} {
		if _, err := keyFromBytes(make([]byte, n)); err == nil {
			t.Errorf("keyFromBytes accepted %d bytes", n)
		}
	}
	k := testKey(t, 1)
	if b := k.bytes(); len(b) != 64 || b[0] != 1 || b[63] != 64 {
		t.Errorf("key bytes = %x, want 0102..40", b)
	}
}

func TestSealOpen(t *testing.T) {
	k := testKey(t, 1)
	for _, plain := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("bulwark"), 1000)} {
		ad := []byte("purpose")
		sealed := k.Seal([]byte("prefix"), plain, ad)
		if !bytes.HasPrefix(sealed, []byte("prefix")) || len(sealed) != len("prefix")+len(plain)+Overhead {
			t.Fatalf("Seal of %d bytes gave %d bytes, want prefix + %d", len(plain), len(sealed), len(plain)+Overhead)
		}
		sealed = sealed[len("prefix"):]
		got, err := k.Open([]byte("dst:"), sealed, ad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if want := append([]byte("dst:"), plain...); !bytes.Equal(got, want) {
			t.Fatalf("Open = %q, want %q", got, want)
		}
		if again := k.Seal(nil, plain, ad); bytes.Equal(again, sealed) {
			t.Errorf("two seals of the same plaintext are identical: nonces are not random")
		}
	}
}

func TestOpenRejects(t *testing.T) {
	k := testKey(t, 1)
	ad := []byte("purpose")
	sealed := k.Seal(nil, []byte("the plaintext"), ad)
	for i := range sealed {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(sealed)
			bad[i] ^= bit
			if _, err := k.Open(nil, bad, ad); !errors.Is(err, ErrAuth) {
				t.Errorf("Open with byte %d flipped by %#x: err = %v, want ErrAuth", i, bit, err)
			}
		}
	}
	tests := []struct {
		name   string
		key    *Key
		sealed []byte
		ad     []byte
	}{
		{"wrong key", testKey(t, 2), sealed, ad},
		{"key differing in its ID half only", func() *Key { raw := k.bytes(); raw[40] ^= 1; k2, _ := keyFromBytes(raw); return k2 }(), sealed, ad},
		{"wrong ad", k, sealed, []byte("another purpose")},
		{"no ad", k, sealed, nil},
		{"truncated", k, sealed[:len(sealed)-1], ad},
		{"extended", k, append(bytes.Clone(sealed), 0), ad},
		{"overhead only", k, sealed[:Overhead], ad},
		{"shorter than overhead", k, sealed[:Overhead-1], ad},
		{"empty", k, nil, ad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.Open(nil, tt.sealed, tt.ad)
			if tt.name == "key differing in its ID half only" {
				// The ID half plays no part in sealing.
				if err != nil {
					t.Errorf("Open: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrAuth) {
				t.Errorf("Open = %q, %v; want ErrAuth", got, err)
			}
		})
	}
}

func TestID(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	a, b := []byte("chunk a"), []byte("chunk b")
	if k1.ID(a) != k1.ID(bytes.Clone(a)) {
		t.Error("ID is not deterministic")
	}
	if k1.ID(a) == k1.ID(b) {
		t.Error("different data, same ID")
	}
	if k1.ID(a) == k2.ID(a) {
		t.Error("different keys, same ID: the hash is not keyed")
	}
	if k1.ID(nil).IsZero() {
		t.Error("ID of empty data is the zero ID")
	}
	// IDs are computed with pooled hashers: interleaved use must not mix.
	done := make(chan bool)
	want := k1.ID(a)
	for g := 0; g < 4; g++ {
		go func() {
			ok := true
			for i := 0; i < 200; i++ {
				ok = ok && k1.ID(a) == want && k1.ID(b) != want
			}
			done <- ok
		}()
	}
	for g := 0; g < 4; g++ {
		if !<-done {
			t.Error("concurrent ID calls gave a wrong answer")
		}
	}
}

// FuzzOpen feeds arbitrary bytes to Key.Open. Only messages this test sealed
// may open, and then to their own plaintext.
func FuzzOpen(f *testing.F) {
	k := testKey(f, 1)
	genuine := map[string]string{}
	for i, s := range []struct{ plain, ad string }{{"", ""}, {"hello", "ad"}, {"a longer plaintext of some bytes", "bulwark point v1"}} {
		// Sealed with a fixed nonce, not by Seal: fuzz workers run this
		// setup again and must find the same genuine messages.
		nonce := bytes.Repeat([]byte{byte(i)}, Overhead-k.aead.Overhead())
		sealed := k.aead.Seal(nonce, nonce, []byte(s.plain), []byte(s.ad))
		if got, err := k.Open(nil, sealed, []byte(s.ad)); err != nil || string(got) != s.plain {
			f.Fatalf("hand-sealed message does not open: %q, %v", got, err)
		}
		genuine[string(sealed)+"\x00"+s.ad] = s.plain
		f.Add(sealed, []byte(s.ad))
	}
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, Overhead), []byte("ad"))
	f.Fuzz(func(t *testing.T, sealed, ad []byte) {
		got, err := k.Open(nil, sealed, ad)
		want, ok := genuine[string(sealed)+"\x00"+string(ad)]
		if !ok {
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("Open of %x (ad %q) = %q, %v; want ErrAuth", sealed, ad, got, err)
			}
			return
		}
		if err != nil || string(got) != want {
			t.Fatalf("Open of a genuine message = %q, %v; want %q", got, err, want)
		}
	})
}
