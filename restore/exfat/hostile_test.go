package exfat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"unicode/utf16"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// victim is a small exFAT image, made by the tools, for tests to damage.
type victim struct {
	img []byte
	vol volume
}

var victimFiles = map[string][]byte{
	"contig.bin": fstreetest.Random(11, 3*4096),
	"other.txt":  []byte("other"),
	"sub/x.txt":  []byte("x"),
}

var victimImage struct {
	once sync.Once
	img  []byte
}

// newVictim returns a copy of the victim image, made once.
func newVictim(t *testing.T) *victim {
	t.Helper()
	victimImage.once.Do(func() { victimImage.img = makeVictim(t) })
	if victimImage.img == nil {
		t.Fatal("no victim image")
	}
	b := bytes.Clone(victimImage.img)
	vol, err := readBoot(bytes.NewReader(b), int64(len(b)), true)
	if err != nil {
		t.Fatal(err)
	}
	return &victim{img: b, vol: vol}
}

func makeVictim(t *testing.T) []byte {
	t.Helper()
	img := mkfs(t, 8<<20, "-c", "4096")
	mnt, unmount := mount(t, img)
	src := t.TempDir()
	tree(t, src, victimFiles)
	fill(t, mnt, src)
	// Two files written in turn: chains in the FAT.
	var fs []*os.File
	for _, name := range []string{"frag1", "frag2"} {
		f, err := os.Create(mnt + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	for i := range 3 {
		for j, f := range fs {
			if _, err := f.Write(fstreetest.Random(uint64(20+i*2+j), 4096)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range fs {
		f.Close()
	}
	unmount()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// set returns the offset of the entry set of the named file.
func (v *victim) set(t *testing.T, name string) int {
	t.Helper()
	u := utf16.Encode([]rune(name))
	pat := []byte{typeName, 0}
	for _, c := range u {
		pat = binary.LittleEndian.AppendUint16(pat, c)
	}
	i := bytes.Index(v.img[v.vol.heapOffset:], pat)
	if i < 0 || i%32 != 0 {
		t.Fatalf("no entry set for %q", name)
	}
	return int(v.vol.heapOffset) + i - 64
}

// fix recomputes the checksum of the entry set at off.
func (v *victim) fix(off int) {
	n := int(v.img[off+1])
	binary.LittleEndian.PutUint16(v.img[off+2:], setChecksum(v.img[off:off+(1+n)*32]))
}

func (v *victim) first(t *testing.T, name string) uint32 {
	return binary.LittleEndian.Uint32(v.img[v.set(t, name)+32+20:])
}

func (v *victim) setFAT(c, val uint32) {
	binary.LittleEndian.PutUint32(v.img[v.vol.fatOffset+4*int64(c):], val)
}

func (v *victim) fs(t *testing.T) *fstree.FS {
	t.Helper()
	r, err := Open(bytes.NewReader(v.img), int64(len(v.img)))
	if err != nil {
		t.Fatal(err)
	}
	return fstree.New(r)
}

func TestVictim(t *testing.T) {
	v := newVictim(t)
	fsys := v.fs(t)
	for name, want := range victimFiles {
		if got, err := fs.ReadFile(fsys, name); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if v.img[v.set(t, "frag1")+32+1]&flagNoFatChain != 0 {
		t.Error("frag1 is contiguous")
	}
}

func TestHostileFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   string
		damage func(t *testing.T, v *victim)
		msg    string
	}{
		{"checksum", "other.txt", func(t *testing.T, v *victim) {
			v.img[v.set(t, "other.txt")+12]++ // the modification time
		}, "checksum"},
		{"cycle", "frag1", func(t *testing.T, v *victim) {
			c := v.first(t, "frag1")
			v.setFAT(c, c)
		}, "loops"},
		{"cluster beyond the volume", "frag1", func(t *testing.T, v *victim) {
			v.setFAT(v.first(t, "frag1"), v.vol.clusters+10)
		}, "beyond"},
		{"bad cluster", "frag1", func(t *testing.T, v *victim) {
			v.setFAT(v.first(t, "frag1"), fatBad)
		}, "bad cluster"},
		{"short chain", "frag1", func(t *testing.T, v *victim) {
			v.setFAT(v.first(t, "frag1"), fatEnd)
		}, "chain of 1 clusters"},
		{"first cluster beyond the volume", "other.txt", func(t *testing.T, v *victim) {
			off := v.set(t, "other.txt")
			binary.LittleEndian.PutUint32(v.img[off+32+20:], v.vol.clusters+2)
			v.fix(off)
		}, "at cluster"},
		{"contiguous beyond the volume", "contig.bin", func(t *testing.T, v *victim) {
			off := v.set(t, "contig.bin")
			binary.LittleEndian.PutUint32(v.img[off+32+20:], v.vol.clusters)
			v.fix(off)
		}, "contiguous clusters"},
		{"valid length beyond the length", "other.txt", func(t *testing.T, v *victim) {
			off := v.set(t, "other.txt")
			binary.LittleEndian.PutUint64(v.img[off+32+8:], 1000)
			v.fix(off)
		}, "valid data length"},
		{"length beyond the volume", "other.txt", func(t *testing.T, v *victim) {
			off := v.set(t, "other.txt")
			binary.LittleEndian.PutUint64(v.img[off+32+8:], 1<<62)
			binary.LittleEndian.PutUint64(v.img[off+32+24:], 1<<62)
			v.fix(off)
		}, "beyond the volume"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVictim(t)
			tc.damage(t, v)
			fsys := v.fs(t)
			_, err := fs.ReadFile(fsys, tc.file)
			fstreetest.WantCorrupt(t, "read", err)
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%v, want it to say %q", err, tc.msg)
			}
			// The rest of the volume stays readable.
			for name, want := range victimFiles {
				if name == tc.file {
					continue
				}
				if got, err := fs.ReadFile(fsys, name); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s beside the damage: %v", name, err)
				}
			}
		})
	}
}

func TestHostileDirectories(t *testing.T) {
	t.Run("root chain loops", func(t *testing.T) {
		v := newVictim(t)
		v.setFAT(v.vol.rootCluster, v.vol.rootCluster)
		_, err := v.fs(t).ReadDir(".")
		fstreetest.WantCorrupt(t, "ReadDir", err)
	})
	t.Run("contains itself", func(t *testing.T) {
		v := newVictim(t)
		off := v.set(t, "sub")
		binary.LittleEndian.PutUint32(v.img[off+32+20:], v.vol.rootCluster)
		v.img[off+32+1] &^= flagNoFatChain
		v.fix(off)
		_, err := v.fs(t).ReadDir("sub")
		fstreetest.WantCorrupt(t, "ReadDir", err)
	})
	for _, bad := range []string{"a/b", "..", "."} {
		t.Run("name "+bad, func(t *testing.T) {
			v := newVictim(t)
			off := v.set(t, "other.txt")
			v.img[off+32+3] = byte(len(bad))
			for i, r := range bad {
				binary.LittleEndian.PutUint16(v.img[off+64+2+2*i:], uint16(r))
			}
			v.fix(off)
			entries, err := v.fs(t).ReadDir(".")
			fstreetest.WantCorrupt(t, "ReadDir", err)
			if len(entries) != 4 { // contig.bin frag1 frag2 sub
				t.Errorf("%d entries beside %q, want 4", len(entries), bad)
			}
		})
	}
	t.Run("no stream extension", func(t *testing.T) {
		v := newVictim(t)
		off := v.set(t, "other.txt")
		v.img[off+32] = typeName
		v.fix(off)
		_, err := v.fs(t).ReadDir(".")
		fstreetest.WantCorrupt(t, "ReadDir", err)
	})
	t.Run("unknown critical entry", func(t *testing.T) {
		v := newVictim(t)
		v.img[v.set(t, "other.txt")] = 0x86
		_, err := v.fs(t).ReadDir(".")
		fstreetest.WantCorrupt(t, "ReadDir", err)
	})
}

func TestHostileBoot(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
		want   error
	}{
		{"zeros", func(b []byte) []byte { return make([]byte, len(b)) }, fstree.ErrUnrecognized},
		{"short", func(b []byte) []byte { return b[:100] }, fstree.ErrUnrecognized},
		{"checksum", func(b []byte) []byte { b[100]++; return b }, fstree.ErrCorrupt},
		{"sector size", func(b []byte) []byte { b[108] = 13; return b }, fstree.ErrCorrupt},
		{"beyond the device", func(b []byte) []byte { return b[:len(b)/2] }, fstree.ErrCorrupt},
		{"FAT BPB", func(b []byte) []byte { b[11] = 2; return b }, fstree.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVictim(t)
			img := tc.damage(v.img)
			_, err := Open(bytes.NewReader(img), int64(len(img)))
			if !errors.Is(err, tc.want) {
				t.Errorf("Open: %v, want %v", err, tc.want)
			}
		})
	}
}

