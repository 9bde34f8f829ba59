package exfat

import (
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

func FuzzOpen(f *testing.F) {
	src := f.TempDir()
	tree(f, src, map[string][]byte{
		"a.bin":                 fstreetest.Random(9, 5000),
		"a long name.txt":       []byte("long"),
		"Dir/Sub/日本語.txt":       []byte("deep"),
		"Dir/Ünïcödé/empty.txt": nil,
	})
	img := mkfs(f, 1<<20, "-c", "512", "-b", "4096", "-L", "SEED")
	mnt, unmount := mount(f, img)
	fill(f, mnt, src)
	for range 3 { // two files appended to in turn: FAT chains
		for _, name := range []string{mnt + "/frag1", mnt + "/frag2"} {
			appendFile(f, name, fstreetest.Random(1, 700))
		}
	}
	unmount()
	f.Add(fstreetest.EncodeSparse(fstreetest.ReadImage(f, img)))

	f.Fuzz(func(t *testing.T, b []byte) {
		r, size := fstreetest.DecodeSparse(b)
		if fr, err := Open(r, size); err == nil {
			fstreetest.Exercise(fstree.New(fr))
		}
		// A mutation rarely keeps a checksum right: without them, the
		// fuzzer reaches what lies behind.
		if fr, err := open(r, size, false); err == nil {
			fstreetest.Exercise(fstree.New(fr))
		}
	})
}
