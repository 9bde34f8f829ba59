//go:build linux

package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomData(n int, seed uint64) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

// tempFiles lists the temporary files left under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			left = append(left, p)
		}
		return nil
	})
	return left
}

func hashFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return sha(b)
}

// cancelFS cancels a context once some bytes of its files have been read:
// a restore interrupted in the middle of a file.
type cancelFS struct {
	fs.FS
	after  int64
	cancel context.CancelFunc
	read   atomic.Int64
}

func (c *cancelFS) ReadLink(name string) (string, error)   { return fs.ReadLink(c.FS, name) }
func (c *cancelFS) Lstat(name string) (fs.FileInfo, error) { return fs.Lstat(c.FS, name) }
func (c *cancelFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return fs.ReadDir(c.FS, name)
}

func (c *cancelFS) Open(name string) (fs.File, error) {
	f, err := c.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if info, err := f.Stat(); err == nil && info.Mode().IsRegular() {
		return &cancelFile{File: f, c: c}, nil
	}
	return f, nil
}

type cancelFile struct {
	fs.File
	c *cancelFS
}

func (f *cancelFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	if f.c.read.Add(int64(n)) >= f.c.after {
		f.c.cancel()
	}
	return n, err
}

var testTime = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
