package auth

import "testing"

// FuzzVerifyPassword feeds arbitrary encodings to VerifyPassword: it must
// never panic, must refuse what decodeHash refuses, and must not match
// with an error.
func FuzzVerifyPassword(f *testing.F) {
	enc, err := HashPassword(alicePassword, tinyArgon)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		enc,
		"",
		"$",
		"$$$$$",
		"$argon2id$v=19$m=64,t=1,p=1$$",
		"$argon2id$v=19$m=64,t=1,p=0$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=4294967295,t=4294967295,p=255$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=,t=,p=$=$=",
		"$argon2id$v=19$m=64,t=1,p=1$\xff\xfe$\x00",
	} {
		f.Add(s, alicePassword)
	}
	f.Fuzz(func(t *testing.T, encoded, password string) {
		p, _, _, decodeErr := decodeHash(encoded)
		// Valid but costly parameters are the point of a hash; thousands
		// of runs of them would only slow the fuzzer down.
		if decodeErr == nil && uint64(p.MemoryKiB)*uint64(p.Time) > 1<<12 {
			t.Skip()
		}
		ok, err := VerifyPassword(encoded, password)
		if (err != nil) != (decodeErr != nil) {
			t.Fatalf("VerifyPassword error %v, decodeHash error %v", err, decodeErr)
		}
		if err != nil && ok {
			t.Fatalf("VerifyPassword = true with error %v", err)
		}
	})
}
