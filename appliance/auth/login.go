package auth

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Login rate limiting: after maxFailures failed logins within
// failureWindow, a key (a user name, or a remote address) is locked out
// for firstLockout. Until the key has been quiet for failureWindow after
// its lockout, each further failure locks it out again, for twice as long
// as the time before, up to maxLockout.
const (
	maxFailures    = 5
	failureWindow  = 15 * time.Minute
	firstLockout   = 30 * time.Second
	maxLockout     = 15 * time.Minute
	maxLimiterKeys = 10000
)

// A RateLimitError refuses a login attempt because of earlier failures.
// It wraps ErrRateLimited.
type RateLimitError struct {
	RetryAfter time.Duration // until the lockout ends
}

func (e *RateLimitError) Error() string {
	// Round up: "retry in 0s" while still locked out would mislead.
	return fmt.Sprintf("%v: retry in %v", ErrRateLimited, (e.RetryAfter + time.Second - 1).Truncate(time.Second))
}

func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// Authenticate checks the password of user name, for a login from remote,
// the client's IP address.
//
// Failures are counted per user name and per remote address; once either
// is locked out (see RateLimitError), Authenticate refuses without checking
// the password. A success clears the count of the user name, but not that
// of the address, which may be guessing at several users. An unknown user
// costs the same hashing as a known one, and fails with the same
// ErrBadCredentials.
//
// Authenticate writes no audit entry: that is for the caller, which knows
// what the attempt was for. It logs failures at Info level with the reason
// that the error does not tell, and refusals only at Debug level, as a
// flood of them must cost nothing.
func (s *Store) Authenticate(ctx context.Context, name, password, remote string) (User, error) {
	op := "log in"
	nameKey := ""
	// A name that cannot exist is not echoed (it may be a password typed
	// into the wrong field) and not counted: it would only fill the
	// limiter. Its attempts still count for the address.
	if checkName(name) == nil {
		op = "log in as " + name
		nameKey = name
	}
	remoteKey := addressKey(remote)

	if err := s.limited(nameKey, remoteKey, remote); err != nil {
		return User{}, fmt.Errorf("%s: %w", op, err)
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return User{}, fmt.Errorf("%s: %w", op, err)
	}
	// Check again: failures of the attempts this one waited for may have
	// locked it out.
	if err := s.limited(nameKey, remoteKey, remote); err != nil {
		release()
		return User{}, fmt.Errorf("%s: %w", op, err)
	}
	rec, known, ok, err := s.checkLogin(nameKey, password)
	// Count the outcome before giving up the slot, for the check again of
	// the attempt that takes it next.
	now := s.now()
	var lockout time.Duration
	switch {
	case err != nil:
	case ok:
		s.byName.reset(nameKey)
	default:
		if nameKey != "" {
			lockout = s.byName.fail(nameKey, now)
		}
		lockout = max(lockout, s.byRemote.fail(remoteKey, now))
	}
	release()
	if err != nil {
		s.log.Error("login: cannot check password", "user", nameKey, "remote", remote, "err", err)
		return User{}, fmt.Errorf("%s: %w", op, err)
	}

	if ok {
		s.log.Debug("login", "user", nameKey, "remote", remote)
		return rec.User, nil
	}
	reason := "wrong password"
	switch {
	case nameKey == "":
		reason = "invalid user name"
	case !known:
		reason = "unknown user"
	}
	// Only a known user's name is logged: an unknown one may be a password
	// or a token secret typed into the wrong field.
	logged := nameKey
	if !known {
		logged = ""
	}
	attrs := []any{"user", logged, "remote", remote, "reason", reason}
	if lockout > 0 {
		attrs = append(attrs, "lockout", lockout)
	}
	s.log.Info("login failed", attrs...)
	return User{}, fmt.Errorf("%s: %w", op, ErrBadCredentials)
}

