package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// storedExpiry returns the expiry of the session with token as stored.
func (r *rig) storedExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	id, _ := sessionID(token)
	key := sessionPrefix + id
	var rec storedSession
	if err := json.Unmarshal(r.raw(t)[key], &rec); err != nil {
		t.Fatal(err)
	}
	return rec.Expires
}

func TestSessionLifecycle(t *testing.T) {
	r := newRig(t)
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)
	token, sess, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{token, sess.CSRF} {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Errorf("%q: %d bytes, %v; want 32 bytes in base64url", s, len(b), err)
		}
	}
	now := r.clock.Now()
	want := Session{User: "alice", Role: RoleAdmin, CSRF: sess.CSRF, Created: now, Expires: now.Add(12 * time.Hour), Remote: "10.0.0.1"}
	if sess != want {
		t.Fatalf("NewSession = %+v, want %+v", sess, want)
	}
	token2, sess2, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if token2 == token || sess2.CSRF == sess.CSRF {
		t.Error("two sessions share a token")
	}

	got, err := r.s.Session(token)
	if err != nil || got != want {
		t.Fatalf("Session = %+v, %v; want %+v", got, err, want)
	}
	p, err := r.s.SessionPrincipal(token)
	if wantP := (Principal{User: "alice", Role: RoleAdmin, Via: "session", CSRF: sess.CSRF}); err != nil || p != wantP {
		t.Errorf("SessionPrincipal = %+v, %v; want %+v", p, err, wantP)
	}

	for _, bad := range []string{"", "x", token + "A", strings.ToUpper(token), sess.CSRF, token[:42] + "=", "../../user/alice"} {
		_, err := r.s.Session(bad)
		wantErr(t, err, ErrNotFound)
	}
	_, _, err = r.s.NewSession(User{Name: "nobody", Role: RoleAdmin}, "10.0.0.1")
	wantErr(t, err, ErrNotFound)

	r.reopen(t)
	if got, err := r.s.Session(token); err != nil || got != want {
		t.Errorf("after reopen: Session = %+v, %v", got, err)
	}

	if err := r.s.EndSession(token); err != nil {
		t.Fatal(err)
	}
	_, err = r.s.Session(token)
	wantErr(t, err, ErrNotFound)
	if got := err.Error(); got != "session: not found" {
		t.Errorf("error %q", got)
	}
	wantErr(t, r.s.EndSession(token), ErrNotFound)
	if _, err := r.s.Session(token2); err != nil {
		t.Errorf("the other session: %v", err)
	}
}

func TestSessionExpiry(t *testing.T) {
	r := newRig(t, func(o *Options) { o.SessionTTL = time.Hour })
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)
	token, _, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	r.clock.Add(time.Hour - time.Second)
	if _, err := r.s.Session(token); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	r.clock.Add(time.Hour)
	_, err = r.s.Session(token)
	wantErr(t, err, ErrExpired)
	if got := err.Error(); got != "session: expired" {
		t.Errorf("error %q", got)
	}
	// Deleted at once.
	_, err = r.s.Session(token)
	wantErr(t, err, ErrNotFound)
}

func TestSessionSliding(t *testing.T) {
	r := newRig(t, func(o *Options) { o.SessionTTL = time.Hour })
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)
	token, sess, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// Used every 50 minutes, a session of an hour lasts.
	for range 5 {
		r.clock.Add(50 * time.Minute)
		got, err := r.s.Session(token)
		if err != nil {
			t.Fatal(err)
		}
		if want := r.clock.Now().Add(time.Hour); !got.Expires.Equal(want) {
			t.Fatalf("Expires = %v, want %v", got.Expires, want)
		}
		if got.Created != sess.Created {
			t.Fatalf("Created moved: %v", got.Created)
		}
	}
	// Not written more than once a minute.
	written := r.storedExpiry(t, token)
	r.clock.Add(59 * time.Second)
	if _, err := r.s.Session(token); err != nil {
		t.Fatal(err)
	}
	if got := r.storedExpiry(t, token); !got.Equal(written) {
		t.Errorf("stored expiry moved from %v to %v within a minute", written, got)
	}
	r.clock.Add(time.Second)
	if _, err := r.s.Session(token); err != nil {
		t.Fatal(err)
	}
	if got, want := r.storedExpiry(t, token), r.clock.Now().Add(time.Hour); !got.Equal(want) {
		t.Errorf("stored expiry %v after a minute, want %v", got, want)
	}
}

