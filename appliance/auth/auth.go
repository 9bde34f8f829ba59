// Package auth keeps the users, sessions and API tokens of the appliance's
// HTTPS API, decides what each may do, limits password guessing, and keeps
// an audit log.
//
// Its records live in a badger database that the caller opens, shares with
// other parts of the appliance, and closes. The package uses only keys under
// "auth/"; records are JSON:
//
//	auth/user/<name>                  a user, with the hash of its password
//	auth/session/<sha256 hex>         a session, under the hash of its token
//	auth/token/<id>                   an API token, with the hash of its secret
//	auth/owns/<name>/session/<hex>    empty: user name has that session
//	auth/owns/<name>/token/<id>       empty: user name has that token
//	auth/owns/<name>                  empty, written with each new session or
//	                                  token of the user, so that deleting them
//	                                  all conflicts with adding one
//	auth/audit/<seq as %016x>         an audit entry; the hex makes keys sort by age
//	auth/meta/audit-seq               the sequence number of the last audit entry
//
// User names cannot contain '/', so a user's prefix never covers another's.
//
// Secrets (passwords, session tokens, token secrets) are stored only as
// hashes, and appear in no error and no log message.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

const (
	userPrefix    = "auth/user/"
	sessionPrefix = "auth/session/"
	tokenPrefix   = "auth/token/"
	ownsPrefix    = "auth/owns/"
	auditPrefix   = "auth/audit/"
	auditSeqKey   = "auth/meta/audit-seq"
)

var (
	// ErrNotFound is returned, wrapped, for a user, session or token that
	// does not exist.
	ErrNotFound = errors.New("not found")

	// ErrExists is returned, wrapped, when creating a user that exists.
	ErrExists = errors.New("already exists")

	// ErrExpired is returned, wrapped, for a session or token past its
	// expiry.
	ErrExpired = errors.New("expired")

	// ErrBadCredentials is returned, wrapped, by Authenticate for a wrong
	// password and for an unknown user alike.
	ErrBadCredentials = errors.New("wrong user name or password")

	// ErrRateLimited is returned, wrapped in a *RateLimitError, for a login
	// attempt refused because of earlier failures.
	ErrRateLimited = errors.New("too many failed logins")

	// ErrLastAdmin is returned, wrapped, when deleting or demoting the only
	// admin, which would leave nobody to manage users.
	ErrLastAdmin = errors.New("the last admin cannot be deleted or demoted")

	// ErrWeakPassword is returned, wrapped with the reason, for a password
	// that is too short or too long.
	ErrWeakPassword = errors.New("password not allowed")

	// ErrInvalid is returned, wrapped with the reason, for an invalid user
	// name, role, token spec or audit entry.
	ErrInvalid = errors.New("invalid")
)

// A Role is what a user or token may do.
type Role string

const (
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
	// RoleOperator may run jobs and restores, but not manage users or
	// settings.
	RoleOperator Role = "operator"
	// RoleFileRestore is for tokens only: read-only access to the restore
	// points of one VM, for a limited time.
	RoleFileRestore Role = "file-restore"
)

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// rank orders the roles by what they allow; 0 is no role.
func (r Role) rank() int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleOperator:
		return 2
	case RoleFileRestore:
		return 1
	}
	return 0
}

// lesser returns the role of a and b that allows less.
func lesser(a, b Role) Role {
	if a.rank() < b.rank() {
		return a
	}
	return b
}

// A Principal is who makes a request, as the API layer sees it.
type Principal struct {
	User    string
	Role    Role
	VM      string // for RoleFileRestore, the only VM the principal may see
	Via     string // "session" or "token"
	TokenID string // for Via "token"
	CSRF    string // for Via "session", the token that unsafe requests must carry
}

// Allows reports whether p's role includes need. Admin includes operator,
// and both include file-restore; the API layer must additionally restrict
// a file-restore principal to p.VM.
func (p Principal) Allows(need Role) bool {
	return need.Valid() && p.Role.rank() >= need.rank()
}

// Options configure a Store. The zero value gives the defaults.
type Options struct {
	// Now returns the current time; the default is time.Now.
	Now func() time.Time

	// Log receives the audit log and diagnostics; the default discards.
	Log *slog.Logger

	// SessionTTL is how long a session lasts after its last use; the
	// default is 12 hours.
	SessionTTL time.Duration

	// MaxSessionAge bounds a session however often it is used; the default
	// is 7 days.
	MaxSessionAge time.Duration

	// Argon are the parameters for new password hashes. Zero fields take
	// the defaults of HashPassword.
	Argon Argon2Params

	// MaxConcurrentHashes bounds the password hashes computed at once; the
	// default is 2. Each takes Argon.MemoryKiB of memory, so without a
	// bound a flood of logins could exhaust the appliance's memory.
	MaxConcurrentHashes int
}

