package fat

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
	"github.com/bulwarkbackup/bulwark/restore/internal/fatchain"
)

// mkfs makes a FAT image of kb KiB with mkfs.vfat.
func mkfs(t testing.TB, kb int, args ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fat.img")
	fstreetest.Run(t, "mkfs.vfat", append(args, "-C", img, fmt.Sprint(kb))...)
	return img
}

// mtools runs an mtools command on an image. mtools writes times in the
// local zone, which the reader takes as UTC.
func mtools(t testing.TB, cmd, img string, args ...string) {
	t.Helper()
	t.Setenv("MTOOLS_SKIP_CHECK", "1")
	t.Setenv("TZ", "UTC")
	fstreetest.Run(t, cmd, append([]string{"-i", img}, args...)...)
}

// fill copies the tree under src into the image's root, keeping times.
func fill(t testing.TB, img, src string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-s", "-m"}
	for _, e := range entries {
		args = append(args, filepath.Join(src, e.Name()))
	}
	mtools(t, "mcopy", img, append(args, "::")...)
}

func open(t testing.TB, img string) (*Reader, *fstree.FS) {
	t.Helper()
	f, size := fstreetest.OpenImage(t, img)
	r, err := Open(f, size)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r, fstree.New(r)
}

// tree writes files under dir: name -> contents. Names ending in "/" are
// directories. Modification times are set on odd seconds, which FAT
// rounds down.
func tree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	fstreetest.WriteTree(t, dir, files, time.Date(2021, 3, 4, 5, 6, 7, 890e6, time.UTC))
}

var compareFAT = fstreetest.CompareOptions{Mtime: 2 * time.Second}

// names holds what FAT names can be: long, Unicode, lower case 8.3 names
// (kept as case bits, not long names), names that differ only in case (in
// different directories: FAT compares names without case), empty files
// and directories nested deeper than ten.
func names() map[string][]byte {
	deep := strings.Repeat("level/", 12)
	return map[string][]byte{
		"lower.txt":     []byte("lower\n"),
		"UPPER.TXT":     []byte("upper\n"),
		"MixedCase.Txt": []byte("mixed\n"),
		"base.TXT":      nil, // lower base, upper extension: case bits
		"dir1/Case.txt": []byte("one\n"),
		"dir2/CASE.TXT": []byte("two\n"),
		"dir3/case.txt": []byte("three\n"),
		"日本語.txt":       []byte("にほんご\n"),
		"Ünïcödé/ñ.txt": []byte("unicode\n"),
		"empty":         nil,
		"emptydir/":     nil,
		"a long name with spaces and more than thirteen characters, twice over.text": []byte("long\n"),
		"multi.part.name.tar.gz": []byte("dots\n"),
		deep + "bottom.txt":      []byte("deep\n"),
	}
}

func TestFAT12(t *testing.T) {
	src := t.TempDir()
	files := names()
	tree(t, src, files)
	img := mkfs(t, 1440, "-F", "12", "-n", "SMALL")
	fill(t, img, src)
	r, fsys := open(t, img)
	if r.Type() != "fat12" || r.Label() != "SMALL" {
		t.Errorf("Type %q Label %q, want fat12 SMALL", r.Type(), r.Label())
	}
	fstreetest.Compare(t, fsys, src, compareFAT)
}

func TestFAT16(t *testing.T) {
	src := t.TempDir()
	files := names()
	// mcopy takes time to invent a short name for each long one: most
	// names here are short, in both cases.
	for i := range 1000 {
		name := fmt.Sprintf("F%04d.TXT", i)
		switch {
		case i%2 == 1:
			name = strings.ToLower(name)
		case i%20 == 0:
			name = fmt.Sprintf("file number %04d.text", i)
		}
		files["many/"+name] = []byte(fmt.Sprint(i))
	}
	files["big.bin"] = fstreetest.Random(1, 3<<20+123)
	tree(t, src, files)
	img := mkfs(t, 16<<10, "-F", "16", "-n", "SIXTEEN")
	fill(t, img, src)
	r, fsys := open(t, img)
	if r.Type() != "fat16" || r.Label() != "SIXTEEN" {
		t.Errorf("Type %q Label %q, want fat16 SIXTEEN", r.Type(), r.Label())
	}
	fstreetest.Compare(t, fsys, src, compareFAT)
}

func TestFAT32(t *testing.T) {
	for _, tc := range []struct {
		sector, kb int
	}{
		{512, 40 << 10},
		{4096, 300 << 10}, // 65525 clusters of 4 KiB: sparse
	} {
		t.Run(fmt.Sprint(tc.sector), func(t *testing.T) {
			src := t.TempDir()
			files := names()
			files["big.bin"] = fstreetest.Random(2, 5<<20+7)
			tree(t, src, files)
			img := mkfs(t, tc.kb, "-F", "32", "-S", fmt.Sprint(tc.sector), "-s", "1", "-n", "THIRTYTWO")
			fill(t, img, src)
			r, fsys := open(t, img)
			if r.Type() != "fat32" || r.Label() != "THIRTYTWO" || r.vol.clusterSize != int64(tc.sector) {
				t.Errorf("Type %q Label %q cluster %d", r.Type(), r.Label(), r.vol.clusterSize)
			}
			fstreetest.Compare(t, fsys, src, compareFAT)
		})
	}
}

