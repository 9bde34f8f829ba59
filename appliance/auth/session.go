package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/bulwarkbackup/bulwark/jobs/statedb"
)

// A Session is a logged-in user of the web interface.
type Session struct {
	User    string    `json:"user"`
	Role    Role      `json:"role"` // the user's role now, not at login
	CSRF    string    `json:"csrf"` // to be sent back with each unsafe request
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Remote  string    `json:"remote"` // where the session was created from
}

// storedSession is a Session as stored. It keeps no role, so that a change
// of the user's role applies to the session at once.
type storedSession struct {
	User    string    `json:"user"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Remote  string    `json:"remote"`
}

func (r storedSession) session(role Role) Session {
	return Session{User: r.User, Role: role, CSRF: r.CSRF, Created: r.Created, Expires: r.Expires, Remote: r.Remote}
}

const (
	sessionTokenBytes = 32

	// slideEvery bounds how often the use of a session moves its expiry,
	// so that requests are not each a database write.
	slideEvery = time.Minute
)

// sessionID returns the ID of the session with token, the hex SHA-256 of
// the token: stored under it, a session cannot be used by someone with a
// copy of the database. A token that cannot be one of ours has no ID.
func sessionID(token string) (string, bool) {
	if base64.RawURLEncoding.DecodedLen(len(token)) != sessionTokenBytes {
		return "", false
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(token); err != nil {
		return "", false
	}
	return sha256Hex(token), true
}

// sessionEnd returns the expiry of a session created at created and used
// at now.
func (s *Store) sessionEnd(created, now time.Time) time.Time {
	end := now.Add(s.sessionTTL)
	if last := created.Add(s.maxSessionAge); last.Before(end) {
		return last
	}
	return end
}

// NewSession starts a session for u, logged in from remote, and returns
// its token, for the session cookie.
func (s *Store) NewSession(u User, remote string) (token string, sess Session, err error) {
	if token, err = randomString(sessionTokenBytes); err != nil {
		return "", Session{}, fmt.Errorf("new session for %s: %w", u.Name, err)
	}
	csrf, err := randomString(32)
	if err != nil {
		return "", Session{}, fmt.Errorf("new session for %s: %w", u.Name, err)
	}
	id, _ := sessionID(token)
	now := s.now()
	rec := storedSession{User: u.Name, CSRF: csrf, Created: now, Expires: s.sessionEnd(now, now), Remote: remote}
	err = s.update(func(txn *badger.Txn) error {
		// The role comes from the stored user, not from u, which may be
		// stale; and a deleted user gets no session.
		cur, err := getUser(txn, u.Name)
		if err != nil {
			return fmt.Errorf("user %s: %w", u.Name, err)
		}
		sess = rec.session(cur.Role)
		if err := statedb.Set(txn, sessionPrefix+id, rec); err != nil {
			return err
		}
		return addOwned(txn, u.Name, ownSession, id)
	})
	if err != nil {
		return "", Session{}, fmt.Errorf("new session for %s: %w", u.Name, err)
	}
	return token, sess, nil
}

// Session returns the session with token, with the current role of its
// user. Using a session moves its expiry to SessionTTL from now, but not
// beyond MaxSessionAge from its start. An expired session is deleted and
// reported as ErrExpired, after which it is not found; a session of a
// deleted user is not found.
func (s *Store) Session(token string) (Session, error) {
	id, ok := sessionID(token)
	if !ok {
		return Session{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	key := sessionPrefix + id
	now := s.now()
	var sess Session
	var outcome error // reported after committing the deletion that goes with it
	err := s.update(func(txn *badger.Txn) error {
		sess, outcome = Session{}, nil
		var rec storedSession
		if err := statedb.Get(txn, key, &rec); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return ErrNotFound
			}
			return err
		}
		if !now.Before(rec.Expires) {
			outcome = ErrExpired
			return deleteOwn(txn, rec.User, ownSession, id)
		}
		u, err := getUser(txn, rec.User)
		if errors.Is(err, ErrNotFound) {
			outcome = ErrNotFound
			return deleteOwn(txn, rec.User, ownSession, id)
		}
		if err != nil {
			return err
		}
		if end := s.sessionEnd(rec.Created, now); end.Sub(rec.Expires) >= slideEvery {
			rec.Expires = end
			if err := statedb.Set(txn, key, rec); err != nil {
				return err
			}
		}
		sess = rec.session(u.Role)
		return nil
	})
	if err == nil {
		err = outcome
	}
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	return sess, nil
}

// SessionPrincipal returns who makes a request with session token.
func (s *Store) SessionPrincipal(token string) (Principal, error) {
	sess, err := s.Session(token)
	if err != nil {
		return Principal{}, err
	}
	return Principal{User: sess.User, Role: sess.Role, Via: "session", CSRF: sess.CSRF}, nil
}

// EndSession ends the session with token, as at logout.
func (s *Store) EndSession(token string) error {
	id, ok := sessionID(token)
	if !ok {
		return fmt.Errorf("end session: %w", ErrNotFound)
	}
	err := s.update(func(txn *badger.Txn) error {
		var rec storedSession
		if err := statedb.Get(txn, sessionPrefix+id, &rec); err != nil {
			return err
		}
		return deleteOwn(txn, rec.User, ownSession, id)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// PurgeExpired deletes expired sessions and API tokens, and returns how
// many it deleted. Expired records are harmless, but take space until
// purged; the appliance calls PurgeExpired hourly.
func (s *Store) PurgeExpired() (int, error) {
	now := s.now()
	sessions, err := purge(s, sessionPrefix, ownSession,
		func(r *storedSession) (string, bool) { return r.User, !now.Before(r.Expires) })
	if err != nil {
		return 0, fmt.Errorf("purge expired sessions: %w", err)
	}
	tokens, err := purge(s, tokenPrefix, ownToken,
		func(r *storedToken) (string, bool) { return r.Owner, !r.Expires.IsZero() && !now.Before(r.Expires) })
	if err != nil {
		return sessions, fmt.Errorf("purge expired tokens: %w", err)
	}
	if sessions+tokens > 0 {
		s.log.Info("purged expired sessions and tokens", "sessions", sessions, "tokens", tokens)
	}
	return sessions + tokens, nil
}

// purge deletes the sessions or tokens, as prefix and kind say, that are
// expired, as reported with their owner by expired. It finds them in a
// read-only scan and deletes them in batches, checking each again, so that
// it neither conflicts with every concurrent use of a session nor outgrows
// a transaction.
func purge[T any](s *Store, prefix, kind string, expired func(*T) (owner string, ok bool)) (int, error) {
	var keys []string
	err := s.db.View(func(txn *badger.Txn) error {
		return statedb.Scan(txn, prefix, false, func(key string, v []byte) (bool, error) {
			var rec T
			if err := json.Unmarshal(v, &rec); err != nil {
				return false, fmt.Errorf("decode %s: %w", key, err)
			}
			if _, ok := expired(&rec); ok {
				keys = append(keys, key)
			}
			return true, nil
		})
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for batch := range slices.Chunk(keys, 500) {
		deleted := 0
		err := s.update(func(txn *badger.Txn) error {
			deleted = 0
			for _, key := range batch {
				var rec T
				err := statedb.Get(txn, key, &rec)
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				owner, ok := expired(&rec)
				if !ok {
					continue
				}
				if err := deleteOwn(txn, owner, kind, strings.TrimPrefix(key, prefix)); err != nil {
					return err
				}
				deleted++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += deleted
	}
	return n, nil
}
