package auth

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAuditLog(t *testing.T) {
	r := newRig(t)
	first := r.clock.Now()
	for i := 1; i <= 25; i++ {
		e := AuditEntry{Actor: "alice", Remote: "10.0.0.1", Action: "delete-user", Target: fmt.Sprint("user", i), Outcome: OutcomeOK}
		if err := r.s.Audit(e); err != nil {
			t.Fatal(err)
		}
		r.clock.Add(time.Second)
	}
	page := func(before uint64, limit int) []uint64 {
		t.Helper()
		entries, err := r.s.AuditLog(before, limit)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, e := range entries {
			if want := fmt.Sprint("user", e.Seq); e.Target != want {
				t.Errorf("entry %d has target %s, want %s", e.Seq, e.Target, want)
			}
			if want := first.Add(time.Duration(e.Seq-1) * time.Second); !e.Time.Equal(want) {
				t.Errorf("entry %d has time %v, want %v", e.Seq, e.Time, want)
			}
			seqs = append(seqs, e.Seq)
		}
		return seqs
	}
	check := func(before uint64, limit int, want string) {
		t.Helper()
		if got := fmt.Sprint(page(before, limit)); got != want {
			t.Errorf("AuditLog(%d, %d) = %s, want %s", before, limit, got, want)
		}
	}
	check(0, 10, "[25 24 23 22 21 20 19 18 17 16]")
	check(16, 10, "[15 14 13 12 11 10 9 8 7 6]")
	check(6, 10, "[5 4 3 2 1]")
	check(1, 10, "[]")
	check(1000, 2, "[25 24]")
	check(0, 0, fmt.Sprint(page(0, 25)))

	entries, err := r.s.AuditLog(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := AuditEntry{Seq: 25, Time: first.Add(24 * time.Second), Actor: "alice", Remote: "10.0.0.1", Action: "delete-user", Target: "user25", Outcome: OutcomeOK}
	if len(entries) != 1 || entries[0] != want {
		t.Errorf("newest entry %+v, want %+v", entries, want)
	}
	if logs := r.logs.String(); !strings.Contains(logs, "level=INFO msg=audit seq=25 time=2026-03-01T09:00:24.000Z actor=alice remote=10.0.0.1 action=delete-user target=user25 outcome=ok") {
		t.Errorf("entry not logged:\n%s", logs)
	}

	r.reopen(t)
	check(0, 3, "[25 24 23]")
	if err := r.s.Audit(AuditEntry{Actor: "alice", Action: "delete-user", Target: "user26", Outcome: OutcomeDenied}); err != nil {
		t.Fatal(err)
	}
	check(0, 3, "[26 25 24]")
}

func TestAuditLogLimit(t *testing.T) {
	r := newRig(t)
	for range maxAuditPage + 5 {
		if err := r.s.Audit(AuditEntry{Action: "x", Outcome: OutcomeFailed}); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{0, -1, maxAuditPage + 1, 1 << 30} {
		entries, err := r.s.AuditLog(0, limit)
		if err != nil || len(entries) != maxAuditPage || entries[0].Seq != maxAuditPage+5 {
			t.Errorf("AuditLog(0, %d): %d entries, %v; want %d", limit, len(entries), err, maxAuditPage)
		}
	}
}

func TestAuditInvalid(t *testing.T) {
	r := newRig(t)
	for _, e := range []AuditEntry{
		{Outcome: OutcomeOK},
		{Action: "login"},
		{Action: "login", Outcome: "success"},
	} {
		wantErr(t, r.s.Audit(e), ErrInvalid)
	}
	if entries, err := r.s.AuditLog(0, 0); err != nil || len(entries) != 0 {
		t.Errorf("AuditLog = %+v, %v; want nothing", entries, err)
	}
}