func TestSessionMaxAge(t *testing.T) {
	r := newRig(t, func(o *Options) {
		o.SessionTTL = time.Hour
		o.MaxSessionAge = 3 * time.Hour
	})
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)
	start := r.clock.Now()
	token, _, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.clock.Add(50 * time.Minute)
		sess, err := r.s.Session(token)
		if err != nil {
			t.Fatal(err)
		}
		if sess.Expires.After(start.Add(3 * time.Hour)) {
			t.Fatalf("Expires %v beyond the maximum age", sess.Expires)
		}
	}
	r.clock.Add(30 * time.Minute) // 2h50m + 30m: in use, but too old
	_, err = r.s.Session(token)
	wantErr(t, err, ErrExpired)
}

func TestSessionSeesRoleAtOnce(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	bob := r.createUser(t, "bob", bobPassword, RoleAdmin)
	token, _, err := r.s.NewSession(bob, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.s.SetRole("bob", RoleOperator); err != nil {
		t.Fatal(err)
	}
	p, err := r.s.SessionPrincipal(token)
	if err != nil || p.Role != RoleOperator || p.Allows(RoleAdmin) {
		t.Errorf("after demotion: %+v, %v", p, err)
	}
	// The User given to NewSession may be stale: the stored role counts.
	token2, sess, err := r.s.NewSession(bob, "10.0.0.1")
	if err != nil || sess.Role != RoleOperator {
		t.Errorf("NewSession with a stale User: %+v, %v", sess, err)
	}
	if err := r.s.DeleteUser("bob"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{token, token2} {
		_, err = r.s.Session(tok)
		wantErr(t, err, ErrNotFound)
	}
}

func TestSetPasswordEndsSessions(t *testing.T) {
	r := newRig(t)
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)
	bob := r.createUser(t, "bob", bobPassword, RoleOperator)
	var aliceTokens []string
	for range 2 {
		tok, _, err := r.s.NewSession(alice, "10.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		aliceTokens = append(aliceTokens, tok)
	}
	bobToken, _, err := r.s.NewSession(bob, "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.s.SetPassword(context.Background(), "alice", "another good password"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range aliceTokens {
		_, err := r.s.Session(tok)
		wantErr(t, err, ErrNotFound)
	}
	if _, err := r.s.Session(bobToken); err != nil {
		t.Errorf("another user's session: %v", err)
	}
}

func TestSessionStoredAsHash(t *testing.T) {
	r := newRig(t)
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)
	token, _, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		t.Fatal(err)
	}
	r.reopen(t) // so that the records are in tables as well as in memory
	found := false
	for k, v := range r.raw(t) {
		for _, secret := range [][]byte{[]byte(token), raw} {
			if bytes.Contains([]byte(k), secret) || bytes.Contains(v, secret) {
				t.Errorf("record %s holds the session token", k)
			}
		}
		if k == "auth/session/"+sha256Hex(token) {
			found = true
		}
	}
	if !found {
		t.Error("no record under the hash of the token")
	}
	noSecretInFiles(t, r.dir, token)
}

