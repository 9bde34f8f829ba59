package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Local keeps a store in a directory of the local filesystem. Files are
// written to a temporary name, synced, renamed into place and the directory
// synced, so a crash leaves either the whole file or no file.
type Local struct {
	dir string
}

// NewLocal returns the backend for the store in dir; it need not exist yet.
func NewLocal(dir string) *Local { return &Local{dir: filepath.Clean(dir)} }

// Dir returns the directory.
func (l *Local) Dir() string { return l.dir }

// Location implements Backend.
func (l *Local) Location() string { return l.dir }

func (l *Local) path(h Handle) (string, error) {
	if h.Name == "" || strings.ContainsAny(h.Name, `/\`) || h.Name == "." || h.Name == ".." {
		return "", fmt.Errorf("invalid file name %q", h.Name)
	}
	switch h.Kind {
	case Config:
		return filepath.Join(l.dir, "config"), nil
	case Packs:
		// Sharding keeps directories small enough for any filesystem.
		if len(h.Name) < 2 {
			return "", fmt.Errorf("invalid pack name %q", h.Name)
		}
		return filepath.Join(l.dir, "packs", h.Name[:2], h.Name), nil
	case Keys, Points, Pins:
		return filepath.Join(l.dir, string(h.Kind), h.Name), nil
	}
	return "", fmt.Errorf("unknown file kind %q", h.Kind)
}

// Save implements Backend.
func (l *Local) Save(ctx context.Context, h Handle, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := l.path(h)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	tmpDir := filepath.Join(l.dir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(tmpDir, h.Name+"."+hex.EncodeToString(rnd[:]))
	if err := writeSynced(tmp, data); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save %s: %w", h, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save %s: %w", h, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	return nil
}

func writeSynced(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Load implements Backend.
func (l *Local) Load(ctx context.Context, h Handle, offset int64, length int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := l.path(h)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	defer f.Close()
	if length < 0 {
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", h, err)
		}
		if offset > fi.Size() {
			return nil, fmt.Errorf("load %s: offset %d beyond size %d", h, offset, fi.Size())
		}
		length = int(fi.Size() - offset)
	}
	buf := make([]byte, length)
	n, err := f.ReadAt(buf, offset)
	if err != nil && !(errors.Is(err, io.EOF) && n == length) {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("load %s: %d bytes at offset %d: file is truncated: %w", h, length, offset, io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	return buf, nil
}

// Stat implements Backend.
func (l *Local) Stat(ctx context.Context, h Handle) (int64, error) {
	p, err := l.path(h)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", h, err)
	}
	return fi.Size(), nil
}

// List implements Backend.
func (l *Local) List(ctx context.Context, k Kind, fn func(name string, size int64) error) error {
	var dirs []string
	switch k {
	case Packs:
		shards, err := os.ReadDir(filepath.Join(l.dir, "packs"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("list packs: %w", err)
		}
		for _, s := range shards {
			if s.IsDir() {
				dirs = append(dirs, filepath.Join(l.dir, "packs", s.Name()))
			}
		}
	case Keys, Points, Pins:
		dirs = []string{filepath.Join(l.dir, string(k))}
	case Config:
		if fi, err := os.Stat(filepath.Join(l.dir, "config")); err == nil {
			return fn("config", fi.Size())
		}
		return nil
	default:
		return fmt.Errorf("list: unknown file kind %q", k)
	}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", k, err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue // removed while listing
			}
			if err := fn(e.Name(), fi.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove implements Backend.
func (l *Local) Remove(ctx context.Context, h Handle) error {
	p, err := l.path(h)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	return syncDir(filepath.Dir(p))
}

// Lock implements Backend with an flock on the file "lock", which the kernel
// releases when the holder dies however it dies. The file's content names
// the holder for the error message; a holder that lets go empties it, so
// content found on taking the lock names a holder that died with it.
// Temporary files of a dead writer are removed once the lock is held.
func (l *Local) Lock(ctx context.Context, who LockInfo) (func() error, *LockInfo, error) {
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("lock %s: %w", l.dir, err)
	}
	p := filepath.Join(l.dir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("lock %s: %w", l.dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			le := &LockedError{Location: l.dir}
			if b, rerr := io.ReadAll(f); rerr == nil {
				_ = json.Unmarshal(b, &le.Holder)
			}
			return nil, nil, le
		}
		return nil, nil, fmt.Errorf("lock %s: %w", l.dir, err)
	}
	var stale *LockInfo
	if b, err := io.ReadAll(f); err == nil && len(b) > 0 {
		var old LockInfo
		if json.Unmarshal(b, &old) == nil {
			stale = &old
		}
	}
	// Written over the old holder and then cut to length, so that a reader
	// never finds the file empty while it is held.
	b, _ := json.Marshal(who)
	if _, err := f.WriteAt(b, 0); err == nil {
		_ = f.Truncate(int64(len(b)))
	}
	_ = os.RemoveAll(filepath.Join(l.dir, "tmp"))
	unlock := func() error {
		_ = f.Truncate(0)
		return f.Close() // closing drops the flock
	}
	return unlock, stale, nil
}
