package xfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// baseImages are made once per layout and patched by each test.
var baseImages = struct {
	sync.Mutex
	m map[string][]byte
}{m: map[string][]byte{}}

// baseImage returns a copy of an image of the full tree (with the node
// directory), v5 or v4, 1 KiB blocks.
func baseImage(t *testing.T, v5 bool) []byte {
	t.Helper()
	name, args := "v5", []string{"-b", "size=1024"}
	if !v5 {
		name, args = "v4", []string{"-m", "crc=0", "-b", "size=1024"}
	}
	baseImages.Lock()
	defer baseImages.Unlock()
	if b, ok := baseImages.m[name]; ok {
		return bytes.Clone(b)
	}
	src := t.TempDir()
	writeTree(t, src, true)
	b := fstreetest.ReadImage(t, mkfs(t, src, 32<<20, args...))
	baseImages.m[name] = b
	return bytes.Clone(b)
}

// image is a patchable image and what its reader says about it before
// patching.
type image struct {
	t  *testing.T
	b  []byte
	r  *Reader
	fs *fstree.FS
	be binary.ByteOrder
	sb *super
}

func newImage(t *testing.T, v5 bool) *image {
	b := baseImage(t, v5)
	r, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return &image{t: t, b: b, r: r, fs: fstree.New(r), be: binary.BigEndian, sb: r.sb}
}

// inode returns the parsed inode of a path and its offset in the image.
func (im *image) inode(p string) (*inode, int64) {
	im.t.Helper()
	in := lookupInode(im.t, im.r, im.fs, p)
	off, err := im.sb.inodeOffset(in.ino)
	if err != nil {
		im.t.Fatal(err)
	}
	return in, off
}

// forkOffset is where an inode's data fork starts.
func (im *image) forkOffset(p string) int64 {
	_, off := im.inode(p)
	if im.sb.v5 {
		return off + coreSizeV3
	}
	return off + coreSizeV2
}

func (im *image) blockOffset(fsb uint64) int64 {
	im.t.Helper()
	off, err := im.sb.blockOffset(fsb, 1)
	if err != nil {
		im.t.Fatal(err)
	}
	return off
}

func (im *image) put16(off int64, v uint16) { im.be.PutUint16(im.b[off:], v) }
func (im *image) put32(off int64, v uint32) { im.be.PutUint32(im.b[off:], v) }
func (im *image) put64(off int64, v uint64) { im.be.PutUint64(im.b[off:], v) }

// reopen opens the patched image with a fresh reader.
func (im *image) reopen() (*fstree.FS, error) {
	r, err := Open(bytes.NewReader(im.b), int64(len(im.b)))
	if err != nil {
		return nil, err
	}
	return fstree.New(r), nil
}

// within fails the test if f does not return in time: a hostile image
// must not make the reader loop.
func within(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("still running after 20 s")
	}
}

// TestHostile patches one structure at a time and checks that the reader
// says the image is corrupt, and returns.
func TestHostile(t *testing.T) {
	for _, v5 := range []bool{true, false} {
		name := "v4"
		if v5 {
			name = "v5"
		}
		t.Run(name, func(t *testing.T) { testHostile(t, v5) })
	}
}