// A Store keeps users, sessions, tokens and the audit log in a badger
// database. It is safe for concurrent use.
type Store struct {
	db            *badger.DB
	clock         func() time.Time
	log           *slog.Logger
	sessionTTL    time.Duration
	maxSessionAge time.Duration
	argon         Argon2Params

	hashes chan struct{} // a semaphore for password hashing

	// dummyHash is hashed against for unknown users, so that their
	// failure costs as much as a known user's.
	dummyHash func() (string, error)

	byName, byRemote *limiter

	// ensureMu serialises EnsureAdmin: badger cannot tell that two
	// transactions both found no user.
	ensureMu sync.Mutex
	auditMu  sync.Mutex // serialises the allocation of audit sequence numbers
}

// Open returns a Store keeping its records in db. The caller keeps
// ownership of db: the Store never closes it.
func Open(db *badger.DB, o Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("open auth store: no database")
	}
	s := &Store{
		db:            db,
		clock:         o.Now,
		log:           o.Log,
		sessionTTL:    o.SessionTTL,
		maxSessionAge: o.MaxSessionAge,
		argon:         o.Argon.withDefaults(),
		byName:        newLimiter(maxLimiterKeys),
		byRemote:      newLimiter(maxLimiterKeys),
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.sessionTTL == 0 {
		s.sessionTTL = 12 * time.Hour
	}
	if s.maxSessionAge == 0 {
		s.maxSessionAge = 7 * 24 * time.Hour
	}
	if s.sessionTTL < 0 || s.maxSessionAge < 0 {
		return nil, fmt.Errorf("open auth store: %w session lifetime: negative", ErrInvalid)
	}
	if err := s.argon.validate(); err != nil {
		return nil, fmt.Errorf("open auth store: argon2 parameters: %w", err)
	}
	n := o.MaxConcurrentHashes
	if n == 0 {
		n = 2
	}
	if n < 0 {
		return nil, fmt.Errorf("open auth store: %w concurrent hashes: negative", ErrInvalid)
	}
	s.hashes = make(chan struct{}, n)
	s.dummyHash = sync.OnceValues(func() (string, error) {
		pw, err := GeneratePassword()
		if err != nil {
			return "", err
		}
		return HashPassword(pw, s.argon)
	})
	return s, nil
}

// now returns the current time in UTC, without a monotonic reading so
// that it compares equal to itself after a round trip through JSON.
func (s *Store) now() time.Time { return s.clock().UTC().Round(0) }

// acquire waits for a password hashing slot, or for ctx to be done.
func (s *Store) acquire(ctx context.Context) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case s.hashes <- struct{}{}:
		return func() { <-s.hashes }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// hash checks password and hashes it with the store's parameters.
func (s *Store) hash(ctx context.Context, password string) (string, error) {
	// Check before waiting for a slot: a refused password needs none.
	if err := checkPassword(password); err != nil {
		return "", err
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword(password, s.argon)
}

// maxAttempts bounds the retries of a transaction that conflicts with
// concurrent ones.
const maxAttempts = 8

// update runs fn in a read-write transaction, again if it conflicts with a
// concurrent transaction. fn must derive what it writes from what it reads
// in txn, and must reset what it reports to its caller, as it may run more
// than once.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	var err error
	for range maxAttempts {
		err = s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}

// The kinds of records a user owns.
const (
	ownSession = "session"
	ownToken   = "token"
)

func ownsKey(user, kind, id string) []byte { return []byte(ownsPrefix + user + "/" + kind + "/" + id) }

// addOwned records that user owns the session or token id. Its record must
// be written in the same transaction.
func addOwned(txn *badger.Txn, user, kind, id string) error {
	if err := txn.Set(ownsKey(user, kind, id), nil); err != nil {
		return err
	}
	// See deleteOwned. A blind write: concurrent additions do not conflict.
	return txn.Set([]byte(ownsPrefix+user), nil)
}

// deleteOwned deletes the sessions or tokens of user, as kind says, or both
// if kind is "".
func deleteOwned(txn *badger.Txn, user, kind string) error {
	// The scan below cannot see what a concurrent transaction adds; reading
	// the key that each addition writes makes this transaction conflict
	// with it instead, and run again.
	if _, err := txn.Get([]byte(ownsPrefix + user)); err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return err
	}
	prefix := ownsPrefix + user + "/"
	if kind != "" {
		prefix += kind + "/"
	}
	// A read-write transaction allows one iterator at a time, and deleting
	// under a live iterator is not documented to be safe: collect first.
	var keys []string
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefix)
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Item().Key()))
	}
	it.Close()
	for _, k := range keys {
		kind, id, _ := strings.Cut(strings.TrimPrefix(k, ownsPrefix+user+"/"), "/")
		if err := deleteOwn(txn, user, kind, id); err != nil {
			return err
		}
	}
	return nil
}

// deleteOwn deletes session or token id of user, with its index entry.
func deleteOwn(txn *badger.Txn, user, kind, id string) error {
	key := tokenPrefix + id
	if kind == ownSession {
		key = sessionPrefix + id
	}
	if err := txn.Delete([]byte(key)); err != nil {
		return err
	}
	return txn.Delete(ownsKey(user, kind, id))
}

// randomString returns n random bytes in unpadded base64url.
func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
