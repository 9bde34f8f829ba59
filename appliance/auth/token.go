package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/bulwarkbackup/bulwark/jobs/statedb"
)

// A TokenSpec describes an API token to create.
type TokenSpec struct {
	Name string // what the token is for, shown in lists
	Role Role

	// VM is the one VM a file-restore token may see, as the appliance
	// identifies it. Tokens of other roles have none.
	VM string

	// TTL is how long the token is valid. A file-restore token must
	// expire, within 90 days; for others 0 means never, and the limit is
	// 10 years.
	TTL time.Duration
}

const (
	maxTokenNameLen    = 64
	maxTokenVMLen      = 256
	maxFileRestoreTTL  = 90 * 24 * time.Hour
	maxTokenTTL        = 3650 * 24 * time.Hour
	tokenSecretPrefix  = "bwk_"
	tokenIDBytes       = 8
	tokenSecretBytes   = 32
	tokenLastUsedEvery = time.Minute // as slideEvery, for LastUsed
)

func (spec TokenSpec) check() error {
	if spec.Name == "" {
		return fmt.Errorf("%w token name: empty", ErrInvalid)
	}
	if err := checkText(spec.Name, maxTokenNameLen); err != nil {
		return fmt.Errorf("%w token name: %v", ErrInvalid, err)
	}
	if !spec.Role.Valid() {
		return fmt.Errorf("%w token role %q: want %s, %s or %s", ErrInvalid, spec.Role, RoleAdmin, RoleOperator, RoleFileRestore)
	}
	if spec.TTL < 0 {
		return fmt.Errorf("%w token lifetime %v: negative", ErrInvalid, spec.TTL)
	}
	if spec.Role != RoleFileRestore {
		if spec.VM != "" {
			return fmt.Errorf("%w token: only %s tokens are limited to a VM", ErrInvalid, RoleFileRestore)
		}
		if spec.TTL > maxTokenTTL {
			return fmt.Errorf("%w token lifetime %v: longer than %d days", ErrInvalid, spec.TTL, maxTokenTTL/(24*time.Hour))
		}
		return nil
	}
	if spec.VM == "" {
		return fmt.Errorf("%w %s token: no VM", ErrInvalid, RoleFileRestore)
	}
	if err := checkText(spec.VM, maxTokenVMLen); err != nil {
		return fmt.Errorf("%w token VM: %v", ErrInvalid, err)
	}
	if spec.TTL == 0 {
		return fmt.Errorf("%w %s token: no lifetime; it must expire", ErrInvalid, RoleFileRestore)
	}
	if spec.TTL > maxFileRestoreTTL {
		return fmt.Errorf("%w %s token lifetime %v: longer than %d days", ErrInvalid, RoleFileRestore, spec.TTL, maxFileRestoreTTL/(24*time.Hour))
	}
	return nil
}

// checkText checks a free-form string shown to users.
func checkText(s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("longer than %d bytes", maxLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return fmt.Errorf("%q has unprintable characters", s)
	}
	return nil
}

