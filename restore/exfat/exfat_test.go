package exfat

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
	"github.com/bulwarkbackup/bulwark/restore/internal/fatchain"
)

// mkfs makes an exFAT image of size bytes.
func mkfs(t testing.TB, size int64, args ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "exfat.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	fstreetest.Run(t, "mkfs.exfat", append(args, img)...)
	return img
}

// mount mounts an image with exfat-fuse, which wants a block device when
// run as root, and returns the mount point and a function that unmounts
// it, after which the image is complete. The cleanup unmounts it too.
func mount(t testing.TB, img string) (dir string, unmount func()) {
	t.Helper()
	loop := strings.TrimSpace(fstreetest.Run(t, "losetup", "-f", "--show", img))
	var detach, umount sync.Once
	t.Cleanup(func() { detach.Do(func() { fstreetest.Run(t, "losetup", "-d", loop) }) })
	dir = t.TempDir()
	fstreetest.Run(t, "mount.exfat-fuse", loop, dir)
	unmount = func() {
		umount.Do(func() { fstreetest.Run(t, "umount", dir) })
		detach.Do(func() { fstreetest.Run(t, "losetup", "-d", loop) })
	}
	t.Cleanup(unmount)
	return dir, unmount
}

// fill copies the tree under src into dir, keeping modification times.
func fill(t testing.TB, dir, src string) {
	t.Helper()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		return os.Chtimes(filepath.Join(dir, rel), info.ModTime(), info.ModTime())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func openImage(t testing.TB, img string) (*Reader, *fstree.FS) {
	t.Helper()
	f, size := fstreetest.OpenImage(t, img)
	r, err := Open(f, size)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r, fstree.New(r)
}

// tree writes files under dir: name -> contents. Names ending in "/" are
// directories. exfat-fuse keeps whole seconds.
func tree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	fstreetest.WriteTree(t, dir, files, time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC))
}

var compareExFAT = fstreetest.CompareOptions{Mtime: 10 * time.Millisecond}

func TestExFAT(t *testing.T) {
	src := t.TempDir()
	files := map[string][]byte{
		"lower.txt":                              []byte("lower\n"),
		"MixedCase.Txt":                          []byte("mixed\n"),
		"dir1/Case.txt":                          []byte("one\n"),
		"dir2/CASE.TXT":                          []byte("two\n"),
		"日本語.txt":                                []byte("にほんご\n"),
		"Ünïcödé/ñ.txt":                          []byte("unicode\n"),
		"emoji 🎉.txt":                            []byte("surrogates\n"),
		"empty":                                  nil,
		"emptydir/":                              nil,
		"big.bin":                                fstreetest.Random(1, 3<<20+5),
		strings.Repeat("long name ", 25) + "end": []byte("255 units\n"),
		strings.Repeat("level/", 12) + "bottom.txt": []byte("deep\n"),
	}
	for i := range 1000 {
		files[fmt.Sprintf("many/file number %04d.txt", i)] = []byte(fmt.Sprint(i))
	}
	tree(t, src, files)
	img := mkfs(t, 64<<20, "-L", "EXLABEL")
	mnt, unmount := mount(t, img)
	fill(t, mnt, src)
	unmount()
	r, fsys := openImage(t, img)
	if r.Type() != "exfat" || r.Label() != "EXLABEL" {
		t.Errorf("Type %q Label %q, want exfat EXLABEL", r.Type(), r.Label())
	}
	fstreetest.Compare(t, fsys, src, compareExFAT)
}

