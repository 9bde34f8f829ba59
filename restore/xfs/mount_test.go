package xfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// TestMounted fills filesystems through the kernel, which a protofile
// cannot: a file of 1500 extents (a two-level extent tree), holes,
// unwritten extents, hard links, nanosecond times, a sticky directory, a
// socket and remote symlinks with version 5 headers. It needs mount -o
// loop, as root; the other tests do not mount.
func TestMounted(t *testing.T) {
	for _, l := range []struct {
		name string
		args []string
	}{
		// Only v5: kernels built without CONFIG_XFS_SUPPORT_V4 (this
		// machine's among them) refuse to mount v4, which the protofile
		// layouts of TestLayouts cover instead.
		{"v5-1k", []string{"-b", "size=1024"}},
	} {
		t.Run(l.name, func(t *testing.T) {
			src := t.TempDir()
			writeTree(t, src, false)
			writeKernelTree(t, src, l.name[:2] == "v5")

			img := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(img, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(img, 64<<20); err != nil {
				t.Fatal(err)
			}
			fstreetest.Run(t, "mkfs.xfs", append(append([]string{"--unsupported", "-q", "-f"}, l.args...), img)...)
			mnt := t.TempDir()
			if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
				t.Fatalf("mount the image (the test runs as root, with loop devices): %v: %s", err, out)
			}
			mounted := true
			umount := func() {
				if mounted {
					fstreetest.Run(t, "umount", mnt)
					mounted = false
				}
			}
			t.Cleanup(umount)
			fstreetest.Run(t, "cp", "-a", "--sparse=always", src+"/.", mnt)
			writeBoth(t, src, mnt)
			umount()

			r, fsys := open(t, img)
			fstreetest.Compare(t, fsys, src, fstreetest.CompareOptions{
				Mode: true, Owner: true, Mtime: time.Nanosecond, Links: true, Symlink: true,
			})
			frag := lookupInode(t, r, fsys, "frag")
			// Speculative preallocation may leave unwritten extents in
			// the holes too.
			if frag.format != formatBtree || frag.root.level < 2 || frag.nextents < 1500 {
				t.Errorf("frag: format %d, %d extents, want a btree of 2 levels and 1500 extents or more", frag.format, frag.nextents)
			}
			e, ok, err := r.mapper(lookupInode(t, r, fsys, "prealloc")).find(0)
			if err != nil || !ok || !e.unwritten {
				t.Errorf("prealloc's first extent %+v, %v, %v: want unwritten", e, ok, err)
			}
			if m := lookupInode(t, r, fsys, "old").Meta(); !m.Mtime.Equal(time.Date(1950, 1, 1, 0, 0, 0, 5, time.UTC)) {
				t.Errorf("old: mtime %v", m.Mtime)
			}
		})
	}
}

// writeKernelTree adds to a source tree what only a mounted filesystem
// can be given.
func writeKernelTree(t *testing.T, dir string, bigtime bool) {
	tr := tree{t: t, dir: dir, rnd: rand.New(rand.NewPCG(3, 4))}
	tr.link("small.txt", "hardlink")
	tr.link("small.txt", "sf/hardlink")
	tr.mkdir("tmp", 0o777|os.ModeSticky)
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: filepath.Join(dir, "socket")}); err != nil {
		t.Fatal(err)
	}
	tr.file("old", 5, 0o644, 0, 0)
	old := time.Date(1950, 1, 1, 0, 0, 0, 5, time.UTC)
	if err := os.Chtimes(filepath.Join(dir, "old"), old, old); err != nil {
		t.Fatal(err)
	}
	if bigtime {
		future := time.Date(2100, 1, 1, 0, 0, 0, 999999999, time.UTC)
		if err := os.Chtimes(filepath.Join(dir, "odd"), future, future); err != nil {
			t.Fatal(err)
		}
	}
}

// writeBoth writes files with the same contents, mode and times into the
// source tree and the mounted filesystem: files whose layout cp would not
// keep (its hole detection works in the source's block size).
func writeBoth(t *testing.T, src, mnt string) {
	block := bytes.Repeat([]byte("fragment"), 128)
	files := []struct {
		name  string
		size  int64
		write func(f *os.File) error
		io    []string // xfs_io commands instead of write, on the mount
	}{
		// Every other 1 KiB block: each run of data is an extent.
		{name: "frag", write: func(f *os.File) error {
			for i := range 1500 {
				block[0], block[1] = byte(i), byte(i>>8)
				if _, err := f.WriteAt(block, int64(i)*2048); err != nil {
					return err
				}
			}
			return nil
		}},
		{name: "holes", size: 10 << 20, write: func(f *os.File) error {
			for _, off := range []int64{0, 5 << 20, 10<<20 - 3} {
				if _, err := f.WriteAt([]byte("abc"), off); err != nil {
					return err
				}
			}
			return nil
		}},
		// An unwritten extent with 4 KiB written in its middle.
		{name: "prealloc", size: 1 << 20, write: func(f *os.File) error {
			_, err := f.WriteAt(bytes.Repeat([]byte{'a'}, 4096), 64<<10)
			return err
		}, io: []string{"-c", "falloc 0 1m", "-c", "pwrite -S 0x61 64k 4k"}},
	}
	when := time.Date(2031, 2, 3, 4, 5, 6, 789, time.UTC)
	for _, file := range files {
		for _, dir := range []string{src, mnt} {
			p := filepath.Join(dir, file.name)
			if dir == mnt && file.io != nil {
				fstreetest.Run(t, "xfs_io", append(append([]string{"-f"}, file.io...), p)...)
			} else {
				f, err := os.Create(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := f.Truncate(file.size); err != nil {
					t.Fatal(err)
				}
				if err := file.write(f); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, when, when); err != nil {
				t.Fatal(err)
			}
		}
	}
}
