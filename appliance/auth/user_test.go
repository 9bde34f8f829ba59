package auth

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUserLifecycle(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	created := r.clock.Now()
	alice := r.createUser(t, "alice", alicePassword, RoleAdmin)
	want := User{Name: "alice", Role: RoleAdmin, Created: created, Updated: created}
	if alice != want {
		t.Fatalf("CreateUser = %+v, want %+v", alice, want)
	}
	r.clock.Add(time.Minute)
	r.createUser(t, "bob@example.com", bobPassword, RoleOperator)
	r.createUser(t, "Carol_1", alicePassword, RoleOperator)

	_, err := r.s.CreateUser(ctx, "alice", bobPassword, RoleOperator)
	wantErr(t, err, ErrExists)
	if got := err.Error(); got != "create user alice: already exists" {
		t.Errorf("error %q", got)
	}

	got, err := r.s.User("alice")
	if err != nil || got != want {
		t.Fatalf("User(alice) = %+v, %v; want %+v", got, err, want)
	}
	_, err = r.s.User("dave")
	wantErr(t, err, ErrNotFound)
	if got := err.Error(); got != "user dave: not found" {
		t.Errorf("error %q", got)
	}

	users, err := r.s.Users()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	if want := []string{"Carol_1", "alice", "bob@example.com"}; !slices.Equal(names, want) {
		t.Errorf("Users = %v, want %v", names, want)
	}

	r.clock.Add(time.Minute)
	if err := r.s.SetRole("bob@example.com", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	bob, err := r.s.User("bob@example.com")
	if err != nil || bob.Role != RoleAdmin || !bob.Updated.Equal(r.clock.Now()) || bob.Created.Equal(bob.Updated) {
		t.Errorf("after SetRole: %+v, %v", bob, err)
	}
	wantErr(t, r.s.SetRole("bob@example.com", RoleFileRestore), ErrInvalid)
	wantErr(t, r.s.SetRole("dave", RoleOperator), ErrNotFound)

	if err := r.s.SetPassword(ctx, "alice", "a new password for alice"); err != nil {
		t.Fatal(err)
	}
	_, err = r.s.Authenticate(ctx, "alice", alicePassword, "10.0.0.1")
	wantErr(t, err, ErrBadCredentials)
	if _, err := r.s.Authenticate(ctx, "alice", "a new password for alice", "10.0.0.1"); err != nil {
		t.Errorf("log in with the new password: %v", err)
	}
	wantErr(t, r.s.SetPassword(ctx, "alice", "short"), ErrWeakPassword)
	wantErr(t, r.s.SetPassword(ctx, "dave", alicePassword), ErrNotFound)

	if err := r.s.DeleteUser("Carol_1"); err != nil {
		t.Fatal(err)
	}
	_, err = r.s.User("Carol_1")
	wantErr(t, err, ErrNotFound)
	wantErr(t, r.s.DeleteUser("Carol_1"), ErrNotFound)

	r.reopen(t)
	users, err = r.s.Users()
	if err != nil || len(users) != 2 || users[0].Name != "alice" || users[1] != bob {
		t.Errorf("after reopen: Users = %+v, %v", users, err)
	}
	if _, err := r.s.Authenticate(ctx, "alice", "a new password for alice", "10.0.0.1"); err != nil {
		t.Errorf("after reopen: log in: %v", err)
	}
}

func TestCreateUserInvalid(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for _, name := range []string{
		"", ".alice", "-alice", "al ice", "alice/bob", "alice\n", "ålice", "alice:x", strings.Repeat("a", 65),
	} {
		_, err := r.s.CreateUser(ctx, name, alicePassword, RoleAdmin)
		wantErr(t, err, ErrInvalid)
	}
	for _, name := range []string{"a", "A.b_c@d-e", "0", strings.Repeat("a", 64), "alice."} {
		if _, err := r.s.CreateUser(ctx, name, alicePassword, RoleOperator); err != nil {
			t.Errorf("CreateUser(%q): %v", name, err)
		}
	}
	for _, role := range []Role{RoleFileRestore, "", "root"} {
		_, err := r.s.CreateUser(ctx, "eve", alicePassword, role)
		wantErr(t, err, ErrInvalid)
	}
	_, err := r.s.CreateUser(ctx, "eve", "short", RoleOperator)
	wantErr(t, err, ErrWeakPassword)
	if _, err := r.s.User("eve"); err == nil {
		t.Error("a refused user was created")
	}
}

func TestUserHashStoredNotShown(t *testing.T) {
	r := newRig(t)
	u := r.createUser(t, "alice", alicePassword, RoleAdmin)
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"alice","role":"admin","created":"2026-03-01T09:00:00Z","updated":"2026-03-01T09:00:00Z"}`; string(b) != want {
		t.Errorf("User as JSON = %s, want %s", b, want)
	}
	raw := r.raw(t)["auth/user/alice"]
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	hash, _ := rec["hash"].(string)
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("stored record %s: no argon2id hash", raw)
	}
	if strings.Contains(string(raw), alicePassword) {
		t.Error("the password is stored in the clear")
	}
}

func TestLastAdmin(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	r.createUser(t, "olga", alicePassword, RoleOperator)

	err := r.s.SetRole("alice", RoleOperator)
	wantErr(t, err, ErrLastAdmin)
	if got := err.Error(); got != "set role of alice: the last admin cannot be deleted or demoted" {
		t.Errorf("error %q", got)
	}
	wantErr(t, r.s.DeleteUser("alice"), ErrLastAdmin)
	if err := r.s.SetRole("alice", RoleAdmin); err != nil {
		t.Errorf("setting the role an admin has: %v", err)
	}
	if err := r.s.DeleteUser("olga"); err != nil {
		t.Errorf("delete an operator: %v", err)
	}

	r.createUser(t, "bob", bobPassword, RoleAdmin)
	if err := r.s.SetRole("alice", RoleOperator); err != nil {
		t.Fatalf("demote one of two admins: %v", err)
	}
	wantErr(t, r.s.DeleteUser("bob"), ErrLastAdmin)
	wantErr(t, r.s.SetRole("bob", RoleOperator), ErrLastAdmin)
	if err := r.s.DeleteUser("alice"); err != nil {
		t.Fatalf("delete an operator that was admin: %v", err)
	}
	if u, err := r.s.User("bob"); err != nil || u.Role != RoleAdmin {
		t.Errorf("the last admin: %+v, %v", u, err)
	}
}

func TestEnsureAdmin(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	_, err := r.s.EnsureAdmin(ctx, "admin", "short")
	wantErr(t, err, ErrWeakPassword)

	created, err := r.s.EnsureAdmin(ctx, "admin", alicePassword)
	if err != nil || !created {
		t.Fatalf("first EnsureAdmin = %v, %v; want true", created, err)
	}
	u, err := r.s.Authenticate(ctx, "admin", alicePassword, "127.0.0.1")
	if err != nil || u.Role != RoleAdmin {
		t.Fatalf("log in as the first admin: %+v, %v", u, err)
	}
	if created, err := r.s.EnsureAdmin(ctx, "root", bobPassword); err != nil || created {
		t.Errorf("second EnsureAdmin = %v, %v; want false", created, err)
	}
	// A store with users needs no valid first admin.
	if created, err := r.s.EnsureAdmin(ctx, "", ""); err != nil || created {
		t.Errorf("EnsureAdmin with users and no name = %v, %v; want false", created, err)
	}
	r.reopen(t)
	if created, err := r.s.EnsureAdmin(ctx, "admin", bobPassword); err != nil || created {
		t.Errorf("EnsureAdmin after reopen = %v, %v; want false", created, err)
	}
	if _, err := r.s.Authenticate(ctx, "admin", alicePassword, "127.0.0.1"); err != nil {
		t.Errorf("EnsureAdmin changed the password: %v", err)
	}
	users, err := r.s.Users()
	if err != nil || len(users) != 1 {
		t.Errorf("Users = %+v, %v; want the first admin only", users, err)
	}
}

func TestEnsureAdminWithOperatorOnly(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "olga", alicePassword, RoleOperator)
	if created, err := r.s.EnsureAdmin(context.Background(), "admin", alicePassword); err != nil || created {
		t.Errorf("EnsureAdmin = %v, %v; want false, as a user exists", created, err)
	}
}

func TestDeleteUserDeletesSessionsAndTokens(t *testing.T) {
	r := newRig(t)
	r.createUser(t, "alice", alicePassword, RoleAdmin)
	bob := r.createUser(t, "bob", bobPassword, RoleOperator)
	alice, _ := r.s.User("alice")
	aliceSession, _, err := r.s.NewSession(alice, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	bobSession, _, err := r.s.NewSession(bob, "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	bobSecret, bobToken, err := r.s.CreateToken("bob", TokenSpec{Name: "ci", Role: RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	aliceSecret, _, err := r.s.CreateToken("alice", TokenSpec{Name: "ci", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}

	if err := r.s.DeleteUser("bob"); err != nil {
		t.Fatal(err)
	}
	_, err = r.s.Session(bobSession)
	wantErr(t, err, ErrNotFound)
	_, err = r.s.VerifyToken(bobSecret)
	wantErr(t, err, ErrNotFound)
	_, err = r.s.Token(bobToken.ID)
	wantErr(t, err, ErrNotFound)
	for key := range r.raw(t) {
		if strings.Contains(key, bobToken.ID) {
			t.Errorf("key %s of a deleted user's token remains", key)
		}
	}
	if _, err := r.s.Session(aliceSession); err != nil {
		t.Errorf("another user's session: %v", err)
	}
	if _, err := r.s.VerifyToken(aliceSecret); err != nil {
		t.Errorf("another user's token: %v", err)
	}

	// A user of the same name is someone else.
	r.createUser(t, "bob", bobPassword, RoleOperator)
	_, err = r.s.VerifyToken(bobSecret)
	wantErr(t, err, ErrNotFound)
}
