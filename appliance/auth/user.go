package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/bulwarkbackup/bulwark/jobs/statedb"
)

// A User is an account of the API. The hash of its password is stored with
// it but is no field of User, so that no API response can carry it.
type User struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// userRecord is a User as stored.
type userRecord struct {
	User
	Hash string `json:"hash"`
}

const maxNameLen = 64

// checkName checks a new user name: 1 to 64 of [A-Za-z0-9._@-], not
// starting with '.' or '-', so that names are safe in keys, file names and
// command lines.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w user name: empty", ErrInvalid)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%w user name: longer than %d characters", ErrInvalid, maxNameLen)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("%w user name %q: starts with %q", ErrInvalid, name, name[0])
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '@', c == '-':
		default:
			return fmt.Errorf("%w user name %q: only letters, digits and . _ @ - are allowed", ErrInvalid, name)
		}
	}
	return nil
}

// checkUserRole checks the role of a user: file-restore is for tokens.
func checkUserRole(role Role) error {
	if role != RoleAdmin && role != RoleOperator {
		return fmt.Errorf("%w role %q for a user: want %s or %s", ErrInvalid, role, RoleAdmin, RoleOperator)
	}
	return nil
}

func userKey(name string) string { return userPrefix + name }

// getUser returns the record of user name, or ErrNotFound.
func getUser(txn *badger.Txn, name string) (userRecord, error) {
	var rec userRecord
	err := statedb.Get(txn, userKey(name), &rec)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return userRecord{}, ErrNotFound
	}
	return rec, err
}

// checkOtherAdmin returns ErrLastAdmin unless there are at least two
// admins. The scan reads every user, so that a concurrent transaction
// removing another admin conflicts with this one.
func checkOtherAdmin(txn *badger.Txn) error {
	admins := 0
	err := statedb.Scan(txn, userPrefix, false, func(key string, v []byte) (bool, error) {
		var rec userRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return false, fmt.Errorf("decode %s: %w", key, err)
		}
		if rec.Role == RoleAdmin {
			admins++
		}
		return admins < 2, nil
	})
	if err != nil {
		return err
	}
	if admins < 2 {
		return ErrLastAdmin
	}
	return nil
}

// CreateUser creates a user with an admin or operator role.
func (s *Store) CreateUser(ctx context.Context, name, password string, role Role) (User, error) {
	if err := checkName(name); err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	if err := checkUserRole(role); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", name, err)
	}
	hash, err := s.hash(ctx, password)
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", name, err)
	}
	now := s.now()
	u := User{Name: name, Role: role, Created: now, Updated: now}
	err = s.update(func(txn *badger.Txn) error {
		return insertUser(txn, userRecord{User: u, Hash: hash})
	})
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", name, err)
	}
	return u, nil
}

func insertUser(txn *badger.Txn, rec userRecord) error {
	switch _, err := txn.Get([]byte(userKey(rec.Name))); {
	case err == nil:
		return ErrExists
	case !errors.Is(err, badger.ErrKeyNotFound):
		return err
	}
	return statedb.Set(txn, userKey(rec.Name), rec)
}

// User returns the user called name.
func (s *Store) User(name string) (User, error) {
	var rec userRecord
	err := s.db.View(func(txn *badger.Txn) (err error) {
		rec, err = getUser(txn, name)
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("user %s: %w", name, err)
	}
	return rec.User, nil
}

// Users returns all users, sorted by name.
func (s *Store) Users() ([]User, error) {
	var users []User
	err := s.db.View(func(txn *badger.Txn) error {
		// Names are ASCII, so key order is name order.
		return statedb.Scan(txn, userPrefix, false, func(key string, v []byte) (bool, error) {
			var rec userRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return false, fmt.Errorf("decode %s: %w", key, err)
			}
			users = append(users, rec.User)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// SetPassword sets the password of user name and ends the user's sessions,
// as a password is changed when it may have leaked. API tokens stay valid:
// they are separate credentials, revoked one by one.
func (s *Store) SetPassword(ctx context.Context, name, password string) error {
	hash, err := s.hash(ctx, password)
	if err != nil {
		return fmt.Errorf("set password of %s: %w", name, err)
	}
	now := s.now()
	err = s.update(func(txn *badger.Txn) error {
		rec, err := getUser(txn, name)
		if err != nil {
			return err
		}
		rec.Hash, rec.Updated = hash, now
		if err := statedb.Set(txn, userKey(name), rec); err != nil {
			return err
		}
		return deleteOwned(txn, name, ownSession)
	})
	if err != nil {
		return fmt.Errorf("set password of %s: %w", name, err)
	}
	return nil
}

// SetRole sets the role of user name. It refuses to demote the last admin.
func (s *Store) SetRole(name string, role Role) error {
	if err := checkUserRole(role); err != nil {
		return fmt.Errorf("set role of %s: %w", name, err)
	}
	now := s.now()
	err := s.update(func(txn *badger.Txn) error {
		rec, err := getUser(txn, name)
		if err != nil || rec.Role == role {
			return err
		}
		if rec.Role == RoleAdmin {
			if err := checkOtherAdmin(txn); err != nil {
				return err
			}
		}
		rec.Role, rec.Updated = role, now
		return statedb.Set(txn, userKey(name), rec)
	})
	if err != nil {
		return fmt.Errorf("set role of %s: %w", name, err)
	}
	return nil
}

// DeleteUser deletes user name with its sessions and API tokens. It refuses
// to delete the last admin.
func (s *Store) DeleteUser(name string) error {
	err := s.update(func(txn *badger.Txn) error {
		rec, err := getUser(txn, name)
		if err != nil {
			return err
		}
		if rec.Role == RoleAdmin {
			if err := checkOtherAdmin(txn); err != nil {
				return err
			}
		}
		if err := txn.Delete([]byte(userKey(name))); err != nil {
			return err
		}
		if err := deleteOwned(txn, name, ""); err != nil {
			return err
		}
		return txn.Delete([]byte(ownsPrefix + name))
	})
	if err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	return nil
}

// EnsureAdmin creates the first admin: if there is no user at all, it
// creates user name as admin with password and reports true. Otherwise it
// does nothing, whatever the existing users are called, so that the
// appliance can call it at every start.
func (s *Store) EnsureAdmin(ctx context.Context, name, password string) (created bool, err error) {
	s.ensureMu.Lock()
	defer s.ensureMu.Unlock()
	empty, err := s.noUsers()
	if err != nil || !empty {
		return false, err
	}
	// Checked only now: a store with users needs no valid first admin.
	if err := checkName(name); err != nil {
		return false, fmt.Errorf("create first admin: %w", err)
	}
	hash, err := s.hash(ctx, password)
	if err != nil {
		return false, fmt.Errorf("create first admin %s: %w", name, err)
	}
	now := s.now()
	err = s.update(func(txn *badger.Txn) error {
		created = false
		if empty, err := noUsers(txn); err != nil || !empty {
			return err
		}
		created = true
		return insertUser(txn, userRecord{User: User{Name: name, Role: RoleAdmin, Created: now, Updated: now}, Hash: hash})
	})
	if err != nil {
		return false, fmt.Errorf("create first admin %s: %w", name, err)
	}
	if created {
		s.log.Info("created first admin", "user", name)
	}
	return created, nil
}

func (s *Store) noUsers() (empty bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		empty, err = noUsers(txn)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("list users: %w", err)
	}
	return empty, nil
}

func noUsers(txn *badger.Txn) (bool, error) {
	empty := true
	err := statedb.Scan(txn, userPrefix, false, func(string, []byte) (bool, error) {
		empty = false
		return false, nil
	})
	return empty, err
}
