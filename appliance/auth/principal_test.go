package auth

import (
	"testing"
	"time"
)

func TestAllows(t *testing.T) {
	roles := []Role{RoleAdmin, RoleOperator, RoleFileRestore, "", "root"}
	allowed := map[Role][]Role{
		RoleAdmin:       {RoleAdmin, RoleOperator, RoleFileRestore},
		RoleOperator:    {RoleOperator, RoleFileRestore},
		RoleFileRestore: {RoleFileRestore},
	}
	for _, have := range roles {
		for _, need := range roles {
			want := false
			for _, r := range allowed[have] {
				want = want || r == need
			}
			if got := (Principal{Role: have}).Allows(need); got != want {
				t.Errorf("%q allows %q = %v, want %v", have, need, got, want)
			}
		}
	}
}

func TestRoleValid(t *testing.T) {
	for r, want := range map[Role]bool{RoleAdmin: true, RoleOperator: true, RoleFileRestore: true, "": false, "Admin": false} {
		if got := r.Valid(); got != want {
			t.Errorf("Role(%q).Valid() = %v", r, got)
		}
	}
}

func TestOpenOptions(t *testing.T) {
	r := newRig(t)
	if _, err := Open(nil, Options{}); err == nil {
		t.Error("Open without a database succeeded")
	}
	for _, o := range []Options{
		{SessionTTL: -1},
		{MaxSessionAge: -1},
		{MaxConcurrentHashes: -1},
		{Argon: Argon2Params{MemoryKiB: 1 << 30}},
	} {
		if _, err := Open(r.db, o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
	s, err := Open(r.db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.argon != defaultArgon || s.sessionTTL != 12*time.Hour || s.maxSessionAge != 7*24*time.Hour || cap(s.hashes) != 2 {
		t.Errorf("defaults: %+v %v %v %d", s.argon, s.sessionTTL, s.maxSessionAge, cap(s.hashes))
	}
}
