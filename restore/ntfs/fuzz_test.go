package ntfs

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// seedImage makes a 2 MiB volume with a little of everything the reader
// reads, and encodes it for the fuzz corpus.
func seedImage(f *testing.F, sector int, mountOpts ...string) []byte {
	img := mkntfs(f, 2, sector, 4096, "seed")
	src := f.TempDir()
	writeFile(f, filepath.Join(src, "hello.txt"), []byte("hello\n"))
	writeFile(f, filepath.Join(src, "data.bin"), randomBytes(1, 9000))
	writeFile(f, filepath.Join(src, "sparse.bin"), nil)
	if err := os.Truncate(filepath.Join(src, "sparse.bin"), 1<<30); err != nil {
		f.Fatal(err)
	}
	for i := range 40 {
		writeFile(f, filepath.Join(src, "dir", fmt.Sprintf("name-%02d-é", i)), nil)
	}
	if err := os.Symlink("hello.txt", filepath.Join(src, "link")); err != nil {
		f.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "hello.txt"), filepath.Join(src, "dir/hard")); err != nil {
		f.Fatal(err)
	}
	mnt, unmount := mount(f, img, mountOpts...)
	fstreetest.Run(f, "cp", "-R", "--no-dereference", "--preserve=links", "--sparse=always", src+"/.", mnt)
	mkdirAll(f, filepath.Join(mnt, "comp"))
	setAttrib(f, filepath.Join(mnt, "comp"), fstree.AttrCompressed)
	writeFile(f, filepath.Join(mnt, "comp/text.txt"), textBytes(1, 70000))
	setxattr(f, filepath.Join(mnt, "hello.txt"), "user.stream", []byte("ads"))
	setReparse(f, filepath.Join(mnt, "link"), windowsLink(tagSymlink, `\??\C:\dir`, 0))
	unmount()
	return seed(f, img)
}

// seed encodes an image without the data of the metafiles the reader
// never reads ($MFTMirr, $LogFile, $AttrDef, $Secure, $UpCase), which
// would make fuzz inputs large.
func seed(f *testing.F, path string) []byte {
	img := fstreetest.ReadImage(f, path)
	r, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		f.Fatal(err)
	}
	for _, num := range []uint64{1, 2, 4, 9, 10} {
		n, err := r.node(num)
		if err != nil {
			f.Fatal(err)
		}
		for _, d := range append(slices.Collect(maps.Values(n.streams)), n.data) {
			if d == nil {
				continue
			}
			for _, rn := range d.runs {
				if !rn.sparse() {
					clear(img[rn.lcn*r.clusterSize : (rn.lcn+rn.n)*r.clusterSize])
				}
			}
		}
	}
	return fstreetest.EncodeSparse(img)
}

func FuzzOpen(f *testing.F) {
	f.Add(seedImage(f, 512))
	f.Add(seedImage(f, 4096, "special_files=wsl"))
	img := mkntfs(f, 2, 512, 1024, "ntfscp")
	src := filepath.Join(f.TempDir(), "file")
	writeFile(f, src, textBytes(2, 5000))
	fstreetest.Run(f, "ntfscp", "-f", img, src, "file")
	f.Add(seed(f, img))

	f.Fuzz(func(t *testing.T, data []byte) {
		r, size := fstreetest.DecodeSparse(data)
		rd, err := Open(r, size)
		if err != nil {
			return
		}
		fsys := fstree.New(rd)
		fstreetest.Exercise(fsys)
		// Streams are beyond what Exercise knows.
		root, err := rd.Root()
		if err != nil {
			return
		}
		entries, _ := rd.ReadDir(root)
		for _, e := range entries[:min(len(entries), 20)] {
			n, err := e.Load()
			if err != nil {
				continue
			}
			for _, s := range n.Meta().Streams {
				if ra, size, err := rd.Stream(n, s.Name); err == nil {
					buf := make([]byte, min(size, 1<<16))
					_, _ = ra.ReadAt(buf, 0)
				}
			}
		}
	})
}
