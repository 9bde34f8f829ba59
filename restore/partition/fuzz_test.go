package partition_test

import (
	"errors"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
	"github.com/bulwarkbackup/bulwark/restore/partition"
)

func FuzzPartition(f *testing.F) {
	gpt := image(f, 64*mib)
	makeGPT(f, gpt, 512)
	gpt4k := image(f, 64*mib)
	makeGPT(f, loop(f, gpt4k, 4096), 4096)
	mbr := image(f, 64*mib)
	makeMBR(f, mbr)
	mbr4k := image(f, 64*mib)
	makeMBR(f, loop(f, mbr4k, 4096))
	for _, img := range []string{gpt, gpt4k, mbr, mbr4k} {
		f.Add(fstreetest.EncodeSparse(fstreetest.ReadImage(f, img)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, size := fstreetest.DecodeSparse(data)
		tab, err := partition.Read(r, size)
		if err != nil {
			// Reads stay within the disk, so a sparse image never
			// fails one: every error is the table's.
			if !errors.Is(err, fstree.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		for _, p := range tab.Partitions {
			if p.Start <= 0 || p.Length <= 0 || p.Start+p.Length > size {
				t.Fatalf("partition %d at %d+%d on a disk of %d", p.Number, p.Start, p.Length, size)
			}
		}
	})
}
