package jobs

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/bulwarkbackup/bulwark/jobs/statedb"
)

const vcenterPrefix = "vcenter/"

// ErrInUse is returned, wrapped, when something that jobs refer to is to
// be deleted.
var ErrInUse = errors.New("in use")

// A VCenter is a vCenter that jobs back up VMs from: how to reach it and
// log in. The password itself is never stored in the clear: the record
// names the environment variable that holds it, or holds it sealed under
// the store's key, so that the state database and its backups give nobody
// the keys to vSphere.
type VCenter struct {
	// Name identifies the vCenter to jobs; it follows the rules of job
	// names.
	Name string `json:"name"`

	// URL is https://host[:port][/sdk], or a bare host name. It must not
	// carry credentials.
	URL      string `json:"url"`
	Username string `json:"username"`

	// PasswordEnv names the environment variable that holds the password;
	// PasswordSealed is the password sealed by the appliance that stored
	// it. Exactly one is set.
	PasswordEnv    string `json:"password_env,omitempty"`
	PasswordSealed []byte `json:"password_sealed,omitempty"`

	// Thumbprint pins the certificate (its SHA-1 or SHA-256 fingerprint in
	// hex); Insecure accepts any certificate instead. Exactly one must be
	// given: trusting a vCenter is a decision an operator makes once, on
	// purpose, not something a first connection does silently.
	Thumbprint string `json:"thumbprint,omitempty"`
	Insecure   bool   `json:"insecure,omitempty"`

	// FromConfig marks a vCenter that the appliance's configuration file
	// defines: it is written at every start, and changed only there.
	FromConfig bool `json:"from_config,omitempty"`

	Added time.Time `json:"added,omitzero"`
}

// Validate reports whether v can be stored. The errors name the vCenter
// and the part of it at fault.
func (v VCenter) Validate() error {
	if err := CheckName("vCenter", v.Name); err != nil {
		return err
	}
	if err := v.validate(); err != nil {
		return fmt.Errorf("vCenter %s: %w", v.Name, err)
	}
	return nil
}

func (v VCenter) validate() error {
	raw := strings.TrimSpace(v.URL)
	if raw == "" {
		return errors.New("empty URL")
	}
	// A bare host name parses as a path, which is fine: only credentials
	// matter here, since they would end up in the database.
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return errors.New("the URL must not contain credentials; give the user name separately and the password in an environment variable")
	}
	if strings.TrimSpace(v.Username) == "" {
		return errors.New("empty user name")
	}
	switch {
	case v.PasswordEnv != "" && len(v.PasswordSealed) > 0:
		return errors.New("a password environment variable and a sealed password exclude each other")
	case len(v.PasswordSealed) > 0:
	case !isEnvName(v.PasswordEnv):
		return fmt.Errorf("invalid password environment variable %q: want letters, digits and '_', not starting with a digit", v.PasswordEnv)
	}
	switch {
	case v.Thumbprint != "" && v.Insecure:
		return errors.New("a certificate thumbprint and insecure mode exclude each other")
	case v.Thumbprint != "":
		if !IsThumbprint(v.Thumbprint) {
			return fmt.Errorf("invalid certificate thumbprint %q: want a SHA-1 or SHA-256 fingerprint in hex", v.Thumbprint)
		}
	case !v.Insecure:
		return errors.New("no certificate thumbprint: pin the certificate's fingerprint, or accept any certificate explicitly")
	}
	return nil
}