// Files appended to in turn have their clusters interleaved: FAT chains,
// not contiguous runs.
func TestFragmented(t *testing.T) {
	img := mkfs(t, 16<<20, "-c", "4096")
	mnt, unmount := mount(t, img)
	src := t.TempDir()
	var outs, ins []*os.File
	for _, name := range []string{"a", "b", "c"} {
		for _, dir := range []string{mnt, src} {
			f, err := os.Create(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if dir == mnt {
				outs = append(outs, f)
			} else {
				ins = append(ins, f)
			}
		}
	}
	for i := range 20 {
		for j := range outs {
			chunk := fstreetest.Random(uint64(i*10+j), 4096+j*100)
			for _, f := range []*os.File{outs[j], ins[j]} {
				if _, err := f.Write(chunk); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, f := range append(outs, ins...) {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	unmount()
	_, fsys := openImage(t, img)
	fstreetest.Compare(t, fsys, src, fstreetest.CompareOptions{})
	for _, name := range []string{"a", "b", "c"} {
		f := contentsOf(t, fsys, name)
		if f.Runs() < 2 {
			t.Errorf("%s: %d runs; want a fragmented chain", name, f.Runs())
		}
	}
}

func contentsOf(t *testing.T, fsys *fstree.FS, name string) *fatchain.File {
	t.Helper()
	return fstreetest.Contents(t, fsys, name).(*fatchain.File)
}

func TestMeta(t *testing.T) {
	img := mkfs(t, 8<<20)
	mnt, unmount := mount(t, img)
	if err := os.WriteFile(filepath.Join(mnt, "ro.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2022, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(mnt, "ro.txt"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	unmount()
	_, fsys := openImage(t, img)
	info, err := fsys.Stat("ro.txt")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := fstree.MetaOf(info)
	if !m.Mtime.Equal(mtime) || m.Btime.IsZero() || m.Atime.IsZero() || m.Attributes&fstree.AttrArchive == 0 || m.Mode != 0o644 {
		t.Errorf("ro.txt: %+v", m)
	}
	info, err = fsys.Stat("sub")
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := fstree.MetaOf(info); m.Attributes&fstree.AttrDirectory == 0 || m.Mode != fs.ModeDir|0o755 {
		t.Errorf("sub: %+v", m)
	}
}

// Reading a small file reads its directory and its cluster, not the rest
// of the volume; 100 bytes of a big file cost about as little.
func TestSmallRead(t *testing.T) {
	src := t.TempDir()
	tree(t, src, map[string][]byte{"sub/small.txt": []byte("small"), "big.bin": fstreetest.Random(7, 4<<20)})
	img := mkfs(t, 32<<20)
	mnt, unmount := mount(t, img)
	fill(t, mnt, src)
	unmount()
	f, size := fstreetest.OpenImage(t, img)
	c := &fstreetest.CountingReaderAt{R: f}
	r, err := Open(c, size)
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstree.New(r)
	c.Reads.Store(0)
	c.Bytes.Store(0)
	b, err := fs.ReadFile(fsys, "sub/small.txt")
	if err != nil || string(b) != "small" {
		t.Fatalf("read %q, %v", b, err)
	}
	cs := r.vol.clusterSize
	if n, size := c.Reads.Load(), c.Bytes.Load(); n > 3 || size > 2*cs+fatchain.PageSize {
		t.Errorf("%d reads of %d bytes for a 5-byte file", n, size)
	}
	c.Bytes.Store(0)
	big, err := fsys.Open("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := big.(io.ReaderAt).ReadAt(buf, 3<<20); err != nil {
		t.Fatal(err)
	}
	if size := c.Bytes.Load(); size > cs+fatchain.PageSize {
		t.Errorf("read %d bytes for 100 bytes of a big file", size)
	}
}

func TestConcurrent(t *testing.T) {
	src := t.TempDir()
	files := map[string][]byte{}
	for i := range 20 {
		files[fmt.Sprintf("d%d/file %d.bin", i%4, i)] = fstreetest.Random(uint64(i), 10000+i*3000)
	}
	tree(t, src, files)
	img := mkfs(t, 16<<20, "-c", "512")
	mnt, unmount := mount(t, img)
	fill(t, mnt, src)
	unmount()
	_, fsys := openImage(t, img)
	fstreetest.ConcurrentReads(t, fsys, files)
}

func appendFile(t testing.TB, name string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
}
