package fstreetest

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// CountingReaderAt counts the reads of a volume and the bytes they ask
// for, to check that a reader reads what it needs and no more.
type CountingReaderAt struct {
	R            io.ReaderAt
	Reads, Bytes atomic.Int64
}

func (c *CountingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.Reads.Add(1)
	c.Bytes.Add(int64(len(p)))
	return c.R.ReadAt(p, off)
}

// OpenImage opens an image file for the test, which closes it when it
// ends, and returns it with its size.
func OpenImage(t testing.TB, path string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, st.Size()
}

// WriteTree writes files under dir: name -> contents, each modified at
// mtime. Names ending in "/" are directories.
func WriteTree(t testing.TB, dir string, files map[string][]byte, mtime time.Time) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// Random returns n bytes that differ from seed to seed, so that a block
// read from the wrong place shows.
func Random(seed uint64, n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// ConcurrentReads reads the files of fsys from many goroutines at once,
// each at offsets of its own, and checks the data against want (name ->
// contents). Run under -race, it catches a reader's shared state that is
// not guarded.
func ConcurrentReads(t *testing.T, fsys fs.FS, want map[string][]byte) {
	t.Helper()
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range want {
			if len(want[name]) > 0 && !yield(name) {
				return
			}
		}
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for _, name := range names {
				f, err := fsys.Open(name)
				if err != nil {
					t.Error(err)
					return
				}
				data := want[name]
				read := func(off, n int) {
					got := make([]byte, n)
					m, err := f.(io.ReaderAt).ReadAt(got, int64(off))
					if err != nil && err != io.EOF || m < n {
						t.Errorf("%s: %d bytes at %d: %d, %v", name, n, off, m, err)
					} else if !bytes.Equal(got, data[off:off+n]) {
						t.Errorf("%s: %d bytes at %d: wrong data", name, n, off)
					}
				}
				off := (g * 997) % len(data)
				read(off, len(data)-off)
				off = rng.IntN(len(data))
				read(off, min(len(data)-off, rng.IntN(5000)+1))
				f.Close()
			}
		})
	}
	wg.Wait()
}

// WantCorrupt fails the test unless err says the image is corrupt: a
// reader that fails on a hostile image for another reason has not
// noticed it.
func WantCorrupt(t testing.TB, what string, err error) {
	t.Helper()
	if !errors.Is(err, fstree.ErrCorrupt) {
		t.Errorf("%s: %v, want an error wrapping ErrCorrupt", what, err)
	}
}

// Contents returns the reader's own io.ReaderAt of a file in the root
// directory of fsys, read through once, so that a test can look at how the
// reader mapped it.
func Contents(t testing.TB, fsys *fstree.FS, name string) io.ReaderAt {
	t.Helper()
	r := fsys.Reader()
	root, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := r.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name != name {
			continue
		}
		n, err := e.Load()
		if err != nil {
			t.Fatal(err)
		}
		ra, err := r.Contents(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(io.NewSectionReader(ra, 0, n.Meta().Size)); err != nil {
			t.Fatal(err)
		}
		return ra
	}
	t.Fatalf("%s not in the root", name)
	return nil
}
