// Package fstreetest holds what the filesystem readers' tests share:
// comparing a reader's tree with the source tree the real tools were given,
// exercising a reader on a fuzzed image, and a compact encoding of mostly
// empty images for fuzz corpora.
package fstreetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// CompareOptions say which metadata a filesystem keeps, so Compare checks
// only that.
type CompareOptions struct {
	Mode    bool          // permission bits
	Owner   bool          // UID and GID
	Mtime   time.Duration // granularity of modification times; 0: not checked
	Links   bool          // hard links share Meta.Inode
	Symlink bool          // symlinks are kept as symlinks
	// Skip leaves out paths of the image that the source has not
	// (lost+found) or source paths the filesystem cannot hold.
	Skip func(path string) bool
}

// Compare checks that fsys holds exactly the tree under dir: the same
// names and types, the same contents by SHA-256, the same symlink targets,
// and the metadata that o names.
func Compare(t testing.TB, fsys *fstree.FS, dir string, o CompareOptions) {
	t.Helper()
	want := map[string]fs.FileInfo{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." || (o.Skip != nil && o.Skip(rel)) {
			return nil
		}
		info, err := d.Info()
		want[rel] = info
		return err
	})
	if err != nil {
		t.Fatalf("walk source %s: %v", dir, err)
	}
	got := map[string]fs.FileInfo{}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." || (o.Skip != nil && o.Skip(p)) {
			return nil
		}
		info, err := fsys.Lstat(p)
		got[p] = info
		return err
	})
	if err != nil {
		t.Fatalf("walk %s image: %v", fsys.Type(), err)
	}
	inodes := map[uint64]string{}    // image inode -> first path
	srcInodes := map[uint64]string{} // source inode -> first path
	for _, p := range slices.Sorted(mapKeys(want)) {
		w := want[p]
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing from the image", p)
			continue
		}
		meta, _ := fstree.MetaOf(g)
		wantType := w.Mode().Type()
		if !o.Symlink && wantType == fs.ModeSymlink {
			wantType = 0
		}
		if g.Mode().Type() != wantType {
			t.Errorf("%s: type %v, want %v", p, g.Mode().Type(), wantType)
			continue
		}
		if o.Mode && g.Mode().Perm() != w.Mode().Perm() {
			t.Errorf("%s: mode %v, want %v", p, g.Mode().Perm(), w.Mode().Perm())
		}
		st, hasStat := statOf(w)
		if o.Owner && hasStat && (meta.UID != st.uid || meta.GID != st.gid || !meta.HasOwner) {
			t.Errorf("%s: owner %d:%d (%v), want %d:%d", p, meta.UID, meta.GID, meta.HasOwner, st.uid, st.gid)
		}
		if o.Mtime > 0 && !w.IsDir() && g.ModTime().Sub(w.ModTime()).Abs() >= o.Mtime {
			t.Errorf("%s: mtime %v, want %v", p, g.ModTime(), w.ModTime())
		}
		if o.Links && hasStat && st.nlink > 1 && !w.IsDir() {
			first, seen := srcInodes[st.ino]
			if !seen {
				srcInodes[st.ino] = p
				inodes[meta.Inode] = p
			} else if inodes[meta.Inode] != first {
				t.Errorf("%s: inode %d, want the inode of its hard link %s", p, meta.Inode, first)
			}
		}
		switch {
		case g.Mode().Type() == fs.ModeSymlink:
			target, err := fsys.ReadLink(p)
			wantTarget, _ := os.Readlink(filepath.Join(dir, p))
			if err != nil || target != wantTarget {
				t.Errorf("%s: symlink to %q (%v), want %q", p, target, err, wantTarget)
			}
		case g.Mode().IsRegular():
			if g.Size() != w.Size() {
				t.Errorf("%s: size %d, want %d", p, g.Size(), w.Size())
				continue
			}
			gotSum, err := HashFile(fsys, p)
			if err != nil {
				t.Errorf("%s: read: %v", p, err)
				continue
			}
			if wantSum := hashHost(t, filepath.Join(dir, p)); gotSum != wantSum {
				t.Errorf("%s: SHA-256 %s, want %s", p, gotSum, wantSum)
			}
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: in the image, not in the source", p)
		}
	}
}

