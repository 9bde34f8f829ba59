package xfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// layouts are the mkfs.xfs variants every tree is checked under.
var layouts = []struct {
	name string
	args []string
}{
	{"v5", nil},
	{"v5-1k", []string{"-b", "size=1024"}},
	{"v5-1k-dirblock16k", []string{"-b", "size=1024", "-n", "size=16384"}},
	{"v5-ascii-ci", []string{"-n", "version=ci"}},
	{"v5-nobigtime-nrext64", []string{"-m", "bigtime=0", "-i", "nrext64=1"}},
	{"v4", []string{"-m", "crc=0"}},
	{"v4-1k", []string{"-m", "crc=0", "-b", "size=1024"}},
	{"v4-noftype-inode512", []string{"-m", "crc=0", "-n", "ftype=0", "-i", "size=512"}},
}

// mkfs makes an XFS image of size bytes from the tree under src, with
// mkfs.xfs's own copy of it (a protofile), and returns the image's path.
func mkfs(t testing.TB, src string, size int64, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	proto := filepath.Join(dir, "proto")
	if err := os.WriteFile(proto, protofile(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	// --unsupported allows filesystems below 300 MB, which keeps the
	// images (and the fuzz seeds) small.
	all := append([]string{"--unsupported", "-q", "-f", "-p", proto}, args...)
	fstreetest.Run(t, "mkfs.xfs", append(all, img)...)
	return img
}

// protofile describes the tree under src in mkfs.xfs's prototype
// language: name, type and mode, owner, then a source file, a symlink
// target or device numbers; "$" closes a directory.
func protofile(t testing.TB, src string) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("bulwark\n0 0\n")
	var walk func(dir, name string, depth int)
	walk = func(p, name string, depth int) {
		info, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		mode := info.Mode()
		typ := "-"
		var extra string
		switch mode.Type() {
		case fs.ModeDir:
			typ = "d"
		case fs.ModeSymlink:
			typ = "l"
			target, err := os.Readlink(p)
			if err != nil {
				t.Fatal(err)
			}
			extra = target
		case fs.ModeNamedPipe:
			typ = "p"
		case fs.ModeDevice:
			typ, extra = "b", devNumbers(st.Rdev)
		case fs.ModeDevice | fs.ModeCharDevice:
			typ, extra = "c", devNumbers(st.Rdev)
		case 0:
			extra = p
		default:
			t.Fatalf("%s: cannot put a %v in a protofile", p, mode.Type())
		}
		u, g := "-", "-"
		if mode&fs.ModeSetuid != 0 {
			u = "u"
		}
		if mode&fs.ModeSetgid != 0 {
			g = "g"
		}
		fmt.Fprintf(&b, "%s%s %s%s%s%03o %d %d %s\n", strings.Repeat(" ", depth), name, typ, u, g, mode.Perm(), st.Uid, st.Gid, extra)
		if typ != "d" {
			return
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			walk(filepath.Join(p, e.Name()), e.Name(), depth+1)
		}
		fmt.Fprintf(&b, "%s$\n", strings.Repeat(" ", depth))
	}
	walk(src, "", 0)
	return b.Bytes()
}

// devNumbers splits a Linux device number into major and minor.
func devNumbers(dev uint64) string {
	major := dev>>8&0xfff | dev>>32&^0xfff
	minor := dev&0xff | dev>>12&^0xff
	return fmt.Sprintf("%d %d", major, minor)
}

// tree is a source tree's files, written by writeTree.
type tree struct {
	t   testing.TB
	dir string
	rnd *rand.Rand
}

func (tr tree) file(name string, size int, perm fs.FileMode, uid, gid int) {
	tr.t.Helper()
	p := filepath.Join(tr.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(tr.rnd.Uint32())
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tr.t.Fatal(err)
	}
	tr.own(name, perm, uid, gid)
}

// own sets a file's owner and then its mode, since chown clears setuid.
func (tr tree) own(name string, perm fs.FileMode, uid, gid int) {
	tr.t.Helper()
	p := filepath.Join(tr.dir, name)
	if err := os.Lchown(p, uid, gid); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr tree) link(old, name string) {
	tr.t.Helper()
	p := filepath.Join(tr.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Link(filepath.Join(tr.dir, old), p); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr tree) symlink(name, target string) {
	tr.t.Helper()
	if err := os.Symlink(target, filepath.Join(tr.dir, name)); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr tree) mkdir(name string, perm fs.FileMode) {
	tr.t.Helper()
	if err := os.MkdirAll(filepath.Join(tr.dir, name), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	tr.own(name, perm, 0, 0)
}

// writeTree writes a tree with what the reader must handle: every file
// type, modes and owners, names in UTF-8 and of 255 bytes, short and
// remote symlinks, and directories in each of XFS's formats (short form,
// one block, leaf, node) when bigDir is set.
func writeTree(t testing.TB, dir string, bigDir bool) {
	tr := tree{t: t, dir: dir, rnd: rand.New(rand.NewPCG(1, 2))}
	tr.file("empty", 0, 0o644, 0, 0)
	tr.file("one", 1, 0o644, 0, 0)
	tr.file("small.txt", 100, 0o640, 1000, 100)
	tr.file("odd", 5000, 0o755, 0, 0)
	tr.file("big.bin", 1<<20+123, 0o644, 0, 0)
	tr.file("setuid", 10, 0o755|fs.ModeSetuid, 0, 0)
	tr.file("setgid", 10, 0o750|fs.ModeSetgid, 0, 50)
	tr.file("private", 10, 0o600, 12345, 54321)
	tr.file("héllo-wörld", 20, 0o644, 0, 0)
	tr.file("日本語.txt", 30, 0o644, 0, 0)
	tr.file("emoji-🎉", 40, 0o644, 0, 0)
	tr.file(strings.Repeat("n", 255), 50, 0o644, 0, 0)
	tr.symlink("link-short", "small.txt")
	tr.symlink("link-abs", "/sf/a")
	tr.symlink("link-dir", "deep/a/b")
	tr.symlink("link-long", strings.Repeat("long/", 120))                         // beyond any inode
	tr.symlink("link-max", strings.Repeat("x", 254)+"/"+strings.Repeat("y", 745)) // two 1 KiB blocks on v5
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(dir, "cdev"), syscall.S_IFCHR|0o620, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(dir, "bdev"), syscall.S_IFBLK|0o660, 7<<8|1); err != nil {
		t.Fatal(err)
	}
	tr.mkdir("empty-dir", 0o700)
	tr.file("sf/a", 3, 0o644, 0, 0)
	tr.file("sf/b", 4, 0o644, 0, 0)
	tr.symlink("sf/c", "a")
	tr.file("deep/a/b/c/d/e/file", 77, 0o644, 0, 0)
	// The entries of the large directories are hard links to a few
	// files: creating a file costs milliseconds on some machines, a link
	// microseconds. The protofile copies each link as a file of its own.
	for i := range 10 {
		tr.file(fmt.Sprintf("pool/%d", i), i*i*37, 0o644, 0, 0)
	}
	for i := range 50 {
		tr.link(fmt.Sprintf("pool/%d", i%10), fmt.Sprintf("block/file-%02d", i))
	}
	for i := range 300 {
		tr.link(fmt.Sprintf("pool/%d", i%10), fmt.Sprintf("leaf/entry-number-%03d", i))
	}
	if bigDir {
		for i := range 5000 {
			pool := 0 // empty, mostly, to keep the image small
			if i%500 == 0 {
				pool = i / 500
			}
			tr.link(fmt.Sprintf("pool/%d", pool), nodeName(i))
		}
	}
	tr.own(".", 0o755, 0, 0)
}

// nodeName is the name of the node directory's entry i. Some have
// capitals, which case-insensitive XFS folds before hashing.
func nodeName(i int) string {
	prefix := "entry"
	if i%3 == 0 {
		prefix = "Entry"
	}
	return fmt.Sprintf("node/%s-%05d-%s", prefix, i, strings.Repeat("z", i%40))
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

func sourceTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, true)
	return dir
}

// TestLayouts makes the same tree under each layout and compares every
// file, type, symlink target, mode and owner; it also checks which data
// fork formats the directories came out in, so that each is covered.
func TestLayouts(t *testing.T) {
	src := sourceTree(t)
	btrees := 0 // layouts where the node directory's blocks are in an extent tree
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			start := time.Now().Add(-2 * time.Second)
			img := mkfs(t, src, 64<<20, slices.Concat(l.args, []string{"-L", "bulwark-" + l.name[:2]})...)
			r, fsys := open(t, img)
			opts := fstreetest.CompareOptions{Mode: true, Owner: true, Symlink: true}
			if r.sb.v5 {
				// mkfs.xfs 6.1 writes a protofile's remote symlinks
				// without the headers version 5 requires, which the
				// kernel and xfs_repair reject too; TestRemoteSymlinkV5
				// and TestMounted cover real ones.
				opts.Skip = func(p string) bool { return p == "link-long" || p == "link-max" }
				for _, p := range []string{"link-long", "link-max"} {
					if _, err := fsys.ReadLink(p); !errors.Is(err, fstree.ErrCorrupt) {
						t.Errorf("ReadLink(%s) of a headerless block: %v, want ErrCorrupt", p, err)
					}
				}
			}
			fstreetest.Compare(t, fsys, src, opts)
			if fsys.Type() != "xfs" || fsys.Label() != "bulwark-"+l.name[:2] {
				t.Errorf("type %q label %q", fsys.Type(), fsys.Label())
			}
			formats := map[string]uint8{}
			for _, p := range []string{"sf", "block", "leaf", "node"} {
				in := lookupInode(t, r, fsys, p)
				formats[p] = in.format
			}
			if formats["sf"] != formatLocal || formats["block"] == formatLocal || formats["node"] == formatLocal {
				t.Errorf("directory formats %v: want sf local, the others in blocks", formats)
			}
			if formats["node"] == formatBtree {
				btrees++
			}
			in := lookupInode(t, r, fsys, "small.txt")
			m := in.Meta()
			if m.Mtime.Before(start) || m.Mtime.After(time.Now()) || m.Ctime.Before(start) {
				t.Errorf("small.txt times %v %v, want about %v", m.Mtime, m.Ctime, start)
			}
			if r.sb.v5 != m.Btime.After(start) {
				t.Errorf("small.txt birth time %v on v5=%v", m.Btime, r.sb.v5)
			}
			if m.Nlink != 1 || m.Inode != in.ino {
				t.Errorf("small.txt nlink %d inode %d", m.Nlink, m.Inode)
			}
			if m := lookupInode(t, r, fsys, "sf").Meta(); m.Nlink != 2 {
				t.Errorf("sf nlink %d, want 2", m.Nlink)
			}
			if m := lookupInode(t, r, fsys, "deep/a").Meta(); m.Nlink != 3 {
				t.Errorf("deep/a nlink %d, want 3", m.Nlink)
			}
			// The hash index finds names.
			node := lookupInode(t, r, fsys, "node")
			for _, i := range []int{0, 1, 2, 999, 4998, 4999} {
				name := strings.TrimPrefix(nodeName(i), "node/")
				if _, found, err := r.lookupHashed(node, []byte(name)); !found || err != nil {
					t.Errorf("lookupHashed(%s): %v, %v", name, found, err)
				}
			}
			// Listing through the hash index and through the data
			// blocks agree.
			entries, err := fsys.ReadDir("node")
			if err != nil || len(entries) != 5000 {
				t.Fatalf("ReadDir(node): %d entries, %v", len(entries), err)
			}
			if b, err := fs.ReadFile(fsys, "link-dir/c/d/e/file"); err != nil || len(b) != 77 {
				t.Errorf("through a symlink: %d bytes, %v", len(b), err)
			}
			if _, err := fsys.Stat("node/absent"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat(node/absent): %v", err)
			}
		})
	}
	if btrees < len(layouts)/2 {
		t.Errorf("the node directory is an extent tree in %d layouts of %d", btrees, len(layouts))
	}
}

