package ntfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// hostileImage makes a small volume to damage: a file, a directory with
// an index allocation, a subdirectory.
func hostileImage(t *testing.T) []byte {
	img := mkntfs(t, 8, 512, 4096, "hostile")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "file.bin"), randomBytes(1, 50000))
	for i := range 200 {
		writeFile(t, filepath.Join(src, "dir", fmt.Sprintf("entry-%03d", i)), nil)
	}
	mkdirAll(t, filepath.Join(src, "sub/inner"))
	if err := os.Symlink("../file.bin", filepath.Join(src, "sub/link")); err != nil {
		t.Fatal(err)
	}
	mnt, unmount := mount(t, img)
	fstreetest.Run(t, "cp", "-R", src+"/.", mnt)
	mkdirAll(t, filepath.Join(mnt, "comp"))
	setAttrib(t, filepath.Join(mnt, "comp"), fstree.AttrCompressed)
	writeFile(t, filepath.Join(mnt, "comp/text.txt"), textBytes(1, 200000))
	setxattr(t, filepath.Join(mnt, "file.bin"), "user.s", randomBytes(2, 5000))
	unmount()
	return fstreetest.ReadImage(t, img)
}

func TestHostile(t *testing.T) {
	clean := hostileImage(t)
	r, err := Open(bytes.NewReader(clean), int64(len(clean)))
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstree.New(r)
	fileNum := lstatMeta(t, fsys, "file.bin").Inode
	subNum := lstatMeta(t, fsys, "sub").Inode
	dir := loadNode(t, fsys, "dir").(*node)
	if dir.alloc == nil {
		t.Fatal("dir has no index allocation: the test does not test it")
	}

	for _, tc := range []struct {
		name   string
		damage func(img []byte)
		use    func(fsys *fstree.FS) error // after Open succeeded
	}{
		{
			name:   "bad fixup of the root",
			damage: func(img []byte) { img[recordOffset(t, r, recRoot)+fixupBlock-1] ^= 0xff },
		},
		{
			name:   "bad fixup of a file",
			damage: func(img []byte) { img[recordOffset(t, r, fileNum)+fixupBlock-2] ^= 0xff },
			use:    lstat("file.bin"),
		},
		{
			name: "attribute longer than the record",
			damage: func(img []byte) {
				patchRecord(t, img, recordOffset(t, r, fileNum), r.recordSize, func(b []byte) {
					first := binary.LittleEndian.Uint16(b[0x14:])
					binary.LittleEndian.PutUint32(b[first+4:], 0x10000)
				})
			},
			use: lstat("file.bin"),
		},
		{
			name: "run beyond the volume",
			damage: func(img []byte) {
				patchRecord(t, img, recordOffset(t, r, fileNum), r.recordSize, func(b []byte) {
					a := findAttr(t, b, attrData)
					runs := a[binary.LittleEndian.Uint16(a[0x20:]):]
					lenSize, offSize := int(runs[0]&0xf), int(runs[0]>>4)
					lcn := runs[1+lenSize : 1+lenSize+offSize]
					for i := range lcn {
						lcn[i] = 0xff
					}
					lcn[len(lcn)-1] = 0x7f
				})
			},
			use: lstat("file.bin"),
		},
		{
			name: "index block that is its own child",
			damage: func(img []byte) {
				w := &dirWalk{r: r, dir: dir, seen: map[int64]bool{}}
				if err := w.walk(); err != nil {
					t.Fatal(err)
				}
				vcn := int64(0)
				off := volumeOffset(t, r, dir.alloc, vcn*w.vcnSize)
				patchRecord(t, img, off, w.blockSize, func(b []byte) {
					// Give the block's end entry a subnode: this block.
					hdr := b[0x18:]
					used := binary.LittleEndian.Uint32(hdr[4:])
					e := hdr[lastEntry(t, hdr):]
					binary.LittleEndian.PutUint16(e[8:], 24)
					binary.LittleEndian.PutUint16(e[12:], entryLast|entrySubnode)
					binary.LittleEndian.PutUint64(e[16:], uint64(vcn))
					binary.LittleEndian.PutUint32(hdr[4:], used+8)
				})
			},
			use: readDir("dir"),
		},
		{
			name: "directory that is its own parent",
			damage: func(img []byte) {
				patchRecord(t, img, recordOffset(t, r, subNum), r.recordSize, func(b []byte) {
					a := findAttr(t, b, attrFileName)
					v := a[binary.LittleEndian.Uint16(a[0x14:]):]
					binary.LittleEndian.PutUint64(v, subNum|binary.LittleEndian.Uint64(v)&^refMask)
				})
			},
			use: lstat("sub"),
		},
		{
			name: "boot sector: sectors of 3 bytes",
			damage: func(img []byte) {
				binary.LittleEndian.PutUint16(img[0x0b:], 3)
			},
		},
		{
			name: "boot sector: volume larger than the image",
			damage: func(img []byte) {
				binary.LittleEndian.PutUint64(img[0x28:], 1<<40)
			},
		},
		{
			name: "boot sector: MFT beyond the volume",
			damage: func(img []byte) {
				binary.LittleEndian.PutUint64(img[0x30:], 1<<30)
			},
		},
		{
			name: "boot sector: records of 2^100 bytes",
			damage: func(img []byte) {
				img[0x40] = byte(0x100 - 100)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := bytes.Clone(clean)
			tc.damage(img)
			r, err := Open(bytes.NewReader(img), int64(len(img)))
			if tc.use != nil && err == nil {
				err = tc.use(fstree.New(r))
			}
			if !errors.Is(err, fstree.ErrCorrupt) {
				t.Fatalf("got %v, want an error wrapping ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

// TestRandomDamage flips bytes of the MFT records, index blocks and
// compressed data of a real volume: every result must be a tree or an
// error, never a panic or a hang.
func TestRandomDamage(t *testing.T) {
	clean := hostileImage(t)
	r, err := Open(bytes.NewReader(clean), int64(len(clean)))
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstree.New(r)
	// Where the metadata lies: the MFT's first records, and the clusters
	// of the index allocation and the compressed file.
	type span struct{ off, n int64 }
	spans := []span{{recordOffset(t, r, 0), 300 * int64(r.recordSize)}}
	for _, d := range []*dataAttr{loadNode(t, fsys, "dir").(*node).alloc, loadNode(t, fsys, "comp/text.txt").(*node).data} {
		for _, rn := range d.runs {
			if !rn.sparse() {
				spans = append(spans, span{rn.lcn * r.clusterSize, rn.n * r.clusterSize})
			}
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	corrupt := 0
	for range 300 {
		img := bytes.Clone(clean)
		for range 1 + rnd.IntN(20) {
			s := spans[rnd.IntN(len(spans))]
			img[s.off+rnd.Int64N(s.n)] ^= byte(1 + rnd.IntN(255))
		}
		r, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			corrupt++
			continue
		}
		fstreetest.Exercise(fstree.New(r))
	}
	t.Logf("%d of 300 damaged images did not open", corrupt)
}

func lstat(name string) func(*fstree.FS) error {
	return func(fsys *fstree.FS) error {
		_, err := fsys.Lstat(name)
		return err
	}
}

func readDir(name string) func(*fstree.FS) error {
	return func(fsys *fstree.FS) error {
		_, err := fs.ReadDir(fsys, name)
		return err
	}
}

// recordOffset returns where MFT record num lies in the volume.
func recordOffset(t *testing.T, r *Reader, num uint64) int64 {
	return volumeOffset(t, r, r.mft.d, int64(num)*int64(r.recordSize))
}

// volumeOffset maps an offset of a non-resident attribute to the volume.
func volumeOffset(t *testing.T, r *Reader, d *dataAttr, off int64) int64 {
	t.Helper()
	for _, rn := range d.runs {
		if start := rn.vcn * r.clusterSize; off >= start && off < start+rn.n*r.clusterSize && !rn.sparse() {
			return rn.lcn*r.clusterSize + off - start
		}
	}
	t.Fatalf("offset %d is not allocated", off)
	return 0
}

// patchRecord changes a record or index block of n bytes at off in img:
// f sees it with its fixups undone, which are redone afterwards.
func patchRecord(t *testing.T, img []byte, off int64, n int, f func(b []byte)) {
	t.Helper()
	b := img[off : off+int64(n)]
	usa := int(binary.LittleEndian.Uint16(b[4:]))
	for i := 1; i <= n/fixupBlock; i++ {
		copy(b[i*fixupBlock-2:i*fixupBlock], b[usa+2*i:])
	}
	f(b)
	for i := 1; i <= n/fixupBlock; i++ {
		copy(b[usa+2*i:usa+2*i+2], b[i*fixupBlock-2:])
		copy(b[i*fixupBlock-2:i*fixupBlock], b[usa:usa+2])
	}
}

// findAttr returns the first attribute of a type in a record.
func findAttr(t *testing.T, rec []byte, typ uint32) []byte {
	t.Helper()
	for off := int(binary.LittleEndian.Uint16(rec[0x14:])); off+8 < len(rec); {
		length := int(binary.LittleEndian.Uint32(rec[off+4:]))
		if binary.LittleEndian.Uint32(rec[off:]) == typ {
			return rec[off : off+length]
		}
		if length == 0 {
			break
		}
		off += length
	}
	t.Fatalf("no attribute 0x%x", typ)
	return nil
}

// lastEntry returns the offset in an index header of its end entry.
func lastEntry(t *testing.T, hdr []byte) int {
	t.Helper()
	for off := int(binary.LittleEndian.Uint32(hdr)); off+16 <= len(hdr); {
		if binary.LittleEndian.Uint16(hdr[off+12:])&entryLast != 0 {
			return off
		}
		off += int(binary.LittleEndian.Uint16(hdr[off+8:]))
	}
	t.Fatal("no end entry")
	return 0
}

func TestLZNT1Corrupt(t *testing.T) {
	dst := make([]byte, 2*lzntChunk)
	for name, src := range map[string][]byte{
		"chunk past the data":         {0xff, 0xbf, 1, 2},
		"back-reference before start": {0x02, 0xb0, 0x01, 0x00, 0x10},
		"back-reference cut short":    {0x02, 0xb0, 0x02, 'a', 0x00},
	} {
		if err := decompressLZNT1(dst, src); !errors.Is(err, fstree.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Two literals and a back-reference of 3 bytes from 2 back.
	src := []byte{0x04, 0xb0, 0x04, 'a', 'b', 0x00, 0x10}
	if err := decompressLZNT1(dst, src); err != nil {
		t.Fatal(err)
	}
	if got := string(dst[:5]); got != "ababa" {
		t.Errorf("decoded %q", got)
	}
}

// TestMergeExtents joins the extents of an attribute that several records
// hold, in any order, and refuses gaps and overlaps.
func TestMergeExtents(t *testing.T) {
	first := attr{lowVCN: 0, highVCN: 9, dataSize: 40960, initSize: 40960, runs: []run{{0, 100, 10}}}
	second := attr{lowVCN: 10, highVCN: 14, runs: []run{{10, -1, 5}}}
	d, err := mergeExtents([]attr{second, first})
	if err != nil {
		t.Fatal(err)
	}
	if d.size != 40960 || len(d.runs) != 2 || d.runs[1].vcn != 10 {
		t.Errorf("merged %+v", d)
	}
	for name, ext := range map[string][]attr{
		"gap":      {first, {lowVCN: 11, highVCN: 14, runs: []run{{11, -1, 4}}}},
		"overlap":  {first, {lowVCN: 5, highVCN: 14, runs: []run{{5, -1, 10}}}},
		"no start": {{lowVCN: 3, highVCN: 4, runs: []run{{3, -1, 2}}}},
	} {
		if _, err := mergeExtents(ext); !errors.Is(err, fstree.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