// Bytes past the valid data length read as zeros, without reading the
// volume. exfat-fuse writes them all, so the test shortens the valid
// length of a file whose clusters hold data.
func TestValidDataLength(t *testing.T) {
	v := newVictim(t)
	off := v.set(t, "contig.bin")
	const valid = 5000
	binary.LittleEndian.PutUint64(v.img[off+32+8:], valid)
	v.fix(off)
	c := &fstreetest.CountingReaderAt{R: bytes.NewReader(v.img)}
	r, err := Open(c, int64(len(v.img)))
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstree.New(r)
	got, err := fs.ReadFile(fsys, "contig.bin")
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(victimFiles["contig.bin"][:valid]), make([]byte, 3*4096-valid)...)
	if !bytes.Equal(got, want) {
		t.Error("contents past the valid data length are not zeros")
	}
	f, err := fsys.Open("contig.bin")
	if err != nil {
		t.Fatal(err)
	}
	c.Bytes.Store(0)
	buf := make([]byte, 4096)
	if n, err := f.(io.ReaderAt).ReadAt(buf, 8000); n != len(buf) || err != nil || !bytes.Equal(buf, make([]byte, 4096)) {
		t.Errorf("ReadAt past the valid length: %d, %v", n, err)
	}
	if c.Bytes.Load() != 0 {
		t.Errorf("read %d bytes of the volume for zeros", c.Bytes.Load())
	}
}
