package extfs_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/extfs"
	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// FuzzOpen opens fuzzed images and does with them what a user may. The
// seeds are small images that mke2fs makes of a small tree, one per
// on-disk layout: block maps, extents, inline data, an htree.
func FuzzOpen(f *testing.F) {
	src := f.TempDir()
	write := func(name string, data []byte) {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	write("a/b/file", []byte("nested\n"))
	write("tiny", []byte("x"))
	write("blocks", fstreetest.Random(1, 14*1024+5)) // past the direct blocks of 1 KiB
	for i := range 40 {
		write("dir/entry-with-a-long-name-"+strconv.Itoa(i), nil)
	}
	sparse, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		f.Fatal(err)
	}
	for i := range 6 {
		if _, err := sparse.WriteAt([]byte("data"), int64(i)*40000); err != nil {
			f.Fatal(err)
		}
	}
	sparse.Close()
	for _, l := range []struct{ name, target string }{{"fast", "a/b/file"}, {"slow", strings.Repeat("a/../", 20) + "tiny"}} {
		if err := os.Symlink(l.target, filepath.Join(src, l.name)); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(src, "tiny"), filepath.Join(src, "a/hard")); err != nil {
		f.Fatal(err)
	}
	for _, args := range [][]string{
		{"-t", "ext2", "-r", "0"},
		{"-t", "ext2", "-I", "128"},
		{"-t", "ext4", "-O", "^has_journal"},
		{"-t", "ext4", "-O", "^has_journal,inline_data"},
		{"-t", "ext4", "-O", "^has_journal,^extent,^64bit,meta_bg,^resize_inode"},
	} {
		img := filepath.Join(f.TempDir(), "img")
		args = append([]string{"-q", "-F", "-b", "1024", "-N", "64", "-d", src}, args...)
		fstreetest.Run(f, "mke2fs", append(args, img, "512K")...)
		if args[len(args)-1] == "^has_journal" {
			// An htree index for dir.
			runAllowing(f, 1, "e2fsck", "-fyD", img)
		}
		seed := fstreetest.EncodeSparse(fstreetest.ReadImage(f, img))
		// A seed the reader cannot read whole would fuzz its error paths
		// only.
		vol, size := fstreetest.DecodeSparse(seed)
		r, err := extfs.Open(vol, size)
		if err != nil {
			f.Fatalf("seed %v: %v", args, err)
		}
		fstreetest.Compare(f, fstree.New(r), src, fstreetest.CompareOptions{Symlink: true, Skip: skipLostFound})
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vol, size := fstreetest.DecodeSparse(data)
		r, err := extfs.Open(vol, size)
		if err != nil {
			return
		}
		fstreetest.Exercise(fstree.New(r))
	})
}
