package restore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
	"github.com/bulwarkbackup/bulwark/restore"
	"github.com/bulwarkbackup/bulwark/restore/files"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
	"github.com/bulwarkbackup/bulwark/restore/lvm/lvmtest"
)

const mib = 1 << 20

// fsKind is a filesystem the round trip is run on: how the real tools make
// it from a source tree, and what it keeps.
type fsKind struct {
	name, fsType string
	make         func(t *testing.T, src, img string)
	symlinks     bool          // keeps symlinks
	perms        bool          // keeps permission bits
	mtime        time.Duration // granularity of modification times
}

var fsKinds = []fsKind{
	{name: "ext4", fsType: "ext4", symlinks: true, perms: true, mtime: time.Second, make: func(t *testing.T, src, img string) {
		fstreetest.Run(t, "mke2fs", "-q", "-F", "-t", "ext4", "-d", src, img)
	}},
	{name: "xfs", fsType: "xfs", symlinks: true, perms: true, mtime: time.Microsecond, make: func(t *testing.T, src, img string) {
		fstreetest.Run(t, "mkfs.xfs", "--unsupported", "-q", "-f", img)
		withMount(t, []string{"mount", "-o", "loop", img}, src, "cp", "-a")
	}},
	{name: "ntfs", fsType: "ntfs", symlinks: true, mtime: time.Microsecond, make: func(t *testing.T, src, img string) {
		fstreetest.Run(t, "mkntfs", "-F", "-Q", "-q", img)
		withMount(t, []string{"ntfs-3g", img}, src, "cp", "-r", "--preserve=timestamps")
	}},
	{name: "fat32", fsType: "fat32", mtime: 2 * time.Second, make: func(t *testing.T, src, img string) {
		fstreetest.Run(t, "mkfs.vfat", "-F", "32", img)
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"-s", "-m", "-i", img}
		for _, e := range entries {
			args = append(args, filepath.Join(src, e.Name()))
		}
		t.Setenv("MTOOLS_SKIP_CHECK", "1")
		fstreetest.Run(t, "mcopy", append(args, "::")...)
	}},
	{name: "exfat", fsType: "exfat", mtime: 10 * time.Millisecond, make: func(t *testing.T, src, img string) {
		fstreetest.Run(t, "mkfs.exfat", img)
		dev := strings.TrimSpace(fstreetest.Run(t, "losetup", "-f", "--show", img))
		defer fstreetest.Run(t, "losetup", "-d", dev)
		withMount(t, []string{"mount.exfat-fuse", dev}, src, "cp", "-r", "--preserve=timestamps")
	}},
}

// withMount mounts a filesystem (the mount command and its source, the
// mount point appended), copies src's contents in with copy, and unmounts.
func withMount(t *testing.T, mount []string, src string, copyCmd ...string) {
	t.Helper()
	mnt := t.TempDir()
	fstreetest.Run(t, mount[0], append(mount[1:], mnt)...)
	copied := exec.Command(copyCmd[0], append(copyCmd[1:], src+"/.", mnt)...)
	out, err := copied.CombinedOutput()
	fstreetest.Run(t, "umount", mnt)
	if err != nil {
		t.Fatalf("%v: %v\n%s", copied.Args, err, out)
	}
}