// HashFile returns the hex SHA-256 of a file of fsys.
func HashFile(fsys fs.FS, name string) (string, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashHost(t testing.TB, p string) string {
	sum, err := HashFile(os.DirFS(filepath.Dir(p)), filepath.Base(p))
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Exercise does what a user may do with a filesystem, on a fuzzed image:
// walk it, stat and read every file, read every symlink, each within
// bounds. It only returns; a panic or a hang is the failure.
func Exercise(fsys *fstree.FS) {
	const (
		maxFiles = 2000
		maxRead  = 1 << 20 // per file
	)
	files := 0
	buf := make([]byte, 64<<10)
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if files++; files > maxFiles {
			return fs.SkipAll
		}
		if err != nil || d == nil {
			return nil
		}
		_, _ = d.Info()
		_, _ = fsys.Stat(p)
		switch {
		case d.Type() == fs.ModeSymlink:
			_, _ = fsys.ReadLink(p)
		case d.Type().IsRegular():
			f, err := fsys.Open(p)
			if err != nil {
				return nil
			}
			for n := 0; n < maxRead; n += len(buf) {
				if _, err := f.Read(buf); err != nil {
					break
				}
			}
			if ra, ok := f.(io.ReaderAt); ok {
				_, _ = ra.ReadAt(buf[:4096], 1<<40)
			}
			f.Close()
		}
		return nil
	})
}

// Sparse images for fuzz corpora: filesystems made by the real tools are
// megabytes of mostly zeros, too big for a fuzzer to mutate. EncodeSparse
// keeps only the 512-byte sectors that are not zero:
//
//	size uint64, then per sector: index uint32, 512 bytes
const sector = 512

// EncodeSparse encodes an image for a fuzz corpus.
func EncodeSparse(img []byte) []byte {
	var out bytes.Buffer
	_ = binary.Write(&out, binary.LittleEndian, uint64(len(img)))
	zero := make([]byte, sector)
	for i := 0; i < len(img); i += sector {
		s := img[i:min(i+sector, len(img))]
		if bytes.Equal(s, zero[:len(s)]) {
			continue
		}
		_ = binary.Write(&out, binary.LittleEndian, uint32(i/sector))
		out.Write(s)
		out.Write(zero[:sector-len(s)])
	}
	return out.Bytes()
}

// MaxSparseSize caps the size of a decoded image, whatever a fuzzer writes.
const MaxSparseSize = 1 << 32

// DecodeSparse returns the image that b encodes, as a reader and a size.
// It accepts any input: fuzzed bytes decode to some image.
func DecodeSparse(b []byte) (io.ReaderAt, int64) {
	if len(b) < 8 {
		return bytes.NewReader(nil), 0
	}
	size := int64(binary.LittleEndian.Uint64(b) % MaxSparseSize)
	img := &sparseImage{size: size, sectors: map[int64][]byte{}}
	for b = b[8:]; len(b) >= 4+sector; b = b[4+sector:] {
		img.sectors[int64(binary.LittleEndian.Uint32(b))] = b[4 : 4+sector]
	}
	return img, size
}

type sparseImage struct {
	size    int64
	sectors map[int64][]byte
}

func (s *sparseImage) ReadAt(p []byte, off int64) (int, error) {
	p, err := fstree.ClipRead(p, off, s.size)
	if len(p) == 0 {
		return 0, err
	}
	for i := 0; i < len(p); {
		pos := off + int64(i)
		in := pos % sector
		n := min(len(p)-i, int(sector-in))
		if sec, ok := s.sectors[pos/sector]; ok {
			copy(p[i:i+n], sec[in:])
		} else {
			clear(p[i : i+n])
		}
		i += n
	}
	return len(p), err
}

// ReadImage reads an image file made by a tool in a test.
func ReadImage(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Run runs a tool that makes or fills an image (mke2fs, mkfs.xfs, sgdisk,
// ...) and fails the test with its output if it fails. The tools live in
// /sbin and /usr/sbin, which a user's PATH may not hold; .ci/run installs
// them, so a missing tool is a failure, never a skip.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				path, err = filepath.Join(dir, name), nil
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("%s is not installed (.ci/run installs it): %v", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin", "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}