func isEnvName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// IsThumbprint reports whether s is a SHA-1 or SHA-256 certificate
// fingerprint in one of the spellings that vCenter, openssl and browsers
// use: hex, with or without colons, spaces or dashes between the bytes.
func IsThumbprint(s string) bool {
	digits := strings.Map(func(r rune) rune {
		switch r {
		case ':', ' ', '-':
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	b, err := hex.DecodeString(digits)
	return err == nil && (len(b) == 20 || len(b) == 32)
}

// PutVCenter validates v and stores it, replacing the vCenter of the same
// name but keeping the time it was first added.
//
// Jobs that name no vCenter use the only one there is. So that adding a
// second one does not leave them guessing, they are made to name the
// first one, in the same transaction.
func (s *State) PutVCenter(v VCenter) error {
	if err := v.Validate(); err != nil {
		return err
	}
	now := time.Now().UTC().Round(0)
	err := s.db.Update(func(txn *badger.Txn) error {
		var old VCenter
		switch err := statedb.Get(txn, vcenterPrefix+v.Name, &old); {
		case err == nil:
			v.Added = old.Added
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		default:
			if v.Added.IsZero() {
				v.Added = now
			}
			others, err := vcentersIn(txn)
			if err != nil {
				return err
			}
			if len(others) == 1 {
				if err := s.pinJobs(txn, others[0].Name, now); err != nil {
					return err
				}
			}
		}
		return statedb.Set(txn, vcenterPrefix+v.Name, v)
	})
	if err != nil {
		return fmt.Errorf("store vCenter %s: %w", v.Name, err)
	}
	return nil
}

// pinJobs makes the jobs that name no vCenter name the one called name.
func (s *State) pinJobs(txn *badger.Txn, name string, now time.Time) error {
	jobs, err := jobsIn(txn)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.VCenter != "" {
			continue
		}
		j.VCenter, j.Updated = name, now
		if err := statedb.Set(txn, jobPrefix+j.Name, j); err != nil {
			return err
		}
		s.log.Info("job now names its vCenter, as a second one is added", "job", j.Name, "vcenter", name)
	}
	return nil
}

// VCenter returns the vCenter called name.
func (s *State) VCenter(name string) (VCenter, error) {
	var v VCenter
	err := s.db.View(func(txn *badger.Txn) error { return statedb.Get(txn, vcenterPrefix+name, &v) })
	if errors.Is(err, badger.ErrKeyNotFound) {
		return VCenter{}, fmt.Errorf("vCenter %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return VCenter{}, fmt.Errorf("load vCenter %s: %w", name, err)
	}
	return v, nil
}

// VCenters returns all vCenters, sorted by name.
func (s *State) VCenters() ([]VCenter, error) {
	var vcs []VCenter
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		vcs, err = vcentersIn(txn)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load vCenters: %w", err)
	}
	return vcs, nil
}

// DeleteVCenter deletes the vCenter called name. It refuses, with an error
// that wraps ErrInUse and names them, while jobs use it: by name, or by
// naming none when it is the only one.
func (s *State) DeleteVCenter(name string) error {
	err := s.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(vcenterPrefix + name)); err != nil {
			return err
		}
		vcs, err := vcentersIn(txn)
		if err != nil {
			return err
		}
		jobs, err := jobsIn(txn)
		if err != nil {
			return err
		}
		var users []string
		for _, j := range jobs {
			if j.VCenter == name || j.VCenter == "" && len(vcs) == 1 {
				users = append(users, j.Name)
			}
		}
		if len(users) > 0 {
			return fmt.Errorf("%w by jobs %s: delete them, or move them to another vCenter, first", ErrInUse, strings.Join(users, ", "))
		}
		return txn.Delete([]byte(vcenterPrefix + name))
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("delete vCenter %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete vCenter %s: %w", name, err)
	}
	return nil
}

// JobVCenter returns the vCenter that job j backs up from.
func (s *State) JobVCenter(j Job) (VCenter, error) {
	if j.VCenter != "" {
		v, err := s.VCenter(j.VCenter)
		if err != nil {
			return VCenter{}, fmt.Errorf("job %s: %w", j.Name, err)
		}
		return v, nil
	}
	vcs, err := s.VCenters()
	if err != nil {
		return VCenter{}, fmt.Errorf("job %s: %w", j.Name, err)
	}
	switch len(vcs) {
	case 1:
		return vcs[0], nil
	case 0:
		return VCenter{}, fmt.Errorf("job %s: no vCenter is configured: %w", j.Name, ErrNotFound)
	}
	names := make([]string, len(vcs))
	for i, v := range vcs {
		names[i] = v.Name
	}
	return VCenter{}, fmt.Errorf("job %s names no vCenter, and there are %d (%s): choose one", j.Name, len(vcs), strings.Join(names, ", "))
}

func vcentersIn(txn *badger.Txn) ([]VCenter, error) {
	var vcs []VCenter
	err := statedb.Scan(txn, vcenterPrefix, false, func(key string, b []byte) (bool, error) {
		var v VCenter
		if err := json.Unmarshal(b, &v); err != nil {
			return false, fmt.Errorf("vCenter %s: %w", strings.TrimPrefix(key, vcenterPrefix), err)
		}
		vcs = append(vcs, v)
		return true, nil
	})
	return vcs, err
}

func jobsIn(txn *badger.Txn) ([]Job, error) {
	var jobs []Job
	err := statedb.Scan(txn, jobPrefix, false, func(key string, b []byte) (bool, error) {
		var j Job
		if err := json.Unmarshal(b, &j); err != nil {
			return false, fmt.Errorf("job %s: %w", strings.TrimPrefix(key, jobPrefix), err)
		}
		jobs = append(jobs, j)
		return true, nil
	})
	return jobs, err
}
