package extfs_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/extfs"
	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// hostileTree is a small tree to damage: nested directories, a file with
// its extents in the inode, and one with an extent tree of depth 1.
func hostileTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "a/b/c"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"small":       []byte("small\n"),
		"a/b/c/file":  []byte("deep\n"),
		"evil-name-1": []byte("1"),
		"evil-name-2": []byte("2"),
	} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(src, "frag"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 { // more extents than the inode holds
		if _, err := f.WriteAt(fstreetest.Random(uint64(i), 100), int64(i)<<16); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	return src
}

// debugfs runs debugfs commands that write the image.
func debugfs(t *testing.T, img string, cmds ...string) string {
	t.Helper()
	var out string
	for _, c := range cmds {
		out += fstreetest.Run(t, "debugfs", "-w", "-R", c, img)
	}
	return out
}

// patch writes b at off of an image.
func patch(t *testing.T, img string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// openFS opens an image and fails the test unless that works.
func openFS(t *testing.T, img string) *fstree.FS {
	t.Helper()
	fsys, _ := openImage(t, img)
	return fsys
}

// readAll reads a file of fsys whole.
func readAll(fsys fs.FS, name string) error {
	_, err := fs.ReadFile(fsys, name)
	return err
}

func TestHostileDirectoryLoops(t *testing.T) {
	img := mkfs(t, hostileTree(t), "8M", "-t", "ext4", "-b", "1024")
	debugfs(t, img,
		"link a a/b/c/up",     // an ancestor
		"link a/b a/b/self",   // the directory itself
		"link / a/root",       // the root
		"link a/b/c a/b/twin", // a second name for a directory in the same parent
	)
	fsys := openFS(t, img)
	for _, name := range []string{"a/b/c/up", "a/b/self", "a/root"} {
		_, err := fsys.Stat(name)
		fstreetest.WantCorrupt(t, name, err)
		_, err = fsys.ReadDir(name)
		fstreetest.WantCorrupt(t, name, err)
	}
	_, err := fsys.ReadDir("a/b")
	fstreetest.WantCorrupt(t, "a/b, which lists a/b/c twice", err)
	if _, err := fsys.ReadDir("a/b/c"); err != nil {
		t.Errorf("a/b/c: %v", err)
	}
	// The walk ends, with errors where the loops are.
	visited := 0
	errs := 0
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if visited++; visited > 1000 {
			t.Fatalf("walk did not end: at %s", p)
		}
		if err != nil {
			errs++
		}
		return nil
	})
	if errs == 0 {
		t.Errorf("walk met no errors")
	}
}

// extentLeaf returns the block of the first extent tree leaf of a file.
func extentLeaf(t *testing.T, img, name string) int64 {
	t.Helper()
	out := fstreetest.Run(t, "debugfs", "-R", "stat "+name, img)
	m := regexp.MustCompile(`\(ETB0\):(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s has no extent tree block:\n%s", name, out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func TestHostileExtents(t *testing.T) {
	src := hostileTree(t)
	mk := func(t *testing.T) string { return mkfs(t, src, "8M", "-t", "ext4", "-b", "1024") }
	read := func(t *testing.T, img, name string) {
		t.Helper()
		fstreetest.WantCorrupt(t, name, readAll(openFS(t, img), name))
	}

	t.Run("depth", func(t *testing.T) {
		img := mk(t)
		// i_block[1]: eh_max 4, eh_depth 6.
		debugfs(t, img, "sif small block[1] 0x00060004")
		read(t, img, "small")
	})
	t.Run("cycle", func(t *testing.T) {
		img := mk(t)
		leaf := extentLeaf(t, img, "frag")
		// The root claims depth 2; the leaf becomes an index of depth 1
		// whose one entry points back at itself.
		debugfs(t, img, "sif frag block[1] 0x00020004")
		node := make([]byte, 24)
		binary.LittleEndian.PutUint16(node[0:], 0xf30a)
		binary.LittleEndian.PutUint16(node[2:], 1)
		binary.LittleEndian.PutUint16(node[4:], 84)
		binary.LittleEndian.PutUint16(node[6:], 1)
		binary.LittleEndian.PutUint32(node[16:], uint32(leaf))
		patch(t, img, leaf*1024, node)
		read(t, img, "frag")
	})
	t.Run("huge-size-garbage", func(t *testing.T) {
		img := mk(t)
		debugfs(t, img, "sif small size 0x4000000000000000", "sif small block[0] 0x12345678")
		fsys := openFS(t, img)
		info, err := fsys.Stat("small")
		if err != nil || info.Size() != 1<<62 {
			t.Fatalf("small: %v, %v", info, err)
		}
		_, err = fsys.Open("small")
		fstreetest.WantCorrupt(t, "open", err)
	})
	t.Run("garbage", func(t *testing.T) {
		img := mk(t)
		debugfs(t, img, "sif small block[0] 0x12345678")
		read(t, img, "small")
	})
	t.Run("beyond-volume", func(t *testing.T) {
		img := mk(t)
		// i_block[5]: the first extent's start, low 32 bits.
		debugfs(t, img, "sif small block[5] 0x7fffff00")
		read(t, img, "small")
	})
	t.Run("overlap", func(t *testing.T) {
		img := mk(t)
		leaf := extentLeaf(t, img, "frag")
		// The second extent starts inside the first.
		b := make([]byte, 4)
		binary.LittleEndian.PutUint32(b, 0)
		patch(t, img, leaf*1024+24, b)
		read(t, img, "frag")
	})
	t.Run("superblock", func(t *testing.T) {
		img := mk(t)
		debugfs(t, img, "sif small block[5] 1")
		read(t, img, "small")
	})
}

func TestHostileBlockMap(t *testing.T) {
	src := hostileTree(t)
	mk := func(t *testing.T) string { return mkfs(t, src, "8M", "-t", "ext2", "-b", "1024") }
	t.Run("direct-beyond-volume", func(t *testing.T) {
		img := mk(t)
		debugfs(t, img, "sif small block[0] 0x7fffff00")
		fstreetest.WantCorrupt(t, "small", readAll(openFS(t, img), "small"))
	})
	t.Run("indirect-beyond-volume", func(t *testing.T) {
		img := mk(t)
		debugfs(t, img, "sif frag block[IND] 0x7fffff00")
		fstreetest.WantCorrupt(t, "frag", readAll(openFS(t, img), "frag"))
	})
	t.Run("cross-linked", func(t *testing.T) {
		// The double indirect block is the single indirect one: its data
		// pointers are taken for indirect blocks, and the data they point
		// at for block numbers. The read ends, with an error or garbage.
		img := mk(t)
		out := fstreetest.Run(t, "debugfs", "-R", "stat frag", img)
		m := regexp.MustCompile(`\(IND\):(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("frag has no indirect block:\n%s", out)
		}
		debugfs(t, img, "sif frag block[DIND] "+m[1], "sif frag size 0x4000000")
		err := readAll(openFS(t, img), "frag")
		if err != nil && !errors.Is(err, fstree.ErrCorrupt) {
			t.Errorf("frag: %v", err)
		}
	})
	t.Run("huge-size", func(t *testing.T) {
		img := mk(t)
		// Past what three levels of 256 pointers address.
		debugfs(t, img, "sif small size 0x4000000000")
		_, err := openFS(t, img).Open("small")
		fstreetest.WantCorrupt(t, "small", err)
	})
}