// lookupInode returns the inode behind a path, not following a final
// symlink.
func lookupInode(t testing.TB, r *Reader, fsys *fstree.FS, p string) *inode {
	t.Helper()
	info, err := fsys.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := fstree.MetaOf(info)
	in, err := r.inode(m.Inode)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// countingReader counts the reads of a volume.
type countingReader struct {
	r     io.ReaderAt
	mu    chan struct{}
	reads []string
	bytes int64
}

func newCounting(r io.ReaderAt) *countingReader {
	return &countingReader{r: r, mu: make(chan struct{}, 1)}
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.mu <- struct{}{}
	c.reads = append(c.reads, fmt.Sprintf("%d@%d", len(p), off))
	c.bytes += int64(len(p))
	<-c.mu
	return c.r.ReadAt(p, off)
}

func (c *countingReader) reset() (reads []string, bytes int64) {
	c.mu <- struct{}{}
	reads, bytes = c.reads, c.bytes
	c.reads, c.bytes = nil, 0
	<-c.mu
	return reads, bytes
}

// TestFewReads checks that reading one small file reads the inodes on its
// path, the directory blocks that find it and its data, and nothing else:
// in a node directory of 5000 entries through the hash index too.
func TestFewReads(t *testing.T) {
	src := sourceTree(t)
	img := mkfs(t, src, 64<<20, "-b", "size=1024")
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := newCounting(f)
	r, err := Open(c, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstree.New(r)
	c.reset()
	for _, tc := range []struct {
		path     string
		maxReads int
	}{
		{"sf/a", 5},          // root inode and block, sf, a, data
		{"block/file-07", 4}, // block's inode and block, file, data (root cached)
		{nodeName(1000), 9},  // node inode, bmbt leaf, index root, leaf, data block, inode, data
		{"deep/a/b/c/d/e/file", 8},
	} {
		b, err := fs.ReadFile(fsys, tc.path)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		reads, n := c.reset()
		if len(reads) > tc.maxReads || n > int64(len(b))+16<<10 {
			t.Errorf("%s: %d reads of %d bytes, want at most %d: %v", tc.path, len(reads), n, tc.maxReads, reads)
		}
	}
	// A small read in the middle of a large file is one read of its size.
	file, err := fsys.Open("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	c.reset()
	buf := make([]byte, 100)
	if _, err := file.(io.ReaderAt).ReadAt(buf, 512<<10+7); err != nil {
		t.Fatal(err)
	}
	if reads, n := c.reset(); len(reads) != 1 || n != 100 {
		t.Errorf("100 bytes of big.bin: %v", reads)
	}
}

// TestConcurrent reads every file from many goroutines at once; run it
// with -race.
func TestConcurrent(t *testing.T) {
	src := sourceTree(t)
	img := mkfs(t, src, 64<<20, "-b", "size=1024", "-m", "crc=0")
	_, fsys := open(t, img)
	var paths []string
	want := map[string]string{}
	n := 0
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		// A sample of the node directory, whose blocks are in an extent
		// tree, and everything else.
		if n++; err == nil && d.Type().IsRegular() && (!strings.HasPrefix(p, "node/") || n%50 == 0) {
			paths = append(paths, p)
			want[p], err = fstreetest.HashFile(os.DirFS(src), p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var err error
			for i := range paths {
				p := paths[(i*7+g*13)%len(paths)]
				sum, herr := fstreetest.HashFile(fsys, p)
				if herr != nil || sum != want[p] {
					err = fmt.Errorf("%s: %s, %v", p, sum, herr)
					break
				}
				if _, err = fsys.Lstat(p); err != nil {
					break
				}
				if i%10 == g {
					if _, err = fsys.ReadDir(filepath.Dir(p)); err != nil {
						break
					}
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestNotXFS checks that another filesystem, or none, is not recognized.
func TestNotXFS(t *testing.T) {
	img := filepath.Join(t.TempDir(), "ext")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	fstreetest.Run(t, "mke2fs", "-q", "-F", img)
	b := fstreetest.ReadImage(t, img)
	for _, vol := range [][]byte{b, nil, make([]byte, 4096)} {
		if _, err := Open(bytes.NewReader(vol), int64(len(vol))); !errors.Is(err, fstree.ErrUnrecognized) {
			t.Errorf("Open of %d bytes: %v, want ErrUnrecognized", len(vol), err)
		}
	}
}
