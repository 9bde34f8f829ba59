package xfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// FuzzOpen opens fuzzed images and does with them what a user may. The
// seeds are small images made by mkfs.xfs, v5 and v4, with short form,
// block and leaf directories, inline and remote symlinks and files.
func FuzzOpen(f *testing.F) {
	src := f.TempDir()
	writeSmallTree(tree{t: f, dir: src}, 0)
	for _, args := range [][]string{
		{"-b", "size=1024"},
		{"-m", "crc=0", "-b", "size=1024"},
		{"-m", "crc=0", "-n", "ftype=0"},
	} {
		img := fstreetest.ReadImage(f, mkfs(f, src, 16<<20, args...))
		seed := fstreetest.EncodeSparse(img)
		if testing.Verbose() {
			f.Logf("seed %v: %d bytes", args, len(seed))
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vol, size := fstreetest.DecodeSparse(data)
		r, err := Open(vol, size)
		if err != nil {
			return
		}
		fstreetest.Exercise(fstree.New(r))
	})
}

// writeSmallTree writes a tree small enough for a fuzz seed: a few
// sectors of metadata beside the filesystem's own.
func writeSmallTree(tr tree, nodeEntries int) {
	tr.rnd = rand.New(rand.NewPCG(5, 6))
	tr.file("a", 10, 0o644, 0, 0)
	tr.file("b", 3000, 0o600, 1000, 100)
	tr.symlink("s", "a")
	tr.symlink("long", fmt.Sprintf("%0300d", 0))
	tr.file("sf/x", 1, 0o644, 0, 0)
	tr.file("e", 0, 0o644, 0, 0)
	for i := range 16 {
		tr.link("e", fmt.Sprintf("blk/%02d-in-a-single-block", i))
	}
	for i := range 100 {
		tr.link("e", fmt.Sprintf("leaf/entry-%03d-of-a-leaf-directory", i))
	}
	for i := range nodeEntries {
		tr.link("e", fmt.Sprintf("node/entry-%04d-abcdefghij", i))
	}
}

// FuzzMetadata overwrites bytes of the metadata of real images (the
// superblock, inodes, extent tree, directory, index and symlink blocks)
// and exercises the result: FuzzOpen's mutations mostly break the
// superblock or land in data, these land where the parsing is. An input
// is the image to start from, then patches: the region, an offset in it,
// a length and the bytes.
func FuzzMetadata(f *testing.F) {
	var bases []*metaBase
	for _, base := range []struct {
		nodeEntries int
		args        []string
	}{
		{10, []string{"-b", "size=1024"}},
		// A directory in node form whose data fork is an extent tree:
		// 1000 entries are the fewest that get one from mkfs.xfs, and
		// they make each execution take milliseconds.
		{1000, []string{"-m", "crc=0", "-b", "size=1024"}},
	} {
		src := f.TempDir()
		writeSmallTree(tree{t: f, dir: src}, base.nodeEntries)
		img := fstreetest.ReadImage(f, mkfs(f, src, 16<<20, base.args...))
		bases = append(bases, newMetaBase(f, img))
	}
	for i, b := range bases {
		for j, reg := range b.regions {
			n := min(reg.size, 255)
			seed := []byte{byte(i), byte(j), 0, 0, byte(n)}
			f.Add(append(seed, b.img[reg.off:reg.off+int64(n)]...))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		b := bases[int(data[0])%len(bases)]
		vol := &overlay{base: b.img}
		for data = data[1:]; len(data) >= 4; {
			reg := b.regions[int(data[0])%len(b.regions)]
			off := reg.off + int64(binary.BigEndian.Uint16(data[1:]))%int64(reg.size)
			n := min(int(data[3]), len(data)-4)
			vol.patches = append(vol.patches, patch{off: off, b: data[4 : 4+n]})
			data = data[4+n:]
		}
		r, err := Open(vol, int64(len(b.img)))
		if err != nil {
			return
		}
		fstreetest.Exercise(fstree.New(r))
	})
}

// metaBase is an image and where its metadata is.
type metaBase struct {
	img     []byte
	regions []region
}

type region struct {
	off  int64
	size int
}

func newMetaBase(t testing.TB, img []byte) *metaBase {
	r, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstree.New(r)
	b := &metaBase{img: img, regions: []region{{0, 512}}}
	block := func(fsb uint64) {
		off, err := r.sb.blockOffset(fsb, 1)
		if err != nil {
			t.Fatal(err)
		}
		b.regions = append(b.regions, region{off, int(r.sb.blockSize)})
	}
	leafStart := uint64(dirLeafOffset) >> r.sb.blockLog
	for _, p := range []string{".", "sf", "blk", "leaf", "node", "a", "b", "s", "long"} {
		in := lookupInode(t, r, fsys, p)
		off, _ := r.sb.inodeOffset(in.ino)
		b.regions = append(b.regions, region{off, int(r.sb.inodeSize)})
		if in.root != nil {
			for _, ptr := range in.root.ptrs {
				block(ptr)
			}
		}
		m := r.mapper(in)
		for _, lb := range []uint64{0, 1, leafStart, leafStart + 1} {
			if e, ok, err := m.find(lb); err == nil && ok && e.off <= lb {
				block(e.block + lb - e.off)
			}
		}
	}
	return b
}

// overlay is an image with bytes patched over it.
type overlay struct {
	base    []byte
	patches []patch
}

type patch struct {
	off int64
	b   []byte
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(o.base)) {
		return 0, io.EOF
	}
	n := copy(p, o.base[off:])
	for _, pt := range o.patches {
		lo, hi := max(off, pt.off), min(off+int64(n), pt.off+int64(len(pt.b)))
		if lo < hi {
			copy(p[lo-off:hi-off], pt.b[lo-pt.off:])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
