package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// tinyArgon makes hashing fast enough for tests.
var tinyArgon = Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}

const (
	alicePassword = "correct horse battery"
	bobPassword   = "staple of the ages"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A rig is a Store on a badger database in a temporary directory.
type rig struct {
	dir   string
	db    *badger.DB
	s     *Store
	clock *fakeClock
	logs  *syncBuffer
	opts  Options
}

func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	opts := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithMemTableSize(8 << 20).
		WithValueLogFileSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20)
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newRig returns a rig with tiny argon2 parameters and a fake clock, after
// applying the changes of opts.
func newRig(t *testing.T, opts ...func(*Options)) *rig {
	t.Helper()
	r := &rig{
		dir:   t.TempDir(),
		clock: &fakeClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)},
		logs:  &syncBuffer{},
	}
	r.opts = Options{
		Now:   r.clock.Now,
		Log:   slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Argon: tinyArgon,
	}
	for _, o := range opts {
		o(&r.opts)
	}
	r.open(t)
	t.Cleanup(func() {
		if err := r.db.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func (r *rig) open(t *testing.T) {
	t.Helper()
	r.db = openDB(t, r.dir)
	s, err := Open(r.db, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
}

// reopen closes the database and opens it again, with a new Store.
func (r *rig) reopen(t *testing.T) {
	t.Helper()
	if err := r.db.Close(); err != nil {
		t.Fatal(err)
	}
	r.open(t)
}

func (r *rig) createUser(t *testing.T, name, password string, role Role) User {
	t.Helper()
	u, err := r.s.CreateUser(context.Background(), name, password, role)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// raw returns every key and value in the database.
func (r *rig) raw(t *testing.T) map[string][]byte {
	t.Helper()
	all := make(map[string][]byte)
	err := r.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			all[string(it.Item().KeyCopy(nil))] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}
