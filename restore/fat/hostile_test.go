package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// victim is a small FAT12 image, made by the tools, for tests to damage.
type victim struct {
	img []byte
	vol volume
}

func newVictim(t *testing.T) *victim {
	t.Helper()
	src := t.TempDir()
	files := map[string][]byte{
		"A.TXT":           fstreetest.Random(8, 1500), // three clusters of 512 bytes
		"OTHER.TXT":       []byte("other"),
		"longer name.txt": []byte("long"),
		"SUB/INNER/X.TXT": []byte("x"),
	}
	for i := range 30 { // two clusters of directory
		files[fmt.Sprintf("SUB/F%02d", i)] = nil
	}
	tree(t, src, files)
	img := mkfs(t, 1440, "-F", "12", "-s", "1")
	fill(t, img, src)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	vol, err := readBoot(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return &victim{img: b, vol: vol}
}

// entry returns the offset of the short entry with the 11-byte name.
func (v *victim) entry(t *testing.T, short string) int {
	t.Helper()
	i := bytes.Index(v.img[v.vol.rootOffset:], []byte(short))
	if i < 0 || i%32 != 0 {
		t.Fatalf("no entry %q", short)
	}
	return int(v.vol.rootOffset) + i
}

func (v *victim) cluster(t *testing.T, short string) uint32 {
	return uint32(binary.LittleEndian.Uint16(v.img[v.entry(t, short)+26:]))
}

func (v *victim) setCluster(t *testing.T, short string, c uint32) {
	binary.LittleEndian.PutUint16(v.img[v.entry(t, short)+26:], uint16(c))
}

func (v *victim) setSize(t *testing.T, short string, size uint32) {
	binary.LittleEndian.PutUint32(v.img[v.entry(t, short)+28:], size)
}

// setFAT sets cluster c's 12-bit entry in the first FAT.
func (v *victim) setFAT(c, val uint32) {
	off := int(v.vol.fatOffset) + int(c+c/2)
	w := uint32(binary.LittleEndian.Uint16(v.img[off:]))
	if c&1 != 0 {
		w = w&0x000F | val<<4
	} else {
		w = w&0xF000 | val
	}
	binary.LittleEndian.PutUint16(v.img[off:], uint16(w))
}

func (v *victim) fs(t *testing.T) *fstree.FS {
	t.Helper()
	r, err := Open(bytes.NewReader(v.img), int64(len(v.img)))
	if err != nil {
		t.Fatal(err)
	}
	return fstree.New(r)
}

func readErr(fsys fs.FS, name string) error {
	_, err := fs.ReadFile(fsys, name)
	return err
}

func TestHostileChains(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, v *victim)
		msg    string
	}{
		{"cycle", func(t *testing.T, v *victim) {
			c := v.cluster(t, "A       TXT")
			v.setFAT(c+1, c+1)
		}, "loops"},
		{"cycle to the start", func(t *testing.T, v *victim) {
			c := v.cluster(t, "A       TXT")
			v.setFAT(c+2, c)
		}, "longer"},
		{"first cluster beyond the volume", func(t *testing.T, v *victim) {
			v.setCluster(t, "A       TXT", 0xFF0)
		}, "beyond"},
		{"next cluster beyond the volume", func(t *testing.T, v *victim) {
			v.setFAT(v.cluster(t, "A       TXT"), 0xFF0)
		}, "beyond"},
		{"free cluster in the chain", func(t *testing.T, v *victim) {
			v.setFAT(v.cluster(t, "A       TXT"), 0)
		}, "links to 0"},
		{"bad cluster in the chain", func(t *testing.T, v *victim) {
			v.setFAT(v.cluster(t, "A       TXT"), 0xFF7)
		}, "bad cluster"},
		{"size beyond the chain", func(t *testing.T, v *victim) {
			v.setSize(t, "A       TXT", 1<<20)
		}, "chain of 3 clusters"},
		{"chain beyond the size", func(t *testing.T, v *victim) {
			v.setSize(t, "A       TXT", 700)
		}, "longer than the 2 clusters"},
		{"no cluster", func(t *testing.T, v *victim) {
			v.setCluster(t, "A       TXT", 0)
		}, "without a cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVictim(t)
			tc.damage(t, v)
			err := readErr(v.fs(t), "A.TXT")
			fstreetest.WantCorrupt(t, "read", err)
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%v, want it to say %q", err, tc.msg)
			}
		})
	}
}

