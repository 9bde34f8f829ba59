package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestTokenLifecycle(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	now := r.clock.Now()
	secret, tok, err := r.s.CreateToken("alice", TokenSpec{Name: "nightly export", Role: RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	format := regexp.MustCompile(`^bwk_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$`)
	m := format.FindStringSubmatch(secret)
	if m == nil {
		t.Fatalf("secret %q does not match %v", secret, format)
	}
	want := Token{ID: m[1], Name: "nightly export", Owner: "alice", Role: RoleOperator, Created: now}
	if tok != want {
		t.Fatalf("CreateToken = %+v, want %+v", tok, want)
	}
	b, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"` + tok.ID + `","name":"nightly export","owner":"alice","role":"operator","created":"2026-03-01T09:00:00Z"}`; string(b) != want {
		t.Errorf("Token as JSON = %s, want %s", b, want)
	}

	r.clock.Add(time.Hour)
	got, err := r.s.VerifyToken(secret)
	want.LastUsed = r.clock.Now()
	if err != nil || got != want {
		t.Fatalf("VerifyToken = %+v, %v; want %+v", got, err, want)
	}
	p, err := r.s.TokenPrincipal(secret)
	if wantP := (Principal{User: "alice", Role: RoleOperator, Via: "token", TokenID: tok.ID}); err != nil || p != wantP {
		t.Errorf("TokenPrincipal = %+v, %v; want %+v", p, err, wantP)
	}
	if got, err := r.s.Token(tok.ID); err != nil || got != want {
		t.Errorf("Token = %+v, %v; want %+v", got, err, want)
	}

	r.clock.Add(time.Minute)
	secret2, tok2, err := r.s.CreateToken("alice", TokenSpec{Name: "vm42 restore", Role: RoleFileRestore, VM: "vm-42", TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if tok2.ID == tok.ID || secret2 == secret {
		t.Fatal("two tokens share an ID or secret")
	}
	if want := r.clock.Now().Add(24 * time.Hour); !tok2.Expires.Equal(want) || tok2.VM != "vm-42" {
		t.Errorf("file-restore token %+v, want expiry %v and VM vm-42", tok2, want)
	}
	p, err = r.s.TokenPrincipal(secret2)
	if err != nil || p.Role != RoleFileRestore || p.VM != "vm-42" || p.Allows(RoleOperator) || !p.Allows(RoleFileRestore) {
		t.Errorf("file-restore principal %+v, %v", p, err)
	}
	tok2.LastUsed = r.clock.Now()

	r.reopen(t)
	tokens, err := r.s.Tokens("alice")
	if err != nil || len(tokens) != 2 || tokens[0] != want || tokens[1] != tok2 {
		t.Errorf("after reopen: Tokens = %+v, %v", tokens, err)
	}
	if _, err := r.s.VerifyToken(secret); err != nil {
		t.Errorf("after reopen: VerifyToken: %v", err)
	}

	if err := r.s.RevokeToken(tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = r.s.VerifyToken(secret)
	wantErr(t, err, ErrNotFound)
	if got := err.Error(); got != "token "+tok.ID+": not found" {
		t.Errorf("error %q", got)
	}
	wantErr(t, r.s.RevokeToken(tok.ID), ErrNotFound)
	_, err = r.s.Token(tok.ID)
	wantErr(t, err, ErrNotFound)
	if _, err := r.s.VerifyToken(secret2); err != nil {
		t.Errorf("the other token: %v", err)
	}
	// A secret given where an ID belongs is not echoed.
	err = r.s.RevokeToken(secret2)
	wantErr(t, err, ErrNotFound)
	if strings.Contains(err.Error(), secret2) {
		t.Errorf("error %q holds the secret", err)
	}
}

func TestTokenSecretRejected(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	secret, tok, err := r.s.CreateToken("alice", TokenSpec{Name: "ci", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	flip := []byte(secret)
	if flip[len(flip)-2] == 'A' {
		flip[len(flip)-2] = 'B'
	} else {
		flip[len(flip)-2] = 'A'
	}
	for _, bad := range []string{
		"",
		string(flip),
		strings.Replace(secret, "bwk_", "bwx_", 1),
		strings.ToUpper(secret),
		secret + "A",
		secret[:len(secret)-1],
		"bwk_" + tok.ID,
		"bwk_" + tok.ID + "_",
		tok.ID,
	} {
		_, err := r.s.VerifyToken(bad)
		wantErr(t, err, ErrNotFound)
	}
	if _, err := r.s.VerifyToken(secret); err != nil {
		t.Errorf("the right secret: %v", err)
	}
}

func TestTokenStoredAsHash(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	secret, tok, err := r.s.CreateToken("alice", TokenSpec{Name: "ci", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := strings.Cut(strings.TrimPrefix(secret, "bwk_"), "_")
	r.reopen(t)
	raw := r.raw(t)
	for k, v := range raw {
		if bytes.Contains(v, []byte(key)) || strings.Contains(k, key) {
			t.Errorf("record %s holds the secret", k)
		}
	}
	if !bytes.Contains(raw["auth/token/"+tok.ID], []byte(sha256Hex(secret))) {
		t.Errorf("token record %s: no hash of the secret", raw["auth/token/"+tok.ID])
	}
	noSecretInFiles(t, r.dir, key)
}

func TestTokenSpecRules(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	const day = 24 * time.Hour
	for _, tt := range []struct {
		name string
		spec TokenSpec
		ok   bool
	}{
		{"admin forever", TokenSpec{Name: "a", Role: RoleAdmin}, true},
		{"operator 10 years", TokenSpec{Name: "a", Role: RoleOperator, TTL: 3650 * day}, true},
		{"operator over 10 years", TokenSpec{Name: "a", Role: RoleOperator, TTL: 3650*day + time.Second}, false},
		{"negative lifetime", TokenSpec{Name: "a", Role: RoleOperator, TTL: -time.Second}, false},
		{"operator with VM", TokenSpec{Name: "a", Role: RoleOperator, VM: "vm-1"}, false},
		{"admin with VM", TokenSpec{Name: "a", Role: RoleAdmin, VM: "vm-1", TTL: day}, false},
		{"file-restore", TokenSpec{Name: "a", Role: RoleFileRestore, VM: "vm-1", TTL: day}, true},
		{"file-restore 90 days", TokenSpec{Name: "a", Role: RoleFileRestore, VM: "vm-1", TTL: 90 * day}, true},
		{"file-restore over 90 days", TokenSpec{Name: "a", Role: RoleFileRestore, VM: "vm-1", TTL: 90*day + time.Second}, false},
		{"file-restore forever", TokenSpec{Name: "a", Role: RoleFileRestore, VM: "vm-1"}, false},
		{"file-restore without VM", TokenSpec{Name: "a", Role: RoleFileRestore, TTL: day}, false},
		{"file-restore VM with newline", TokenSpec{Name: "a", Role: RoleFileRestore, VM: "vm\n1", TTL: day}, false},
		{"no name", TokenSpec{Role: RoleAdmin}, false},
		{"long name", TokenSpec{Name: strings.Repeat("a", 65), Role: RoleAdmin}, false},
		{"name with control character", TokenSpec{Name: "a\x00", Role: RoleAdmin}, false},
		{"name not UTF-8", TokenSpec{Name: "a\xff", Role: RoleAdmin}, false},
		{"name in any script", TokenSpec{Name: "Sicherung für Jörg", Role: RoleAdmin}, true},
		{"no role", TokenSpec{Name: "a"}, false},
		{"unknown role", TokenSpec{Name: "a", Role: "root"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := r.s.CreateToken("alice", tt.spec)
			if tt.ok && err != nil {
				t.Errorf("CreateToken: %v", err)
			}
			if !tt.ok {
				wantErr(t, err, ErrInvalid)
			}
		})
	}
	_, _, err := r.s.CreateToken("nobody", TokenSpec{Name: "a", Role: RoleOperator})
	wantErr(t, err, ErrNotFound)
}

func TestTokenRoleCeiling(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	r.createUser(t, "bob", bobPassword, RoleAdmin)
	r.createUser(t, "olga", alicePassword, RoleOperator)

	_, _, err := r.s.CreateToken("olga", TokenSpec{Name: "a", Role: RoleAdmin})
	wantErr(t, err, ErrInvalid)
	for _, spec := range []TokenSpec{
		{Name: "a", Role: RoleOperator},
		{Name: "a", Role: RoleFileRestore, VM: "vm-1", TTL: time.Hour},
	} {
		if _, _, err := r.s.CreateToken("olga", spec); err != nil {
			t.Errorf("operator creates %s token: %v", spec.Role, err)
		}
	}

	adminSecret, _, err := r.s.CreateToken("bob", TokenSpec{Name: "a", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	restoreSecret, _, err := r.s.CreateToken("bob", TokenSpec{Name: "a", Role: RoleFileRestore, VM: "vm-1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.s.SetRole("bob", RoleOperator); err != nil {
		t.Fatal(err)
	}
	// A token of a demoted owner is demoted with it.
	for secret, want := range map[string]Role{adminSecret: RoleOperator, restoreSecret: RoleFileRestore} {
		p, err := r.s.TokenPrincipal(secret)
		if err != nil || p.Role != want {
			t.Errorf("TokenPrincipal = %+v, %v; want role %s", p, err, want)
		}
	}
	if err := r.s.SetRole("bob", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if p, err := r.s.TokenPrincipal(adminSecret); err != nil || p.Role != RoleAdmin {
		t.Errorf("after promotion: %+v, %v", p, err)
	}
}

func TestTokenExpiry(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	secret, tok, err := r.s.CreateToken("alice", TokenSpec{Name: "a", Role: RoleFileRestore, VM: "vm-1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r.clock.Add(time.Hour - time.Nanosecond)
	if _, err := r.s.VerifyToken(secret); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	r.clock.Add(time.Nanosecond)
	_, err = r.s.VerifyToken(secret)
	wantErr(t, err, ErrExpired)
	// Still listed until purged, so that its owner sees it expired.
	if _, err := r.s.Token(tok.ID); err != nil {
		t.Errorf("expired token: %v", err)
	}
}

func TestTokenLastUsedThrottled(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	secret, tok, err := r.s.CreateToken("alice", TokenSpec{Name: "a", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	stored := func() time.Time {
		t.Helper()
		var rec storedToken
		if err := json.Unmarshal(r.raw(t)["auth/token/"+tok.ID], &rec); err != nil {
			t.Fatal(err)
		}
		return rec.LastUsed
	}
	first := r.clock.Now()
	if _, err := r.s.VerifyToken(secret); err != nil {
		t.Fatal(err)
	}
	if got := stored(); !got.Equal(first) {
		t.Fatalf("LastUsed = %v, want %v", got, first)
	}
	r.clock.Add(59 * time.Second)
	if _, err := r.s.VerifyToken(secret); err != nil {
		t.Fatal(err)
	}
	if got := stored(); !got.Equal(first) {
		t.Errorf("LastUsed written within a minute: %v", got)
	}
	r.clock.Add(time.Second)
	if _, err := r.s.VerifyToken(secret); err != nil {
		t.Fatal(err)
	}
	if got, want := stored(), r.clock.Now(); !got.Equal(want) {
		t.Errorf("LastUsed = %v after a minute, want %v", got, want)
	}
}

func TestNoSecretsInLogsOrErrors(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	secret, _, err := r.s.CreateToken("alice", TokenSpec{Name: "a", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := secret[:len(secret)-4] + "AAAA"
	if wrongSecret == secret {
		wrongSecret = secret[:len(secret)-4] + "BBBB"
	}
	var errs []error
	record := func(_ any, err error) { errs = append(errs, err) }
	record(r.s.Authenticate(ctx, "alice", bobPassword, "10.0.0.1"))
	record(r.s.Authenticate(ctx, "alice", alicePassword, "10.0.0.1"))
	record(r.s.Authenticate(ctx, "bob", bobPassword, "10.0.0.1"))
	record(r.s.Authenticate(ctx, alicePassword, bobPassword, "10.0.0.1")) // a password in the name field
	record(r.s.VerifyToken(secret))
	record(r.s.VerifyToken(wrongSecret))
	record(r.s.VerifyToken(secret + "x"))
	record(r.s.Token(secret))
	errs = append(errs, r.s.RevokeToken(secret))
	record(r.s.CreateUser(ctx, "carol", "weak", RoleOperator))
	_, err = VerifyPassword("$argon2id$v=19$m=64,t=1,p=1$"+alicePassword+"$x", alicePassword)
	errs = append(errs, err)

	logs := r.logs.String()
	if !strings.Contains(logs, "login") || !strings.Contains(logs, "token rejected") {
		t.Fatalf("no logs of logins and tokens:\n%s", logs)
	}
	for _, s := range []string{alicePassword, bobPassword, secret, wrongSecret, "weak"} {
		if strings.Contains(logs, s) {
			t.Errorf("logs hold %q:\n%s", s, logs)
		}
		for _, err := range errs {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("error %q holds %q", err, s)
			}
		}
	}
}
