package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestConcurrentCreateUser(t *testing.T) {
	r := newRig(t)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			role := RoleOperator
			if i%2 == 0 {
				role = RoleAdmin
			}
			_, errs[i] = r.s.CreateUser(context.Background(), "alice", alicePassword, role)
		})
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, ErrExists):
			t.Errorf("CreateUser: %v", err)
		}
	}
	if created != 1 {
		t.Errorf("%d of %d concurrent CreateUser of one name succeeded, want 1", created, n)
	}
}

func TestConcurrentEnsureAdmin(t *testing.T) {
	r := newRig(t)
	const n = 8
	results := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var err error
			results[i], err = r.s.EnsureAdmin(context.Background(), fmt.Sprint("admin", i), alicePassword)
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	created := 0
	for _, c := range results {
		if c {
			created++
		}
	}
	if users, err := r.s.Users(); created != 1 || err != nil || len(users) != 1 {
		t.Errorf("%d created, users %+v, %v; want one admin", created, users, err)
	}
}

func TestConcurrentDeleteAdmins(t *testing.T) {
	r := newRig(t)
	for round := range 10 {
		a, b := fmt.Sprint("a", round), fmt.Sprint("b", round)
		r.createUser(t, a, alicePassword, RoleAdmin)
		r.createUser(t, b, alicePassword, RoleAdmin)
		if round > 0 {
			// Leave a and b the only admins.
			if err := r.s.DeleteUser(fmt.Sprint("a", round-1)); err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			if err := r.s.DeleteUser(fmt.Sprint("b", round-1)); err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
		}
		var errA, errB error
		var wg sync.WaitGroup
		wg.Go(func() { errA = r.s.DeleteUser(a) })
		wg.Go(func() { errB = r.s.SetRole(b, RoleOperator) })
		wg.Wait()
		if (errA == nil) == (errB == nil) {
			t.Fatalf("round %d: delete one admin: %v; demote the other: %v; want exactly one refused", round, errA, errB)
		}
		for _, err := range []error{errA, errB} {
			if err != nil && !errors.Is(err, ErrLastAdmin) {
				t.Fatal(err)
			}
		}
		users, err := r.s.Users()
		if err != nil {
			t.Fatal(err)
		}
		admins := 0
		for _, u := range users {
			if u.Role == RoleAdmin {
				admins++
			}
		}
		if admins != 1 {
			t.Fatalf("round %d: %d admins, want 1: %+v", round, admins, users)
		}
		// Make the survivor an admin to delete in the next round.
		if err := r.s.SetRole(b, RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if errA != nil {
			// a survived: b is now a second admin and may go.
			if err := r.s.DeleteUser(b); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestConcurrentUse runs logins, sessions, tokens and audit entries at
// once, for the race detector, and checks that the audit log has no gaps.
func TestConcurrentUse(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.createUser(t, "root", alicePassword, RoleAdmin)
	const workers = 12
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			name := fmt.Sprint("user", i)
			if _, err := r.s.CreateUser(ctx, name, alicePassword, RoleOperator); err != nil {
				t.Error(err)
				return
			}
			for j := range 5 {
				u, err := r.s.Authenticate(ctx, name, alicePassword, fmt.Sprintf("10.0.%d.%d", i, j))
				if err != nil {
					t.Error(err)
					return
				}
				if err := r.s.Audit(AuditEntry{Actor: name, Action: "login", Outcome: OutcomeOK}); err != nil {
					t.Error(err)
				}
				token, _, err := r.s.NewSession(u, "10.0.0.1")
				if err != nil {
					t.Error(err)
					return
				}
				for range 3 {
					if _, err := r.s.Session(token); err != nil {
						t.Error(err)
					}
					r.clock.Add(61e9) // so that sessions and tokens are written
				}
				secret, _, err := r.s.CreateToken(name, TokenSpec{Name: "t", Role: RoleOperator})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.s.TokenPrincipal(secret); err != nil {
					t.Error(err)
				}
				if err := r.s.EndSession(token); err != nil {
					t.Error(err)
				}
				if _, err := r.s.Users(); err != nil {
					t.Error(err)
				}
			}
			if err := r.s.SetPassword(ctx, name, bobPassword); err != nil {
				t.Error(err)
			}
			if _, err := r.s.PurgeExpired(); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				if err := r.s.DeleteUser(name); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	entries, err := r.s.AuditLog(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != workers*5 {
		t.Fatalf("%d audit entries, want %d", len(entries), workers*5)
	}
	for i, e := range entries {
		if want := uint64(len(entries) - i); e.Seq != want {
			t.Fatalf("entry %d has seq %d, want %d", i, e.Seq, want)
		}
	}
	tokens, err := r.s.Tokens("")
	if err != nil || len(tokens) != workers/2*5 {
		t.Errorf("%d tokens, %v; want %d", len(tokens), err, workers/2*5)
	}
}

// TestConcurrentGuesses checks that guesses made at once are held to the
// limit too: with one hashing slot, exactly five are checked.
func TestConcurrentGuesses(t *testing.T) {
	r := newRig(t, func(o *Options) { o.MaxConcurrentHashes = 1 })
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = r.s.Authenticate(context.Background(), "alice", bobPassword, fmt.Sprint("10.0.0.", i))
		})
	}
	wg.Wait()
	checked := 0
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrBadCredentials):
			checked++
		case !errors.Is(err, ErrRateLimited):
			t.Errorf("Authenticate: %v", err)
		}
	}
	if checked != maxFailures {
		t.Errorf("%d of %d concurrent guesses checked, want %d", checked, n, maxFailures)
	}
}