// noSecretInFiles fails t if a file in dir, as badger wrote it, holds
// secret.
func noSecretInFiles(t *testing.T, dir, secret string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPurgeExpired(t *testing.T) {
	r := newRig(t, func(o *Options) { o.SessionTTL = time.Hour })
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)
	old, _, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	_, oldToken, err := r.s.CreateToken("alice", TokenSpec{Name: "short", Role: RoleOperator, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	forever, _, err := r.s.CreateToken("alice", TokenSpec{Name: "forever", Role: RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	r.clock.Add(30 * time.Minute)
	current, _, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	later, _, err := r.s.CreateToken("alice", TokenSpec{Name: "later", Role: RoleOperator, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.s.PurgeExpired(); n != 0 || err != nil {
		t.Fatalf("PurgeExpired before expiry = %d, %v", n, err)
	}
	r.clock.Add(45 * time.Minute)
	if n, err := r.s.PurgeExpired(); n != 2 || err != nil {
		t.Fatalf("PurgeExpired = %d, %v; want 2", n, err)
	}
	id, _ := sessionID(old)
	key := sessionPrefix + id
	if _, ok := r.raw(t)[key]; ok {
		t.Error("expired session remains")
	}
	_, err = r.s.Token(oldToken.ID)
	wantErr(t, err, ErrNotFound)
	if _, err := r.s.Session(current); err != nil {
		t.Errorf("current session: %v", err)
	}
	for _, secret := range []string{forever, later} {
		if _, err := r.s.VerifyToken(secret); err != nil {
			t.Errorf("current token: %v", err)
		}
	}
}

// TestOwnedIndex checks that the index of a user's sessions and tokens
// lists exactly the live ones, however they end.
func TestOwnedIndex(t *testing.T) {
	r := newRig(t, func(o *Options) { o.SessionTTL = time.Hour })
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)
	bob := r.createUser(t, "bob", bobPassword, RoleOperator)
	newSession := func(u User) string {
		t.Helper()
		token, _, err := r.s.NewSession(u, "10.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		id, _ := sessionID(token)
		return id
	}
	newToken := func(owner string, ttl time.Duration) (string, string) {
		t.Helper()
		secret, tok, err := r.s.CreateToken(owner, TokenSpec{Name: "a", Role: RoleOperator, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return secret, tok.ID
	}
	index := func() []string {
		t.Helper()
		var keys []string
		for k := range r.raw(t) {
			if rest, ok := strings.CutPrefix(k, ownsPrefix); ok && strings.Contains(rest, "/") {
				keys = append(keys, rest)
			}
		}
		slices.Sort(keys)
		return keys
	}

	ended, _, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	expiring, _, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	_, purged := newToken("alice", time.Hour)
	_, revoked := newToken("alice", 0)
	r.clock.Add(30 * time.Minute)
	live := newSession(alice)
	_, liveToken := newToken("alice", 0)
	newSession(bob)
	newToken("bob", 0)

	if err := r.s.EndSession(ended); err != nil {
		t.Fatal(err)
	}
	if err := r.s.RevokeToken(revoked); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(45 * time.Minute)
	if _, err := r.s.Session(expiring); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired session: %v", err)
	}
	if n, err := r.s.PurgeExpired(); n != 1 || err != nil {
		t.Fatalf("PurgeExpired = %d, %v; want 1 (a token)", n, err)
	}
	if _, err := r.s.Token(purged); !errors.Is(err, ErrNotFound) {
		t.Errorf("purged token: %v", err)
	}
	want := []string{"alice/session/" + live, "alice/token/" + liveToken}
	got := index()
	var aliceKeys []string
	for _, k := range got {
		if strings.HasPrefix(k, "alice/") {
			aliceKeys = append(aliceKeys, k)
		}
	}
	slices.Sort(want)
	if !slices.Equal(aliceKeys, want) {
		t.Errorf("index of alice = %v, want %v", aliceKeys, want)
	}

	if err := r.s.DeleteUser("bob"); err != nil {
		t.Fatal(err)
	}
	for k := range r.raw(t) {
		if strings.HasPrefix(k, ownsPrefix+"bob") {
			t.Errorf("key %s remains after deleting bob", k)
		}
	}
	if n := len(index()); n != 2 {
		t.Errorf("index has %d entries after deleting bob, want alice's 2", n)
	}
}