// A Token is an API token, for scripts and for file-level restores. Its ID
// is public; its secret is shown once, at creation.
type Token struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Owner    string    `json:"owner"`
	Role     Role      `json:"role"`
	VM       string    `json:"vm,omitempty"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// storedToken is a Token as stored: with the SHA-256 of its secret, so
// that a copy of the database holds no usable token. The secret has 256
// random bits, so a fast hash suffices.
type storedToken struct {
	Token
	Hash string `json:"hash"`
}

func tokenKey(id string) string { return tokenPrefix + id }

// validTokenID reports whether id is 16 lowercase hex digits.
func validTokenID(id string) bool {
	if len(id) != 2*tokenIDBytes {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// tokenName returns how to name token id in an error: not at all if id is
// malformed, as it may be a secret passed by mistake.
func tokenName(id string) string {
	if validTokenID(id) {
		return "token " + id
	}
	return "token"
}

// parseSecret returns the ID in secret, "bwk_<id>_<32 bytes base64url>".
func parseSecret(secret string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(secret, tokenSecretPrefix)
	if !ok {
		return "", false
	}
	id, key, ok := strings.Cut(rest, "_")
	if !ok || !validTokenID(id) || base64.RawURLEncoding.DecodedLen(len(key)) != tokenSecretBytes {
		return "", false
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(key); err != nil {
		return "", false
	}
	return id, true
}

// CreateToken creates an API token of user owner and returns its secret,
// which is shown to the user once and never stored. A token cannot allow
// more than its owner: an operator cannot create an admin token.
func (s *Store) CreateToken(owner string, spec TokenSpec) (secret string, t Token, err error) {
	if err := spec.check(); err != nil {
		return "", Token{}, fmt.Errorf("create token for %s: %w", owner, err)
	}
	id := make([]byte, tokenIDBytes)
	if _, err := rand.Read(id); err != nil {
		return "", Token{}, fmt.Errorf("create token for %s: %w", owner, err)
	}
	key, err := randomString(tokenSecretBytes)
	if err != nil {
		return "", Token{}, fmt.Errorf("create token for %s: %w", owner, err)
	}
	now := s.now()
	t = Token{ID: hex.EncodeToString(id), Name: spec.Name, Owner: owner, Role: spec.Role, VM: spec.VM, Created: now}
	if spec.TTL > 0 {
		t.Expires = now.Add(spec.TTL)
	}
	secret = tokenSecretPrefix + t.ID + "_" + key
	err = s.update(func(txn *badger.Txn) error {
		u, err := getUser(txn, owner)
		if err != nil {
			return fmt.Errorf("user %s: %w", owner, err)
		}
		if spec.Role.rank() > u.Role.rank() {
			return fmt.Errorf("%w token role %s: above the owner's role %s", ErrInvalid, spec.Role, u.Role)
		}
		// 64 random bits do not collide in practice; but if they do, the
		// other token must survive.
		if _, err := txn.Get([]byte(tokenKey(t.ID))); !errors.Is(err, badger.ErrKeyNotFound) {
			if err == nil {
				err = fmt.Errorf("token ID %s: %w", t.ID, ErrExists)
			}
			return err
		}
		if err := statedb.Set(txn, tokenKey(t.ID), storedToken{Token: t, Hash: sha256Hex(secret)}); err != nil {
			return err
		}
		return addOwned(txn, owner, ownToken, t.ID)
	})
	if err != nil {
		return "", Token{}, fmt.Errorf("create token for %s: %w", owner, err)
	}
	return secret, t, nil
}

// Tokens returns the API tokens of owner, or all tokens if owner is "",
// oldest first.
func (s *Store) Tokens(owner string) ([]Token, error) {
	var tokens []Token
	err := s.db.View(func(txn *badger.Txn) error {
		return statedb.Scan(txn, tokenPrefix, false, func(key string, v []byte) (bool, error) {
			var rec storedToken
			if err := json.Unmarshal(v, &rec); err != nil {
				return false, fmt.Errorf("decode %s: %w", key, err)
			}
			if owner == "" || rec.Owner == owner {
				tokens = append(tokens, rec.Token)
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	// Keys sort by random ID; creation order is what a user expects.
	slices.SortFunc(tokens, func(a, b Token) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return tokens, nil
}

// Token returns the API token with id. Its Role is the role it was created
// with; see VerifyToken for the role it has now.
func (s *Store) Token(id string) (Token, error) {
	var rec storedToken
	err := s.db.View(func(txn *badger.Txn) error {
		if !validTokenID(id) {
			return ErrNotFound
		}
		return statedb.Get(txn, tokenKey(id), &rec)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return Token{}, fmt.Errorf("%s: %w", tokenName(id), err)
	}
	return rec.Token, nil
}

// RevokeToken deletes the API token with id.
func (s *Store) RevokeToken(id string) error {
	err := s.update(func(txn *badger.Txn) error {
		if !validTokenID(id) {
			return ErrNotFound
		}
		var rec storedToken
		if err := statedb.Get(txn, tokenKey(id), &rec); err != nil {
			return err
		}
		return deleteOwn(txn, rec.Owner, ownToken, id)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("revoke %s: %w", tokenName(id), err)
	}
	return nil
}

// VerifyToken returns the API token with secret. Its Role is the role it
// has now: the lesser of its own and its owner's current role, so that
// demoting a user demotes the user's tokens.
func (s *Store) VerifyToken(secret string) (Token, error) {
	id, ok := parseSecret(secret)
	if !ok {
		s.log.Debug("token rejected: malformed")
		return Token{}, fmt.Errorf("token: %w", ErrNotFound)
	}
	hash := sha256Hex(secret)
	now := s.now()
	var t Token
	err := s.update(func(txn *badger.Txn) error {
		var rec storedToken
		if err := statedb.Get(txn, tokenKey(id), &rec); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return ErrNotFound
			}
			return err
		}
		if subtle.ConstantTimeCompare([]byte(hash), []byte(rec.Hash)) != 1 {
			return ErrNotFound
		}
		if !rec.Expires.IsZero() && !now.Before(rec.Expires) {
			return ErrExpired
		}
		// A token acts for its owner: without one, it is void.
		owner, err := getUser(txn, rec.Owner)
		if err != nil {
			return err
		}
		if now.Sub(rec.LastUsed) >= tokenLastUsedEvery {
			rec.LastUsed = now
			if err := statedb.Set(txn, tokenKey(id), rec); err != nil {
				return err
			}
		}
		t = rec.Token
		t.Role = lesser(t.Role, owner.Role)
		return nil
	})
	if err != nil {
		s.log.Debug("token rejected", "token_id", id, "err", err)
		return Token{}, fmt.Errorf("token %s: %w", id, err)
	}
	return t, nil
}

// TokenPrincipal returns who makes a request with the API token secret.
func (s *Store) TokenPrincipal(secret string) (Principal, error) {
	t, err := s.VerifyToken(secret)
	if err != nil {
		return Principal{}, err
	}
	return Principal{User: t.Owner, Role: t.Role, VM: t.VM, Via: "token", TokenID: t.ID}, nil
}
