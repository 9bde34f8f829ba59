package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAuthenticate(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)

	u, err := r.s.Authenticate(ctx, "alice", alicePassword, "10.0.0.1")
	if err != nil || u != alice {
		t.Fatalf("Authenticate = %+v, %v; want %+v", u, err, alice)
	}

	_, wrong := r.s.Authenticate(ctx, "alice", bobPassword, "10.0.0.1")
	wantErr(t, wrong, ErrBadCredentials)
	_, unknown := r.s.Authenticate(ctx, "bob", alicePassword, "10.0.0.1")
	wantErr(t, unknown, ErrBadCredentials)
	// Nothing tells an unknown user from a wrong password.
	if a, b := strings.Replace(wrong.Error(), "alice", "bob", 1), unknown.Error(); a != b {
		t.Errorf("errors differ: %q and %q", a, b)
	}
	_, err = r.s.Authenticate(ctx, "alice", "", "10.0.0.1")
	wantErr(t, err, ErrBadCredentials)
	_, err = r.s.Authenticate(ctx, strings.Repeat("x", 10000), alicePassword, "10.0.0.1")
	wantErr(t, err, ErrBadCredentials)
	if strings.Contains(err.Error(), "xxx") {
		t.Errorf("error %q echoes an invalid user name", err)
	}
	if n := r.s.byName.len(); n != 2 {
		t.Errorf("%d user names counted, want 2 (alice, bob)", n)
	}

	// The reason for a failure is logged, not told.
	logs := r.logs.String()
	for _, want := range []string{
		`level=INFO msg="login failed" user=alice remote=10.0.0.1 reason="wrong password"`,
		`level=INFO msg="login failed" user="" remote=10.0.0.1 reason="unknown user"`, // the name may be a misplaced secret
		`level=INFO msg="login failed" user="" remote=10.0.0.1 reason="invalid user name"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	// The audit log is the caller's.
	if entries, err := r.s.AuditLog(0, 0); err != nil || len(entries) != 0 {
		t.Errorf("AuditLog = %+v, %v; want nothing", entries, err)
	}
}

// holdHashSlots takes all password hashing slots of s, so that whatever
// would hash blocks, until release is called.
func holdHashSlots(s *Store) (release func()) {
	for range cap(s.hashes) {
		s.hashes <- struct{}{}
	}
	return func() {
		for range cap(s.hashes) {
			<-s.hashes
		}
	}
}

func TestAuthenticateWaitsForHashSlot(t *testing.T) {
	r := newRig(t, func(o *Options) { o.MaxConcurrentHashes = 1 })
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	release := holdHashSlots(r.s)
	defer release()
	// Known and unknown users alike wait for a slot to hash in, and give up
	// when their context ends.
	for _, name := range []string{"alice", "bob"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := r.s.Authenticate(ctx, name, alicePassword, "10.0.0.1")
		cancel()
		wantErr(t, err, context.DeadlineExceeded)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.s.CreateUser(ctx, "carol", alicePassword, RoleOperator)
	wantErr(t, err, context.Canceled)
}

func rateLimited(t *testing.T, err error) time.Duration {
	t.Helper()
	var rle *RateLimitError
	if !errors.As(err, &rle) || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("err = %v, want a RateLimitError", err)
	}
	return rle.RetryAfter
}

func TestRateLimitByName(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	// Each attempt from another address, so that only the name counts.
	attempts := 0
	login := func(password string) error {
		attempts++
		_, err := r.s.Authenticate(context.Background(), "alice", password, fmt.Sprintf("10.0.%d.%d", attempts/256, attempts%256))
		return err
	}

	for range 4 {
		wantErr(t, login(bobPassword), ErrBadCredentials)
		r.clock.Add(time.Minute)
	}
	wantErr(t, login(bobPassword), ErrBadCredentials) // the fifth in 15 minutes
	if logs := r.logs.String(); !strings.Contains(logs, `user=alice remote=10.0.0.5 reason="wrong password" lockout=30s`) {
		t.Errorf("lockout not logged:\n%s", logs)
	}
	err := login(alicePassword)
	if d := rateLimited(t, err); d != 30*time.Second {
		t.Errorf("RetryAfter = %v, want 30s", d)
	}
	if got := err.Error(); got != "log in as alice: too many failed logins: retry in 30s" {
		t.Errorf("error %q", got)
	}
	r.clock.Add(10 * time.Second)
	// Refused without checking the password: no hashing slot is needed.
	release := holdHashSlots(r.s)
	d := rateLimited(t, login(alicePassword))
	release()
	if d != 20*time.Second {
		t.Errorf("RetryAfter = %v, want 20s", d)
	}
	r.clock.Add(20 * time.Second)
	if err := login(alicePassword); err != nil {
		t.Fatalf("log in after the lockout: %v", err)
	}

	// A success cleared the count.
	for range 4 {
		wantErr(t, login(bobPassword), ErrBadCredentials)
	}
	if err := login(alicePassword); err != nil {
		t.Fatalf("log in after 4 failures: %v", err)
	}

	// Each failure after a lockout locks out again, twice as long, up to
	// 15 minutes.
	for range 5 {
		wantErr(t, login(bobPassword), ErrBadCredentials)
	}
	for _, want := range []time.Duration{
		30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute,
	} {
		if d := rateLimited(t, login(alicePassword)); d != want {
			t.Fatalf("RetryAfter = %v, want %v", d, want)
		}
		r.clock.Add(want)
		wantErr(t, login(bobPassword), ErrBadCredentials)
	}

	// After 15 quiet minutes after a lockout, failures count from 0.
	r.clock.Add(15*time.Minute + 15*time.Minute)
	for range 4 {
		wantErr(t, login(bobPassword), ErrBadCredentials)
	}
	if err := login(alicePassword); err != nil {
		t.Fatalf("log in after a quiet time and 4 failures: %v", err)
	}
}

func TestRateLimitWindow(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	// Five failures, but never five within 15 minutes.
	for i := range 10 {
		_, err := r.s.Authenticate(context.Background(), "alice", bobPassword, "10.0.0.1")
		wantErr(t, err, ErrBadCredentials)
		if i%4 == 3 {
			r.clock.Add(15 * time.Minute)
		} else {
			r.clock.Add(time.Minute)
		}
	}
	if _, err := r.s.Authenticate(context.Background(), "alice", alicePassword, "10.0.0.1"); err != nil {
		t.Fatalf("log in: %v", err)
	}
}

func TestRateLimitByAddress(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	// Guessing at five users from one address locks the address out.
	for i := range 5 {
		_, err := r.s.Authenticate(ctx, fmt.Sprintf("user%d", i), bobPassword, "192.0.2.7:50000")
		wantErr(t, err, ErrBadCredentials)
	}
	_, err := r.s.Authenticate(ctx, "alice", alicePassword, "192.0.2.7:50001")
	if d := rateLimited(t, err); d != 30*time.Second {
		t.Errorf("RetryAfter = %v, want 30s", d)
	}
	if _, err := r.s.Authenticate(ctx, "alice", alicePassword, "192.0.2.8"); err != nil {
		t.Errorf("log in from another address: %v", err)
	}

	// A success does not clear the address: the next failure locks it out
	// again, for longer.
	r.clock.Add(30 * time.Second)
	if _, err := r.s.Authenticate(ctx, "alice", alicePassword, "192.0.2.7"); err != nil {
		t.Fatalf("log in after the lockout: %v", err)
	}
	_, err = r.s.Authenticate(ctx, "alice", bobPassword, "192.0.2.7")
	wantErr(t, err, ErrBadCredentials)
	_, err = r.s.Authenticate(ctx, "alice", alicePassword, "192.0.2.7")
	if d := rateLimited(t, err); d != time.Minute {
		t.Errorf("RetryAfter = %v, want 1m", d)
	}

	// Invalid user names count for the address.
	for range 5 {
		_, err := r.s.Authenticate(ctx, "no such/user", bobPassword, "2001:db8::1")
		wantErr(t, err, ErrBadCredentials)
	}
	// The address's /64 is locked out.
	_, err = r.s.Authenticate(ctx, "alice", alicePassword, "[2001:db8::2:1]:443")
	rateLimited(t, err)
}

func TestAddressKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"192.0.2.7:443", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7"},
		{"2001:db8::1", "2001:db8::/64"},
		{"[2001:db8::ffff:1]:443", "2001:db8::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"2001:db8:0:1::1", "2001:db8:0:1::/64"},
		{"@", "@"},
		{"", ""},
	} {
		if got := addressKey(tt.in); got != tt.want {
			t.Errorf("addressKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLimiterBound(t *testing.T) {
	l := newLimiter(maxLimiterKeys)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for range maxFailures {
		l.fail("locked", now)
		l.fail("touched", now)
	}
	if l.locked("locked", now) == 0 || l.locked("touched", now) == 0 {
		t.Fatal("keys not locked out after 5 failures")
	}
	for i := range maxLimiterKeys + 100 {
		now = now.Add(time.Millisecond)
		l.fail(fmt.Sprint(i), now)
		if i == maxLimiterKeys/2 {
			l.fail("touched", now)
		}
		if n := l.len(); n > maxLimiterKeys {
			t.Fatalf("%d keys kept, want at most %d", n, maxLimiterKeys)
		}
	}
	if l.locked("locked", now) != 0 {
		t.Error("the key that failed least recently was not forgotten")
	}
	if l.locked("touched", now) == 0 {
		t.Error("a key that failed recently was forgotten")
	}
	if l.locked(fmt.Sprint(maxLimiterKeys+99), now) != 0 {
		t.Error("a key with one failure is locked out")
	}
}

func TestLockoutFor(t *testing.T) {
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute}
	for i, w := range want {
		if got := lockoutFor(i + 1); got != w {
			t.Errorf("lockoutFor(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := lockoutFor(1000); got != maxLockout {
		t.Errorf("lockoutFor(1000) = %v", got)
	}
}
