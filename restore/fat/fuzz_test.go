package fat

import (
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

func FuzzOpen(f *testing.F) {
	src := f.TempDir()
	tree(f, src, map[string][]byte{
		"A.TXT":                 fstreetest.Random(9, 1500),
		"a long name.txt":       []byte("long"),
		"lower.txt":             nil,
		"Dir/Sub/日本語.txt":       []byte("deep"),
		"Dir/frag.bin":          fstreetest.Random(10, 3000),
		"Dir/Ünïcödé/empty.txt": nil,
	})
	for _, args := range [][]string{
		{"-F", "12", "-s", "1", "-n", "SEED12"},
		{"-F", "16", "-s", "1", "-n", "SEED16"},
	} {
		kb := 360
		if args[1] == "16" {
			kb = 2200 // FAT16 needs 4085 clusters
		}
		img := mkfs(f, kb, args...)
		fill(f, img, src)
		f.Add(fstreetest.EncodeSparse(fstreetest.ReadImage(f, img)))
	}
	// FAT32 of few clusters: mtools cannot fill it, the root stays empty.
	img := mkfs(f, 1000, "-F", "32", "-n", "SEED32")
	f.Add(fstreetest.EncodeSparse(fstreetest.ReadImage(f, img)))

	f.Fuzz(func(t *testing.T, b []byte) {
		r, size := fstreetest.DecodeSparse(b)
		fr, err := Open(r, size)
		if err != nil {
			return
		}
		fstreetest.Exercise(fstree.New(fr))
	})
}