func testHostile(t *testing.T, v5 bool) {
	cases := []struct {
		name  string
		patch func(im *image)
		check func(t *testing.T, fsys *fstree.FS)
	}{{
		// The node directory's extent tree: root in the inode at level
		// 1 above one leaf. The leaf becomes a node pointing at itself,
		// the root says level 2.
		name: "bmbt cycle",
		patch: func(im *image) {
			in, _ := im.inode("node")
			fork := im.forkOffset("node")
			leaf := im.blockOffset(in.root.ptrs[0])
			hdr := int64(bmbtHdrV4)
			if v5 {
				hdr = bmbtHdrV5
			}
			maxRecs := (int64(im.sb.blockSize) - hdr) / 16
			im.put16(fork, 2)
			im.put16(leaf+4, 1)
			im.put16(leaf+6, 1)
			im.put64(leaf+hdr, 0)
			im.put64(leaf+hdr+maxRecs*8, in.root.ptrs[0])
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.ReadDir("node")
			fstreetest.WantCorrupt(t, "ReadDir(node)", err)
			_, err = fsys.Stat("node/entry-00007-zzzzzzz")
			fstreetest.WantCorrupt(t, "Stat(node/entry-00007-zzzzzzz)", err)
		},
	}, {
		name: "bmbt self pointer at level 0",
		patch: func(im *image) {
			in, _ := im.inode("node")
			leaf := im.blockOffset(in.root.ptrs[0])
			im.put16(leaf+4, 1) // a node where a leaf must be
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.ReadDir("node")
			fstreetest.WantCorrupt(t, "ReadDir(node)", err)
		},
	}, {
		name: "bmbt depth",
		patch: func(im *image) {
			im.put16(im.forkOffset("node"), 60)
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.Stat("node")
			fstreetest.WantCorrupt(t, "Stat(node)", err)
		},
	}, {
		name: "absurd extent count",
		patch: func(im *image) {
			_, off := im.inode("big.bin")
			im.put32(off+76, 0xffffffff)
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.Stat("big.bin")
			fstreetest.WantCorrupt(t, "Stat(big.bin)", err)
		},
	}, {
		name: "extent outside its group",
		patch: func(im *image) {
			fork := im.forkOffset("big.bin")
			l1 := im.be.Uint64(im.b[fork+8:])
			im.put64(fork+8, l1|(1<<20-1)<<21) // block number's low bits
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fs.ReadFile(fsys, "big.bin")
			fstreetest.WantCorrupt(t, "ReadFile(big.bin)", err)
		},
	}, {
		name: "overlapping extents",
		patch: func(im *image) {
			in, _ := im.inode("big.bin")
			b := in.extents[0].block
			im.putExtents("big.bin", extent{off: 0, block: b, count: 100}, extent{off: 50, block: b + 50, count: 100})
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.Stat("big.bin")
			fstreetest.WantCorrupt(t, "Stat(big.bin)", err)
		},
	}, {
		name: "inode number beyond the groups",
		patch: func(im *image) {
			// sf's entries: header (count, i8count, 4-byte parent),
			// then namelen, offset, name "a", file type, inode.
			fork := im.forkOffset("sf")
			ino := uint64(im.sb.agCount) << (im.sb.agBlkLog + im.sb.inoPBLog)
			pos := fork + 6 + 3 + 1
			if im.sb.ftype {
				pos++
			}
			im.put32(pos, uint32(ino))
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.Stat("sf/a")
			fstreetest.WantCorrupt(t, "Stat(sf/a)", err)
			entries, err := fsys.ReadDir("sf")
			if err != nil || len(entries) != 3 {
				t.Fatalf("ReadDir(sf): %v, %v", entries, err)
			}
			_, err = entries[0].Info()
			fstreetest.WantCorrupt(t, "Info(sf/a)", err)
		},
	}, {
		name: "slash in a short form name",
		patch: func(im *image) {
			im.b[im.forkOffset("sf")+6+3] = '/'
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			entries, err := fsys.ReadDir("sf")
			fstreetest.WantCorrupt(t, "ReadDir(sf)", err)
			if len(entries) != 2 {
				t.Errorf("ReadDir(sf) kept %d entries, want the 2 good ones", len(entries))
			}
		},
	}, {
		name: "slash in a block name",
		patch: func(im *image) {
			off := im.dirBlockOffset("block")
			i := bytes.Index(im.b[off:off+int64(im.sb.dirBlockSize())], []byte("file-07"))
			if i < 0 {
				im.t.Fatal("file-07 not in block's first block")
			}
			im.b[off+int64(i)+4] = '/'
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			entries, err := fsys.ReadDir("block")
			fstreetest.WantCorrupt(t, "ReadDir(block)", err)
			if len(entries) != 49 {
				t.Errorf("ReadDir(block) kept %d entries, want 49", len(entries))
			}
		},
	}, {
		name: "empty name in a data block",
		patch: func(im *image) {
			off := im.dirBlockOffset("block")
			i := bytes.Index(im.b[off:off+int64(im.sb.dirBlockSize())], []byte("file-07"))
			im.b[off+int64(i)-1] = 0
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.ReadDir("block")
			fstreetest.WantCorrupt(t, "ReadDir(block)", err)
		},
	}, {
		name: "short form count",
		patch: func(im *image) {
			im.b[im.forkOffset("sf")] = 200
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.ReadDir("sf")
			fstreetest.WantCorrupt(t, "ReadDir(sf)", err)
		},
	}, {
		name: "directory larger than its space",
		patch: func(im *image) {
			_, off := im.inode("block")
			im.put64(off+56, 1<<40)
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.ReadDir("block")
			fstreetest.WantCorrupt(t, "ReadDir(block)", err)
		},
	}, {
		name: "symlink of 5000 bytes",
		patch: func(im *image) {
			_, off := im.inode("link-long")
			im.put64(off+56, 5000)
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.ReadLink("link-long")
			fstreetest.WantCorrupt(t, "ReadLink(link-long)", err)
		},
	}, {
		name: "index node pointing at itself",
		patch: func(im *image) {
			off := im.indexRoot("node")
			hdr := int64(daHdrV4)
			if v5 {
				hdr = daHdrV5
			}
			leafStart := uint32(uint64(dirLeafOffset) >> im.sb.blockLog)
			count := int64(im.be.Uint16(im.b[off+hdr-4:]))
			if v5 {
				count = int64(im.be.Uint16(im.b[off+hdr-8:]))
			}
			for i := range count {
				im.put32(off+hdr+i*8+4, leafStart)
			}
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.Stat("node/entry-00007-zzzzzzz")
			fstreetest.WantCorrupt(t, "Stat(node/entry-00007-zzzzzzz)", err)
			if _, err := fsys.ReadDir("node"); err != nil {
				t.Errorf("ReadDir(node) reads data blocks only: %v", err)
			}
		},
	}, {
		name: "mode of a free inode",
		patch: func(im *image) {
			_, off := im.inode("sf/b")
			im.put16(off+2, 0)
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.Stat("sf/b")
			fstreetest.WantCorrupt(t, "Stat(sf/b)", err)
		},
	}, {
		name: "attribute fork beyond the inode",
		patch: func(im *image) {
			_, off := im.inode("small.txt")
			im.b[off+82] = 0xff
		},
		check: func(t *testing.T, fsys *fstree.FS) {
			_, err := fsys.Stat("small.txt")
			fstreetest.WantCorrupt(t, "Stat(small.txt)", err)
		},
	}}
	if v5 {
		cases = append(cases, struct {
			name  string
			patch func(im *image)
			check func(t *testing.T, fsys *fstree.FS)
		}{
			name: "data block of another directory",
			patch: func(im *image) {
				off := im.dirBlockOffset("block")
				in, _ := im.inode("leaf")
				im.put64(off+dataOwner, in.ino)
			},
			check: func(t *testing.T, fsys *fstree.FS) {
				_, err := fsys.ReadDir("block")
				fstreetest.WantCorrupt(t, "ReadDir(block)", err)
			},
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			im := newImage(t, v5)
			tc.patch(im)
			within(t, func() {
				fsys, err := im.reopen()
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				tc.check(t, fsys)
				fstreetest.Exercise(fsys)
			})
		})
	}
}