// writeSourceTree writes the source tree: nested folders, Unicode names, an
// empty file, files of odd sizes, a sparse one, and a symlink where the
// filesystem keeps them.
func writeSourceTree(t *testing.T, dir string, symlinks bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := map[string][]byte{
		"tree/readme.txt":                   []byte("a file of the round trip\n"),
		"tree/empty":                        nil,
		"tree/big.bin":                      random(3*mib + 12345),
		"tree/Ünïcødé ファイル.txt":             []byte("ユニコード\n"),
		"tree/sub/dir/deeper/leaf.dat":      random(70000),
		"tree/sub/many words in a name.txt": random(4097),
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	sparse, err := os.Create(filepath.Join(dir, "tree/sparse.img"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sparse.WriteAt(random(5000), 2*mib); err != nil {
		t.Fatal(err)
	}
	sparse.Close()
	if symlinks {
		if err := os.Symlink("sub/dir/deeper/leaf.dat", filepath.Join(dir, "tree/link")); err != nil {
			t.Fatal(err)
		}
	}
	// Times the filesystems can all keep: whole seconds, even.
	when := time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type() != fs.ModeSymlink {
			err = os.Chtimes(p, when, when)
		}
		return err
	})
}

// container puts a filesystem image into a disk layout.
type container struct {
	name string
	// disks builds the point's disks from the filesystem image and says
	// which volume ID the filesystem has.
	disks func(t *testing.T, fsImg string) ([]string, string)
}

var containers = []container{
	{name: "gpt", disks: func(t *testing.T, fsImg string) ([]string, string) {
		disk := sizedFile(t, 200*mib)
		fstreetest.Run(t, "sgdisk", "-n", "1:2048:+1M", "-n", "2:0:+"+mibs(fileSize(t, fsImg)), "-t", "2:8300", disk)
		copyInto(t, fsImg, disk, partStart(t, disk, 2))
		return []string{disk}, "d0p2"
	}},
	{name: "gpt-4k-sectors", disks: func(t *testing.T, fsImg string) ([]string, string) {
		disk := sizedFile(t, 200*mib)
		dev := strings.TrimSpace(fstreetest.Run(t, "losetup", "-b", "4096", "-f", "--show", disk))
		fstreetest.Run(t, "sgdisk", "-n", "1:256:+"+mibs(fileSize(t, fsImg)), "-t", "1:0700", dev)
		fstreetest.Run(t, "losetup", "-d", dev)
		copyInto(t, fsImg, disk, 256*4096)
		return []string{disk}, "d0p1"
	}},
	{name: "mbr-logical", disks: func(t *testing.T, fsImg string) ([]string, string) {
		disk := sizedFile(t, 200*mib)
		size := fileSize(t, fsImg) / 512
		script := "label: dos\n2048,4096,83\n8192,,5\n10240,4096,83\n16384," + strconv.FormatInt(size, 10) + ",83\n"
		sfdisk := exec.Command(sbin(t, "sfdisk"), "-q", disk)
		sfdisk.Stdin = strings.NewReader(script)
		if out, err := sfdisk.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
		copyInto(t, fsImg, disk, 16384*512)
		return []string{disk}, "d0p6"
	}},
	{name: "lvm-striped", disks: func(t *testing.T, fsImg string) ([]string, string) {
		e := lvmtest.New(t)
		img0, dev0 := e.Image(120 * mib)
		img1, dev1 := e.Image(120 * mib)
		e.LVM("pvcreate", "-q", dev0, dev1)
		e.VGCreate("rt", dev0, dev1)
		e.LVM("lvcreate", "-q", "-an", "-Zn", "-i2", "-I64k", "-L", mibs(fileSize(t, fsImg)), "-n", "data", "rt")
		data, err := os.ReadFile(fsImg)
		if err != nil {
			t.Fatal(err)
		}
		e.WriteLV("rt", "data", 0, data)
		return []string{img0, img1}, "rt/data"
	}},
}

// TestRoundTrip makes every filesystem with the real tools, puts it in
// every container (GPT on 512-byte and on 4K sectors, a logical partition
// of an MBR, an LVM volume striped over two disks), backs the disks up, and restores the tree with
// the file-level restore: every file's SHA-256, type, symlink target, mode
// and mtime (as far as the filesystem keeps them) match the source.
func TestRoundTrip(t *testing.T) {
	for _, k := range fsKinds {
		t.Run(k.name, func(t *testing.T) {
			src := t.TempDir()
			writeSourceTree(t, src, k.symlinks)
			fsImg := sizedFile(t, 64*mib)
			k.make(t, src, fsImg)
			for _, c := range containers {
				t.Run(c.name, func(t *testing.T) {
					disks, volID := c.disks(t, fsImg)
					roundTrip(t, k, src, disks, volID)
				})
			}
		})
	}
}

func roundTrip(t *testing.T, k fsKind, src string, disks []string, volID string) {
	ctx := context.Background()
	store := newStore(t)
	b, err := store.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: "roundtrip"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range disks {
		f, err := os.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := b.AddDisk(ctx, chunkstore.DiskSpec{Index: i, Label: filepath.Base(d), Reader: f, Size: fileSize(t, d)}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vols, err := restore.Volumes(ctx, store, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	v, err := restore.FindVolume(vols, volID)
	if err != nil {
		t.Fatal(err)
	}
	if v.FSType != k.fsType {
		t.Fatalf("volume %s holds %q (%v), want %s", volID, v.FSType, v.Err, k.fsType)
	}
	fsys, err := v.Open()
	if err != nil {
		t.Fatal(err)
	}
	to := t.TempDir()
	sum, err := files.Restore(ctx, fsys, []string{"tree"}, to, files.Options{})
	if err != nil {
		t.Fatalf("restore: %v (%+v)", err, sum)
	}
	compareTrees(t, k, filepath.Join(src, "tree"), filepath.Join(to, "tree"))
}

// compareTrees checks that got holds what want does.
func compareTrees(t *testing.T, k fsKind, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		g := filepath.Join(got, rel)
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(g)
		if err != nil {
			t.Errorf("%s: not restored: %v", rel, err)
			return nil
		}
		n++
		if wi.Mode().Type() != gi.Mode().Type() {
			t.Errorf("%s: type %v, want %v", rel, gi.Mode().Type(), wi.Mode().Type())
			return nil
		}
		if k.perms && wi.Mode().Perm() != gi.Mode().Perm() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode().Perm(), wi.Mode().Perm())
		}
		if wi.Mode().IsRegular() {
			if gi.ModTime().Sub(wi.ModTime()).Abs() >= k.mtime {
				t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
			}
			if sha(t, p) != sha(t, g) {
				t.Errorf("%s: SHA-256 differs", rel)
			}
		}
		if wi.Mode().Type() == fs.ModeSymlink {
			wt, _ := os.Readlink(p)
			gt, _ := os.Readlink(g)
			if wt != gt {
				t.Errorf("%s: symlink to %q, want %q", rel, gt, wt)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Fatalf("compared %d files, want the whole tree", n)
	}
}

func sha(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func newStore(t *testing.T) *chunkstore.Store {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	pw := []byte("round trip")
	if err := chunkstore.Init(ctx, backend.NewLocal(dir), chunkstore.InitOptions{Password: pw,
		KDF: crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}}); err != nil {
		t.Fatal(err)
	}
	s, err := chunkstore.Open(ctx, backend.NewLocal(dir), chunkstore.Options{Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func sizedFile(t *testing.T, size int64) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "img")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func mibs(n int64) string { return strconv.FormatInt((n+mib-1)/mib, 10) + "M" }

// copyInto copies an image into a disk at off, keeping holes.
func copyInto(t *testing.T, img, disk string, off int64) {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 64<<10)
	for pos := int64(0); ; pos += int64(len(buf)) {
		n, err := in.ReadAt(buf, pos)
		if n > 0 && !zero(buf[:n]) {
			if _, werr := out.WriteAt(buf[:n], off+pos); werr != nil {
				t.Fatal(werr)
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// partStart asks sgdisk where a partition starts, in bytes.
func partStart(t *testing.T, disk string, n int) int64 {
	out := fstreetest.Run(t, "sgdisk", "-i", strconv.Itoa(n), disk)
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "First sector: "); ok {
			lba, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return lba * 512
		}
	}
	t.Fatalf("sgdisk -i %d: no first sector in\n%s", n, out)
	return 0
}

func sbin(t *testing.T, name string) string {
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (.ci/run installs it)", name)
	}
	return p
}