func TestHostileDirectories(t *testing.T) {
	t.Run("chain loops", func(t *testing.T) {
		v := newVictim(t)
		c := v.cluster(t, "SUB        ")
		r, err := Open(bytes.NewReader(v.img), int64(len(v.img)))
		if err != nil {
			t.Fatal(err)
		}
		second, err := r.next(c)
		if err != nil || !v.vol.valid(second) {
			t.Fatalf("SUB's second cluster %d: %v", second, err)
		}
		v.setFAT(second, c) // back to the first
		_, err = v.fs(t).ReadDir("SUB")
		fstreetest.WantCorrupt(t, "ReadDir", err)
	})
	t.Run("contains itself", func(t *testing.T) {
		v := newVictim(t)
		v.setCluster(t, "INNER      ", v.cluster(t, "SUB        "))
		fsys := v.fs(t)
		_, err := fsys.ReadDir("SUB/INNER")
		fstreetest.WantCorrupt(t, "ReadDir", err)
		walked := 0
		err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if walked++; walked > 1000 {
				return fs.SkipAll
			}
			return err
		})
		fstreetest.WantCorrupt(t, "WalkDir", err)
	})
	t.Run("long name with slash or dots", func(t *testing.T) {
		for _, bad := range []string{"a/b", "..", "."} {
			v := newVictim(t)
			// The entry before the short one holds the name's first 13
			// units: write the bad name there and end it.
			at := v.entry(t, "LONGER~1TXT") - 32
			u := append([]rune(bad), 0)
			offs := []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
			for i, r := range u {
				binary.LittleEndian.PutUint16(v.img[at+offs[i]:], uint16(r))
			}
			entries, err := v.fs(t).ReadDir(".")
			fstreetest.WantCorrupt(t, bad, err)
			if len(entries) != 3 { // A.TXT OTHER.TXT SUB
				t.Errorf("%q: %d entries beside it, want 3", bad, len(entries))
			}
		}
	})
	t.Run("long name checksum", func(t *testing.T) {
		v := newVictim(t)
		at := v.entry(t, "LONGER~1TXT") - 32
		v.img[at+13]++
		v.img[at-32+13]++
		if got := readErr(v.fs(t), "LONGER~1.TXT"); got != nil {
			t.Errorf("short name after a mismatched long name: %v", got)
		}
	})
	t.Run("escaped E5", func(t *testing.T) {
		v := newVictim(t)
		v.img[v.entry(t, "OTHER   TXT")] = 0x05
		if got := readErr(v.fs(t), "σTHER.TXT"); got != nil {
			t.Errorf("name starting with 0xE5: %v", got)
		}
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
		{"sector size", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[11:], 3000); return b }, fstree.ErrUnrecognized},
		{"cluster size", func(b []byte) []byte { b[13] = 3; return b }, fstree.ErrUnrecognized},
		{"no FATs", func(b []byte) []byte { b[16] = 0; return b }, fstree.ErrUnrecognized},
		{"beyond the device", func(b []byte) []byte { return b[:len(b)/2] }, fstree.ErrCorrupt},
		{"no sectors", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[19:], 0); return b }, fstree.ErrCorrupt},
		{"FAT over the data", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[22:], 0xFFFF); return b }, fstree.ErrCorrupt},
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
	t.Run("FAT32 root beyond the volume", func(t *testing.T) {
		b, err := os.ReadFile(mkfs(t, 2000, "-F", "32"))
		if err != nil {
			t.Fatal(err)
		}
		binary.LittleEndian.PutUint32(b[44:], 1<<27)
		_, err = Open(bytes.NewReader(b), int64(len(b)))
		fstreetest.WantCorrupt(t, "Open", err)
	})
}

// A read error of the device is passed on, not taken for corruption.
func TestDeviceError(t *testing.T) {
	v := newVictim(t)
	r, err := Open(bytes.NewReader(v.img), int64(len(v.img)))
	if err != nil {
		t.Fatal(err)
	}
	r.chains.Dev = failing{}
	_, err = fs.ReadFile(fstree.New(r), "A.TXT")
	if !errors.Is(err, errDevice) {
		t.Errorf("read: %v, want the device's error", err)
	}
}

var errDevice = errors.New("device failed")

type failing struct{}

func (failing) ReadAt([]byte, int64) (int, error) { return 0, errDevice }

var _ io.ReaderAt = failing{}