// putExtents replaces a file's extent list.
func (im *image) putExtents(p string, ext ...extent) {
	fork := im.forkOffset(p)
	for i, e := range ext {
		var l0 uint64
		if e.unwritten {
			l0 = 1 << 63
		}
		l0 |= e.off<<9 | e.block>>43
		im.put64(fork+int64(i)*16, l0)
		im.put64(fork+int64(i)*16+8, e.block<<21|e.count)
	}
	_, off := im.inode(p)
	im.put32(off+76, uint32(len(ext)))
}

// dirBlockOffset is the image offset of a directory's first data block.
func (im *image) dirBlockOffset(p string) int64 {
	in, _ := im.inode(p)
	if in.format != formatExtents {
		im.t.Fatalf("%s: format %d", p, in.format)
	}
	return im.blockOffset(in.extents[0].block)
}

// indexRoot is the image offset of the root of a directory's hash index.
func (im *image) indexRoot(p string) int64 {
	in, _ := im.inode(p)
	e, ok, err := im.r.mapper(in).find(dirLeafOffset >> im.sb.blockLog)
	if err != nil || !ok {
		im.t.Fatalf("%s: no index: %v", p, err)
	}
	return im.blockOffset(e.block + (dirLeafOffset>>im.sb.blockLog - e.off))
}