func TestHostileDirectories(t *testing.T) {
	src := hostileTree(t)
	mk := func(t *testing.T) string { return mkfs(t, src, "8M", "-t", "ext4", "-b", "1024") }
	// rootBlock returns the offset of the root directory's block.
	rootBlock := func(t *testing.T, img string) int64 {
		out, err := exec.Command(toolPath("debugfs"), "-R", "bmap / 0", img).Output()
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(out)), 10, 64)
		if err != nil {
			t.Fatalf("bmap: %q", out)
		}
		return n * 1024
	}
	t.Run("slash-in-name", func(t *testing.T) {
		img := mk(t)
		b := fstreetest.ReadImage(t, img)
		root := rootBlock(t, img)
		i := bytes.Index(b[root:root+1024], []byte("evil-name-1"))
		if i < 0 {
			t.Fatal("no evil-name-1 in the root directory")
		}
		patch(t, img, root+int64(i)+4, []byte("/"))
		entries, err := openFS(t, img).ReadDir(".")
		fstreetest.WantCorrupt(t, "ReadDir", err)
		if len(entries) < 3 {
			t.Errorf("ReadDir gave %d entries with its error, want the others", len(entries))
		}
	})
	t.Run("rec_len", func(t *testing.T) {
		img := mk(t)
		root := rootBlock(t, img)
		patch(t, img, root+12+4, []byte{3, 0}) // ".." of length 3
		_, err := openFS(t, img).ReadDir(".")
		fstreetest.WantCorrupt(t, "ReadDir", err)
	})
	t.Run("rec_len-past-block", func(t *testing.T) {
		img := mk(t)
		root := rootBlock(t, img)
		patch(t, img, root+12+4, []byte{0, 8}) // ".." of 2048 bytes in a 1 KiB block
		_, err := openFS(t, img).ReadDir(".")
		fstreetest.WantCorrupt(t, "ReadDir", err)
	})
	t.Run("inode-out-of-range", func(t *testing.T) {
		img := mk(t)
		b := fstreetest.ReadImage(t, img)
		root := rootBlock(t, img)
		i := bytes.Index(b[root:root+1024], []byte("evil-name-1"))
		patch(t, img, root+int64(i)-8, []byte{0xff, 0xff, 0xff, 0x7f})
		_, err := openFS(t, img).ReadDir(".")
		fstreetest.WantCorrupt(t, "ReadDir", err)
	})
	t.Run("type-mismatch", func(t *testing.T) {
		img := mk(t)
		b := fstreetest.ReadImage(t, img)
		root := rootBlock(t, img)
		i := bytes.Index(b[root:root+1024], []byte("evil-name-1"))
		patch(t, img, root+int64(i)-1, []byte{2}) // says directory
		_, err := openFS(t, img).Stat("evil-name-1")
		fstreetest.WantCorrupt(t, "Stat", err)
	})
	t.Run("free-inode", func(t *testing.T) {
		img := mk(t)
		debugfs(t, img, "clri evil-name-2")
		_, err := openFS(t, img).Stat("evil-name-2")
		fstreetest.WantCorrupt(t, "Stat", err)
	})
	t.Run("huge-directory", func(t *testing.T) {
		img := mk(t)
		debugfs(t, img, "sif a size 0x40000000")
		_, err := openFS(t, img).ReadDir("a")
		fstreetest.WantCorrupt(t, "ReadDir", err)
	})
	t.Run("htree", func(t *testing.T) {
		src := t.TempDir()
		if err := os.Mkdir(filepath.Join(src, "dir"), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			if err := os.WriteFile(filepath.Join(src, "dir", "a-rather-long-file-name-"+strconv.Itoa(i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			name string
			off  int64 // in the index root block; -1: every entry's block
			b    []byte
		}{
			{"levels", 30, []byte{5}},
			{"count", 34, []byte{0xff, 0xff}},
			{"leaf-past-size", -1, []byte{0xff, 0xff, 0xff, 0x00}},
			{"leaf-is-root", -1, []byte{0, 0, 0, 0}},
		} {
			t.Run(c.name, func(t *testing.T) {
				img := mkfs(t, src, "8M", "-t", "ext4", "-b", "1024")
				runAllowing(t, 1, "e2fsck", "-fyD", img)
				out, err := exec.Command(toolPath("debugfs"), "-R", "bmap dir 0", img).Output()
				if err != nil {
					t.Fatal(err)
				}
				blk, err := strconv.ParseInt(string(bytes.TrimSpace(out)), 10, 64)
				if err != nil {
					t.Fatalf("bmap: %q", out)
				}
				if c.off >= 0 {
					patch(t, img, blk*1024+c.off, c.b)
				} else {
					root := fstreetest.ReadImage(t, img)[blk*1024:][:1024]
					for i := range int(binary.LittleEndian.Uint16(root[34:])) {
						patch(t, img, blk*1024+36+8*int64(i), c.b)
					}
				}
				fsys := openFS(t, img)
				_, err = fsys.Stat("dir/a-rather-long-file-name-7")
				fstreetest.WantCorrupt(t, "Stat", err)
				// Listing reads the leaves, not the index.
				if entries, err := fsys.ReadDir("dir"); err != nil || len(entries) != 200 {
					t.Errorf("ReadDir: %d entries, %v", len(entries), err)
				}
			})
		}
	})
	t.Run("symlink-size", func(t *testing.T) {
		img := mk(t)
		fstreetest.Run(t, "debugfs", "-w", "-R", "symlink link "+string(bytes.Repeat([]byte("x"), 100)), img)
		debugfs(t, img, "sif link size 100000")
		_, err := openFS(t, img).ReadLink("link")
		fstreetest.WantCorrupt(t, "ReadLink", err)
	})
}

func TestHostileSuperblock(t *testing.T) {
	src := hostileTree(t)
	for _, c := range []struct {
		name string
		off  int64
		b    []byte
	}{
		{"block-size", 1024 + 0x18, []byte{20, 0, 0, 0}},
		{"blocks-per-group", 1024 + 0x20, []byte{0, 0, 0, 0}},
		{"inodes-per-group", 1024 + 0x28, []byte{0xff, 0xff, 0xff, 0xff}},
		{"inode-size", 1024 + 0x58, []byte{100, 0}},
		{"inode-table", 2048 + 8, []byte{0xff, 0xff, 0xff, 0x0f}}, // group 0's descriptor
	} {
		t.Run(c.name, func(t *testing.T) {
			img := mkfs(t, src, "8M", "-t", "ext4", "-b", "1024", "-O", "^metadata_csum")
			patch(t, img, c.off, c.b)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = extfs.Open(f, 8<<20)
			fstreetest.WantCorrupt(t, "Open", err)
		})
	}
	t.Run("truncated-volume", func(t *testing.T) {
		img := mkfs(t, src, "8M", "-t", "ext4", "-b", "1024")
		b := fstreetest.ReadImage(t, img)
		// The volume ends before the files' blocks.
		size := int64(300 << 10)
		r, err := extfs.Open(bytes.NewReader(b[:size]), size)
		if err == nil {
			err = readAll(fstree.New(r), "frag")
		}
		fstreetest.WantCorrupt(t, "frag", err)
	})
}

// TestRefused checks that files this package cannot decode are refused,
// alone.
func TestRefused(t *testing.T) {
	img := mkfs(t, hostileTree(t), "8M", "-t", "ext4", "-b", "1024")
	debugfs(t, img, "sif small flags 0x80800", "sif a flags 0x80800") // encrypted
	fsys := openFS(t, img)
	if err := readAll(fsys, "small"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("encrypted file: %v, want ErrUnsupported", err)
	}
	if _, err := fsys.ReadDir("a"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("encrypted directory: %v, want ErrUnsupported", err)
	}
	if err := readAll(fsys, "frag"); err != nil {
		t.Errorf("frag: %v", err)
	}
}
