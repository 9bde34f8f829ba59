package ntfs

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf16"

	"golang.org/x/sys/unix"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// mkntfs makes an empty NTFS volume of size MiB in a file.
func mkntfs(t testing.TB, sizeMiB, sector, cluster int, label string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "ntfs.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(sizeMiB)<<20); err != nil {
		t.Fatal(err)
	}
	fstreetest.Run(t, "mkntfs", "-F", "-Q", "-q", "-s", strconv.Itoa(sector), "-c", strconv.Itoa(cluster), "-L", label, img)
	return img
}

// mount mounts img with ntfs-3g in the foreground and returns the mount
// point and a function that unmounts it and waits for ntfs-3g to have
// written everything back: a FUSE unmount of a file does not wait.
func mount(t testing.TB, img string, opts ...string) (string, func()) {
	t.Helper()
	path, err := exec.LookPath("ntfs-3g")
	if err != nil {
		t.Fatalf("ntfs-3g is not installed (.ci/run installs it): %v", err)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	o := strings.Join(append([]string{"no_detach", "streams_interface=xattr"}, opts...), ",")
	cmd := exec.Command(path, "-o", o, img, mnt)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var mounted atomic.Bool
	unmount := func() {
		if !mounted.Swap(false) {
			return
		}
		fstreetest.Run(t, "umount", mnt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("ntfs-3g did not exit after unmount\n%s", out.String())
		}
	}
	t.Cleanup(func() {
		if mounted.Swap(false) {
			_ = exec.Command("umount", "-l", mnt).Run()
			_ = cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		if isMounted(mnt) {
			mounted.Store(true)
			return mnt, unmount
		}
		select {
		case err := <-done:
			t.Fatalf("ntfs-3g %s %s: %v\n%s", o, img, err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ntfs-3g did not mount %s\n%s", img, out.String())
		}
	}
}

func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// setxattr sets an extended attribute of a file of an ntfs-3g mount:
// user.NAME is a stream, system.ntfs_attrib_be the Windows attributes,
// system.ntfs_reparse_data a reparse point.
func setxattr(t testing.TB, path, name string, value []byte) {
	t.Helper()
	if err := unix.Setxattr(path, name, value, 0); err != nil {
		t.Fatalf("setxattr %s %s: %v", path, name, err)
	}
}

func setAttrib(t testing.TB, path string, attrib uint32) {
	t.Helper()
	setxattr(t, path, "system.ntfs_attrib_be", binary.BigEndian.AppendUint32(nil, attrib))
}

func setReparse(t testing.TB, path string, data []byte) {
	t.Helper()
	setxattr(t, path, "system.ntfs_reparse_data", data)
}

// windowsLink encodes a Windows symlink (flags 0 or 1, relative) or, with
// tag tagMountPoint, a junction.
func windowsLink(tag uint32, sub string, flags uint32) []byte {
	s := utf16Bytes(sub)
	var data bytes.Buffer
	binary.Write(&data, binary.LittleEndian, []uint16{0, uint16(len(s)), uint16(len(s)), uint16(len(s))})
	if tag == tagSymlink {
		binary.Write(&data, binary.LittleEndian, flags)
	}
	data.Write(s)
	data.Write(s)
	var out bytes.Buffer
	binary.Write(&out, binary.LittleEndian, tag)
	binary.Write(&out, binary.LittleEndian, uint16(data.Len()))
	binary.Write(&out, binary.LittleEndian, uint16(0))
	out.Write(data.Bytes())
	return out.Bytes()
}

func utf16Bytes(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

// randomBytes returns n bytes that do not compress.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textBytes returns n bytes of text that compresses well, but not to
// nothing.
func textBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"backup", "restore", "volume", "cluster", "record", "index", "stream", "sparse", "\n"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdirAll(t testing.TB, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

// openImage opens an image file with the reader, through a counter of
// the reads it makes.
func openImage(t testing.TB, img string) (*Reader, *fstreetest.CountingReaderAt) {
	t.Helper()
	b := fstreetest.ReadImage(t, img)
	cr := &fstreetest.CountingReaderAt{R: bytes.NewReader(b)}
	r, err := Open(cr, int64(len(b)))
	if err != nil {
		t.Fatalf("open %s: %v", img, err)
	}
	return r, cr
}

// lstatMeta returns the metadata of a path of fsys.
func lstatMeta(t testing.TB, fsys *fstree.FS, name string) *fstree.Meta {
	t.Helper()
	info, err := fsys.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := fstree.MetaOf(info)
	return m
}