// TestSuperblock checks the superblock's consistency checks.
func TestSuperblock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		patch   func(im *image)
		corrupt bool
	}{
		{"blocks beyond the volume", func(im *image) { im.put64(8, uint64(len(im.b))) }, true},
		{"no groups", func(im *image) { im.put32(88, 0) }, true},
		{"block size", func(im *image) { im.put32(4, 3000) }, true},
		{"inode size", func(im *image) { im.put16(104, 384) }, true},
		{"group log", func(im *image) { im.b[124] = 40 }, true},
		{"directory block log", func(im *image) { im.b[192] = 9 }, true},
		{"root beyond the groups", func(im *image) { im.put64(56, 1<<50) }, true},
		{"needs repair", func(im *image) { im.put32(216, im.be.Uint32(im.b[216:])|incompatNeedsRepair) }, true},
		{"unknown feature", func(im *image) { im.put32(216, im.be.Uint32(im.b[216:])|1<<30) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := newImage(t, true)
			tc.patch(im)
			_, err := im.reopen()
			if err == nil || errors.Is(err, fstree.ErrCorrupt) != tc.corrupt {
				t.Errorf("Open: %v, want corrupt=%v", err, tc.corrupt)
			}
		})
	}
}

// TestCraftedExtents checks holes and unwritten extents on an extent list
// the test writes: they read as zeros, and without reading the volume.
func TestCraftedExtents(t *testing.T) {
	im := newImage(t, true)
	in, _ := im.inode("big.bin")
	if in.format != formatExtents || len(in.extents) != 1 {
		t.Fatalf("big.bin: format %d, %d extents", in.format, len(in.extents))
	}
	want := make([]byte, in.size)
	if _, err := io.ReadFull(mustOpen(t, im.fs, "big.bin"), want); err != nil {
		t.Fatal(err)
	}
	// Three extents from the one: blocks 0-99 unwritten, a hole of 100
	// blocks, and the rest where they were.
	e := in.extents[0]
	parts := []extent{
		{off: 0, block: e.block, count: 100, unwritten: true},
		{off: 200, block: e.block + 200, count: e.count - 200},
	}
	im.putExtents("big.bin", parts...)
	clear(want[:200<<im.sb.blockLog])

	c := newCounting(bytes.NewReader(im.b))
	r, err := Open(c, int64(len(im.b)))
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstree.New(r)
	f := mustOpen(t, fsys, "big.bin")
	c.reset()
	got := make([]byte, 200<<im.sb.blockLog)
	if _, err := f.(io.ReaderAt).ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if reads, _ := c.reset(); len(reads) != 0 || !bytes.Equal(got, want[:len(got)]) {
		t.Errorf("unwritten extent and hole: %d reads, zeros %v", len(reads), bytes.Equal(got, want[:len(got)]))
	}
	if sum, err := fstreetest.HashFile(fsys, "big.bin"); err != nil || sum != fmt.Sprintf("%x", sha256.Sum256(want)) {
		t.Errorf("big.bin with a hole: %s, %v", sum, err)
	}
}

// TestRemoteSymlinkV5 gives a remote symlink the header mkfs.xfs 6.1
// leaves out of a protofile's, as the kernel writes it.
func TestRemoteSymlinkV5(t *testing.T) {
	im := newImage(t, true)
	in, _ := im.inode("link-long")
	target := strings.Repeat("long/", 120)
	off := im.blockOffset(in.extents[0].block)
	blk := im.b[off : off+int64(im.sb.blockSize)]
	copy(blk[symlinkHdrV5:], target)
	im.put32(off, xslmMagic)
	im.put32(off+4, 0)
	im.put32(off+8, uint32(len(target)))
	im.put64(off+32, in.ino)
	fsys, err := im.reopen()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fsys.ReadLink("link-long"); err != nil || got != target {
		t.Errorf("ReadLink: %q, %v", got, err)
	}
	// The header must say which bytes it holds.
	im.put32(off+4, 1)
	fsys, _ = im.reopen()
	_, err = fsys.ReadLink("link-long")
	fstreetest.WantCorrupt(t, "ReadLink with a wrong offset", err)
}

func mustOpen(t *testing.T, fsys fs.FS, name string) fs.File {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestInodeV1 reads a version 1 inode, which keeps its link count in 16
// bits where version 2 has its project ID.
func TestInodeV1(t *testing.T) {
	im := newImage(t, false)
	_, off := im.inode("small.txt")
	im.b[off+4] = 1
	im.put16(off+6, 7)
	fsys, err := im.reopen()
	if err != nil {
		t.Fatal(err)
	}
	info, err := fsys.Stat("small.txt")
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := fstree.MetaOf(info); m.Nlink != 7 || m.UID != 1000 || info.Size() != 100 {
		t.Errorf("version 1 inode: nlink %d uid %d size %d", m.Nlink, m.UID, info.Size())
	}
}
