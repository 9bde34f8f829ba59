package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/bulwarkbackup/bulwark/jobs/statedb"
)

// An AuditEntry records who did what, and with what outcome.
type AuditEntry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`            // the user, or "" if unknown
	Remote  string    `json:"remote,omitempty"` // the client's address
	Action  string    `json:"action"`           // such as "login" or "delete-user"
	Target  string    `json:"target,omitempty"` // what the action was on
	Outcome string    `json:"outcome"`          // OutcomeOK, OutcomeDenied or OutcomeFailed
	Detail  string    `json:"detail,omitempty"`
}

// The outcomes of audited actions.
const (
	OutcomeOK     = "ok"
	OutcomeDenied = "denied" // not allowed to the actor
	OutcomeFailed = "failed"
)

const maxAuditPage = 1000

func auditKey(seq uint64) string { return fmt.Sprintf("%s%016x", auditPrefix, seq) }

// Audit appends e to the audit log, with the next sequence number and the
// current time, and logs it at Info level.
func (s *Store) Audit(e AuditEntry) error {
	if e.Action == "" {
		return fmt.Errorf("audit: %w entry: no action", ErrInvalid)
	}
	switch e.Outcome {
	case OutcomeOK, OutcomeDenied, OutcomeFailed:
	default:
		return fmt.Errorf("audit %s: %w outcome %q", e.Action, ErrInvalid, e.Outcome)
	}
	// Sequence numbers would conflict on every concurrent append; taking
	// turns here saves the retries.
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	e.Time = s.now()
	err := s.update(func(txn *badger.Txn) error {
		var seq uint64
		if err := statedb.Get(txn, auditSeqKey, &seq); err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		e.Seq = seq + 1
		if err := statedb.Set(txn, auditKey(e.Seq), e); err != nil {
			return err
		}
		return statedb.Set(txn, auditSeqKey, e.Seq)
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	s.log.Info("audit", "seq", e.Seq, "time", e.Time, "actor", e.Actor, "remote", e.Remote,
		"action", e.Action, "target", e.Target, "outcome", e.Outcome, "detail", e.Detail)
	return nil
}

// AuditLog returns up to limit entries of the audit log, newest first,
// starting before sequence number before, or with the newest if before is
// 0. To page back, pass the Seq of the last entry returned. Limit is capped
// at 1000; 0 or less means 1000.
func (s *Store) AuditLog(before uint64, limit int) ([]AuditEntry, error) {
	if limit <= 0 || limit > maxAuditPage {
		limit = maxAuditPage
	}
	if before == 1 {
		return nil, nil
	}
	// In reverse, Seek finds the last key at or before the one sought.
	start := []byte(auditPrefix + "~") // after every hex digit
	if before > 1 {
		start = []byte(auditKey(before - 1))
	}
	var entries []AuditEntry
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = []byte(auditPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(start); it.Valid() && len(entries) < limit; it.Next() {
			var e AuditEntry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("decode %s: %w", it.Item().Key(), err)
			}
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return entries, nil
}
