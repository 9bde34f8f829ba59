// Package backend holds where a store's files live. The store sees only whole
// named files that are written once and never changed: nothing above this
// package may assume POSIX, so that object storage can serve as a backend.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Kind is a class of store files.
type Kind string

const (
	Config Kind = "config" // the sealed store configuration, name "config"
	Keys   Kind = "keys"   // password-wrapped master keys
	Packs  Kind = "packs"  // sealed packs, named by the hash of their contents
	Points Kind = "points" // restore-point manifests, named likewise
	Pins   Kind = "pins"   // empty files named after the points never to prune
)

// Handle names one file.
type Handle struct {
	Kind Kind
	Name string
}

func (h Handle) String() string { return string(h.Kind) + "/" + h.Name }

// ErrNotFound reports a file that does not exist.
var ErrNotFound = fs.ErrNotExist

// Backend stores files. Save is atomic and durable when it returns: a reader
// sees all of a file or none of it, also after a crash.
type Backend interface {
	// Save creates h with data, which it does not keep after it returns.
	// Saving a name that exists replaces it only
	// with identical content (names of packs and points are hashes).
	Save(ctx context.Context, h Handle, data []byte) error
	// Load reads length bytes at offset; length < 0 reads to the end.
	Load(ctx context.Context, h Handle, offset int64, length int) ([]byte, error)
	// Stat returns the size of h.
	Stat(ctx context.Context, h Handle) (int64, error)
	// List calls fn for every file of kind k, in no particular order.
	List(ctx context.Context, k Kind, fn func(name string, size int64) error) error
	// Remove deletes h.
	Remove(ctx context.Context, h Handle) error
	// Lock makes the caller the store's only writer until unlock is called
	// or the process ends, or returns a *LockedError naming the holder. A
	// lock left by a holder that died is taken over, and stale names it.
	Lock(ctx context.Context, who LockInfo) (unlock func() error, stale *LockInfo, err error)
	// Location says where the backend keeps its files, for messages.
	Location() string
}

// LockInfo says who holds a store.
type LockInfo struct {
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
	What  string    `json:"what,omitempty"`
}

// LockedError reports a store held by someone else.
type LockedError struct {
	Location string
	Holder   LockInfo
}

func (e *LockedError) Error() string {
	h := e.Holder
	if h.PID == 0 {
		return fmt.Sprintf("store %s is in use by another process", e.Location)
	}
	s := fmt.Sprintf("store %s is in use by pid %d on %s since %s", e.Location, h.PID, h.Host, h.Since.Format(time.RFC3339))
	if h.What != "" {
		s += " (" + h.What + ")"
	}
	return s
}

// IsLocked reports whether err says the store is held by someone else.
func IsLocked(err error) bool {
	var le *LockedError
	return errors.As(err, &le)
}