// checkLogin checks password against user name, or against a dummy hash
// if there is no such user.
func (s *Store) checkLogin(name, password string) (rec userRecord, known, ok bool, err error) {
	if name != "" {
		rec, err = s.userRecord(name)
		switch {
		case err == nil:
			known = true
		case !errors.Is(err, ErrNotFound):
			return userRecord{}, false, false, err
		}
	}
	hash := rec.Hash
	if !known {
		if hash, err = s.dummyHash(); err != nil {
			return userRecord{}, false, false, err
		}
	}
	ok, err = VerifyPassword(hash, password)
	if err != nil {
		return userRecord{}, known, false, fmt.Errorf("user %s: %w", name, err)
	}
	return rec, known, ok && known, nil
}

func (s *Store) userRecord(name string) (rec userRecord, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		rec, err = getUser(txn, name)
		return err
	})
	return rec, err
}

// limited returns a *RateLimitError if either key is locked out.
func (s *Store) limited(nameKey, remoteKey, remote string) error {
	now := s.now()
	var wait time.Duration
	if nameKey != "" {
		wait = s.byName.locked(nameKey, now)
	}
	wait = max(wait, s.byRemote.locked(remoteKey, now))
	if wait <= 0 {
		return nil
	}
	s.log.Debug("login refused: locked out", "user", nameKey, "remote", remote, "retry_after", wait)
	return &RateLimitError{RetryAfter: wait}
}

// addressKey returns the limiter key for a remote address: the IP without
// port or zone, and for IPv6 its /64, as one host commonly has a whole /64
// to choose addresses from. Anything else is its own key.
func addressKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return remote
	}
	addr = addr.WithZone("").Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// A limiter counts failed logins per key. It keeps at most max keys,
// forgetting the one that failed least recently to make room.
type limiter struct {
	mu   sync.Mutex
	max  int
	keys map[string]*list.Element // of *failures
	lru  list.List                // of *failures, least recently failed first
}

type failures struct {
	key      string
	recent   []time.Time // failures within the window, until the first lockout
	lockouts int         // lockouts since the key was last quiet
	last     time.Time   // the last failure
	until    time.Time   // the end of the last lockout
}

// quiet reports whether f is so old that it counts for nothing.
func (f *failures) quiet(now time.Time) bool {
	end := f.last
	if f.until.After(end) {
		end = f.until
	}
	return now.Sub(end) >= failureWindow
}

func newLimiter(max int) *limiter {
	return &limiter{max: max, keys: make(map[string]*list.Element)}
}

// locked returns how long key stays locked out, or 0.
func (l *limiter) locked(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.keys[key]
	if !ok {
		return 0
	}
	f := e.Value.(*failures)
	if f.quiet(now) {
		l.lru.Remove(e)
		delete(l.keys, key)
		return 0
	}
	return max(f.until.Sub(now), 0)
}

// fail records a failure of key and returns the lockout it starts, or 0.
func (l *limiter) fail(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.keys[key]
	if ok {
		l.lru.MoveToBack(e)
	} else {
		e = l.lru.PushBack(&failures{key: key})
		l.keys[key] = e
		if l.lru.Len() > l.max {
			oldest := l.lru.Front()
			l.lru.Remove(oldest)
			delete(l.keys, oldest.Value.(*failures).key)
		}
	}
	f := e.Value.(*failures)
	if f.quiet(now) {
		*f = failures{key: key}
	}
	f.last = now
	if f.lockouts == 0 {
		recent := f.recent[:0]
		for _, t := range f.recent {
			if now.Sub(t) < failureWindow {
				recent = append(recent, t)
			}
		}
		f.recent = append(recent, now)
		if len(f.recent) < maxFailures {
			return 0
		}
		f.recent = nil
	}
	f.lockouts++
	d := lockoutFor(f.lockouts)
	f.until = now.Add(d)
	return d
}

// reset forgets the failures of key.
func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.keys[key]; ok {
		l.lru.Remove(e)
		delete(l.keys, key)
	}
}

func (l *limiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// lockoutFor returns the duration of the nth lockout in a row.
func lockoutFor(n int) time.Duration {
	d := firstLockout
	for i := 1; i < n && d < maxLockout; i++ {
		d *= 2
	}
	return min(d, maxLockout)
}
