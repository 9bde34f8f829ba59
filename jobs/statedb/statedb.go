// Package statedb is the appliance's state database: one badger database of
// JSON values under string keys, small and synced on every write. The jobs,
// the users and the tasks each keep their records under their own key
// prefix, so that one directory holds, and one backup saves, the whole
// state.
package statedb

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// ErrLocked is returned, wrapped, by Open when another process has the
// database open.
var ErrLocked = errors.New("in use by another process")

// Open opens or creates the state database in dir.
func Open(dir string, log *slog.Logger) (*badger.DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The database is small and written a few times per VM backup and
	// login, so it syncs every write and keeps its files and caches small.
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithSyncWrites(true).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		// Badger has no error value for its lock; its message is stable
		// since v1.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("open state %s: %w (is the appliance running?)", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open state %s: %w", dir, err)
	}
	return db, nil
}

// Get decodes the value of key into v; a missing key is
// badger.ErrKeyNotFound.
func Get(txn *badger.Txn, key string, v any) error {
	item, err := txn.Get([]byte(key))
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		return nil
	})
}

// Set stores v, encoded, under key.
func Set(txn *badger.Txn, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return txn.Set([]byte(key), b)
}

// Scan calls fn with the key and value of each record under prefix, in key
// order or in reverse, until fn returns false or an error. v is valid only
// during the call.
func Scan(txn *badger.Txn, prefix string, reverse bool, fn func(key string, v []byte) (bool, error)) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefix)
	opts.Reverse = reverse
	// Values are read as fn takes them: scans often stop at the first
	// record, and prefetching would read a hundred.
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	start := []byte(prefix)
	if reverse {
		// In reverse, Seek finds the last key at or before its argument;
		// no key under prefix sorts after prefix+0xff.
		start = append(start, 0xff)
	}
	for it.Seek(start); it.Valid(); it.Next() {
		item := it.Item()
		more := true
		err := item.Value(func(v []byte) error {
			var err error
			more, err = fn(string(item.Key()), v)
			return err
		})
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// badgerLogger sends badger's errors and warnings to slog; its info lines
// narrate compactions nobody needs to read.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "statedb")
}
func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "statedb")
}
func (l badgerLogger) Infof(string, ...any)  {}
func (l badgerLogger) Debugf(string, ...any) {}