// mkfs.fat makes a FAT32 volume of fewer clusters than Microsoft's rule
// wants when asked to; its boot sector has no fixed root to read as FAT16.
// (mtools cannot fill it: it goes by the cluster count.)
func TestSmallFAT32(t *testing.T) {
	img := mkfs(t, 2000, "-F", "32", "-n", "TINY")
	r, fsys := open(t, img)
	if r.Type() != "fat32" || r.Label() != "TINY" {
		t.Errorf("Type %q Label %q, want fat32 TINY", r.Type(), r.Label())
	}
	if entries, err := fsys.ReadDir("."); err != nil || len(entries) != 0 {
		t.Errorf("root: %v, %v; want it empty", entries, err)
	}
}

// A file written into the hole another left is in two pieces.
func TestFragmented(t *testing.T) {
	src := t.TempDir()
	tree(t, src, map[string][]byte{
		"a": fstreetest.Random(3, 5000), "b": fstreetest.Random(4, 5000), "c": fstreetest.Random(5, 5000),
	})
	img := mkfs(t, 4096, "-F", "16", "-s", "1")
	fill(t, img, src)
	mtools(t, "mdel", img, "::/b")
	os.Remove(filepath.Join(src, "b"))
	tree(t, src, map[string][]byte{"d": fstreetest.Random(6, 20000)})
	mtools(t, "mcopy", img, "-m", filepath.Join(src, "d"), "::")
	_, fsys := open(t, img)
	fstreetest.Compare(t, fsys, src, compareFAT)
	if f := contentsOf(t, fsys, "d"); f.Runs() < 2 {
		t.Errorf("d in %d runs, want a fragmented file", f.Runs())
	}
}

func contentsOf(t *testing.T, fsys *fstree.FS, name string) *fatchain.File {
	t.Helper()
	return fstreetest.Contents(t, fsys, name).(*fatchain.File)
}

func TestAttributes(t *testing.T) {
	src := t.TempDir()
	tree(t, src, map[string][]byte{"ro.txt": []byte("x"), "plain.txt": []byte("y"), "sub/": nil})
	img := mkfs(t, 1440, "-F", "12")
	fill(t, img, src)
	mtools(t, "mattrib", img, "+r", "+h", "::/ro.txt")
	mtools(t, "mattrib", img, "-a", "::/plain.txt")
	_, fsys := open(t, img)
	for _, tc := range []struct {
		name  string
		attrs uint32
		mode  fs.FileMode
	}{
		{"ro.txt", fstree.AttrReadOnly | fstree.AttrHidden | fstree.AttrArchive, 0o444},
		{"plain.txt", 0, 0o644},
		{"sub", fstree.AttrDirectory, fs.ModeDir | 0o755},
		{".", fstree.AttrDirectory, fs.ModeDir | 0o755},
	} {
		info, err := fsys.Stat(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := fstree.MetaOf(info)
		if m.Attributes != tc.attrs || m.Mode != tc.mode {
			t.Errorf("%s: attributes %#x mode %v, want %#x %v", tc.name, m.Attributes, m.Mode, tc.attrs, tc.mode)
		}
		if tc.name == "ro.txt" {
			want := time.Date(2021, 3, 4, 5, 6, 6, 0, time.UTC)
			if !m.Mtime.Equal(want) || m.Btime.IsZero() || m.Atime.IsZero() {
				t.Errorf("%s: mtime %v (want %v), btime %v, atime %v", tc.name, m.Mtime, want, m.Btime, m.Atime)
			}
		}
	}
}

// Reading a small file of a big volume reads its directory, one FAT page
// and its cluster, not the rest.
func TestSmallRead(t *testing.T) {
	src := t.TempDir()
	tree(t, src, map[string][]byte{"sub/small.txt": []byte("small"), "big.bin": fstreetest.Random(7, 4<<20)})
	img := mkfs(t, 40<<10, "-F", "32", "-s", "1")
	fill(t, img, src)
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
	// sub's cluster and its FAT page, the file's cluster.
	if n, size := c.Reads.Load(), c.Bytes.Load(); n > 4 || size > 3*fatchain.PageSize {
		t.Errorf("%d reads of %d bytes for a 5-byte file", n, size)
	}
	c.Reads.Store(0)
	c.Bytes.Store(0)
	big, err := fsys.Open("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := big.(io.ReaderAt).ReadAt(buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	if size := c.Bytes.Load(); size > 4*fatchain.PageSize {
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
	img := mkfs(t, 8<<10, "-F", "16", "-s", "1")
	fill(t, img, src)
	_, fsys := open(t, img)
	fstreetest.ConcurrentReads(t, fsys, files)
}
