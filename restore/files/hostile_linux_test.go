//go:build linux

package files

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

func TestRestoreHostileSymlink(t *testing.T) {
	outside := t.TempDir()
	up := strings.Repeat("../", 20) + strings.TrimPrefix(outside, "/")
	fsys := memFS(
		fstreetest.Named("a", fstreetest.MemDir(fstreetest.Named("evil", fstreetest.MemLink(up)), fstreetest.Named("abs", fstreetest.MemLink(outside)))),
		fstreetest.Named("b", fstreetest.MemDir(
			fstreetest.Named("evil", fstreetest.MemDir(fstreetest.Named("pwned", fstreetest.MemFile("pwned")))),
			fstreetest.Named("abs", fstreetest.MemDir(fstreetest.Named("pwned", fstreetest.MemFile("pwned")))),
		)),
	)
	for _, policy := range []Overwrite{Never, Always} {
		target := filepath.Join(t.TempDir(), "t")
		if _, err := Restore(context.Background(), fsys, []string{"a/evil", "a/abs"}, target, Options{}); err != nil {
			t.Fatal(err)
		}
		if l, err := os.Readlink(filepath.Join(target, "evil")); err != nil || l != up {
			t.Errorf("evil links to %q, %v; want %q", l, err, up)
		}
		sum, err := Restore(context.Background(), fsys, []string{"b/evil", "b/abs"}, target, Options{Overwrite: policy})
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Fatalf("%v: %d files written outside the target", policy, len(entries))
		}
		if policy == Never && (err == nil || sum.Failed != 2) {
			t.Errorf("never: %+v, %v; want two directories refused", sum, err)
		}
		if policy == Always {
			if b, _ := os.ReadFile(filepath.Join(target, "evil", "pwned")); err != nil || string(b) != "pwned" {
				t.Errorf("always: %v, evil/pwned holds %q", err, b)
			}
		}
	}
}

func TestRestoreWindowsNames(t *testing.T) {
	names := []string{"CON", "a:b", "nul.tar.gz", "trail.", "trail ", "COM\u00b9", "README", "Readme", "ok.txt", "tab\there"}
	var children []fstreetest.MemChild
	for _, n := range names {
		children = append(children, fstreetest.Named(n, fstreetest.MemFile(n)))
	}
	fsys := memFS(fstreetest.Named("d", fstreetest.MemDir(children...)))

	target := t.TempDir()
	sum, err := Restore(context.Background(), fsys, []string{"d"}, target, Options{GOOS: "windows"})
	if err == nil || sum.Failed != 8 || sum.Files != 2 {
		t.Fatalf("%+v, %v; want 8 names refused, 2 restored", sum, err)
	}
	for _, e := range sum.Errors {
		if !errors.Is(e, ErrInvalidName) {
			t.Errorf("%v does not wrap ErrInvalidName", e)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(target, "d"))
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, []string{"README", "ok.txt"}) {
		t.Errorf("restored %q, want README and ok.txt", got)
	}

	sum, err = Restore(context.Background(), fsys, []string{"d"}, t.TempDir(), Options{GOOS: "linux"})
	if err != nil || sum.Files != int64(len(names)) {
		t.Errorf("on Linux: %+v, %v; want every name restored", sum, err)
	}
}

func TestRestoreLoops(t *testing.T) {
	loop := fstreetest.MemDir(fstreetest.Named("f", fstreetest.MemFile("f")))
	loop.Children = append(loop.Children, fstreetest.Named("again", loop))
	far := fstreetest.MemDir()
	far.Children = []fstreetest.MemChild{fstreetest.Named("b", fstreetest.MemDir(fstreetest.Named("c", fstreetest.MemDir(fstreetest.Named("back", far), fstreetest.Named("g", fstreetest.MemFile("g"))))))}
	fsys := memFS(fstreetest.Named("loop", loop), fstreetest.Named("far", far))
	for _, o := range []Options{{}, {Limits: Limits{MaxFiles: 100}}} {
		target := t.TempDir()
		sum, err := Restore(context.Background(), fsys, []string{"loop", "far"}, target, o)
		if sum.Failed != 2 || !errors.Is(sum.Errors[0], ErrLoop) || !errors.Is(sum.Errors[1], ErrLoop) || err == nil {
			t.Fatalf("%+v, %v; want two loops", sum, err)
		}
		for _, p := range []string{"loop/f", "far/b/c/g"} {
			if _, err := os.Stat(filepath.Join(target, p)); err != nil {
				t.Error(err)
			}
		}
		for _, p := range []string{"loop/again", "far/b/c/back"} {
			if _, err := os.Lstat(filepath.Join(target, p)); err == nil {
				t.Errorf("%s restored", p)
			}
		}
	}

	// Without inode numbers a loop is only seen as depth.
	self := fstreetest.MemDir()
	self.Info.Inode = 0
	self.Children = []fstreetest.MemChild{fstreetest.Named("d", self)}
	sum, err := Restore(context.Background(), memFS(fstreetest.Named("self", self)), []string{"self"}, t.TempDir(), Options{})
	if err == nil || sum.Dirs != MaxDepth+1 || !strings.Contains(err.Error(), "deep") {
		t.Errorf("%+v, %v; want %d directories, then too deep", sum.Dirs, err, MaxDepth+1)
	}
}

func TestRestoreOddFiles(t *testing.T) {
	negative := fstreetest.MemFile("")
	negative.Info.Size = -1
	dev := fstreetest.MemFile("")
	dev.Info.Mode = fs.ModeDevice | 0o600
	empty := fstreetest.MemLink("")
	short := fstreetest.MemFile("0123456789") // its size says more than it holds
	short.Info.Size = 100 << 20
	fsys := memFS(fstreetest.Named("negative", negative), fstreetest.Named("dev", dev), fstreetest.Named("empty-link", empty),
		fstreetest.Named("short", short), fstreetest.Named("ok", fstreetest.MemFile("ok")))
	target := t.TempDir()
	sum, err := Restore(context.Background(), fsys, []string{"negative", "dev", "empty-link", "short", "ok", "missing"}, target, Options{})
	if err == nil || sum.Failed != 4 || sum.Skipped != 1 || sum.Files != 1 {
		t.Errorf("%+v, %v; want 4 failures, a skipped device and one file", sum, err)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 1 || entries[0].Name() != "ok" {
		t.Errorf("restored %v, want only ok", entries)
	}
	// In an archive, a file that ends early ends the archive unfinished.
	var buf bytes.Buffer
	if _, err := WriteTar(context.Background(), &buf, fsys, []string{"ok", "short"}, ArchiveOptions{}); err == nil || !strings.Contains(err.Error(), "short") {
		t.Errorf("tar of a file that ends early: %v", err)
	}
	tr := tar.NewReader(&buf)
	for _, err = tr.Next(); err == nil; _, err = tr.Next() {
	}
	if err == io.EOF {
		t.Error("the unfinished archive reads as complete")
	}
	// A root that is not a directory.
	sum, err = Restore(context.Background(), fstreetest.MemFS(fstreetest.MemFile("x")), []string{"."}, t.TempDir(), Options{})
	if err == nil || sum.Failed != 1 {
		t.Errorf("a file for a root: %+v, %v", sum, err)
	}
}

func TestRestoreAbsurdSize(t *testing.T) {
	huge := &fstreetest.MemNode{Info: fstree.Meta{Mode: 0o644, Size: 1 << 62, Inode: 5, Nlink: 1}, Zeros: true}
	fsys := memFS(fstreetest.Named("huge", huge))
	target := t.TempDir()
	_, err := Restore(context.Background(), fsys, []string{"huge"}, target, Options{Limits: Limits{MaxBytes: 1 << 30}})
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("%v, want ErrLimit", err)
	}
	// Without limits, the context ends it, promptly.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Restore(ctx, fsys, []string{"huge"}, target, Options{})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("%v after %v, want the deadline", err, time.Since(start))
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("left in the target: %v", entries)
	}
}

func TestRestoreMeta(t *testing.T) {
	mtime, atime := testTime, testTime.Add(time.Hour+time.Nanosecond)
	file := fstreetest.MemFile("secret")
	file.Info = fstree.Meta{Mode: 0o750 | fs.ModeSetuid | fs.ModeSetgid, Size: 6, HasOwner: true, UID: 1234, GID: 5678,
		Mtime: mtime, Atime: atime, Inode: 77, Nlink: 2}
	again := *file // the same inode under another name
	link := fstreetest.MemLink("file")
	link.Info.HasOwner, link.Info.UID, link.Info.GID = true, 4321, 8765
	dir := fstreetest.MemDir(fstreetest.Named("file", file), fstreetest.Named("link", link), fstreetest.Named("sub", fstreetest.MemDir(fstreetest.Named("again", &again))))
	dir.Info.Mode, dir.Info.Mtime, dir.Info.Atime = fs.ModeDir|0o700|fs.ModeSticky, mtime.Add(-time.Hour), atime
	dir.Info.HasOwner = true
	fsys := memFS(fstreetest.Named("dir", dir))

	target := t.TempDir()
	sum, err := Restore(context.Background(), fsys, []string{"dir"}, target, Options{Owner: true})
	if err != nil || sum.HardLinks != 1 || sum.Files != 1 {
		t.Fatalf("%+v, %v", sum, err)
	}
	stat := func(p string) (fs.FileInfo, *syscall.Stat_t) {
		info, err := os.Lstat(filepath.Join(target, p))
		if err != nil {
			t.Fatal(err)
		}
		return info, info.Sys().(*syscall.Stat_t)
	}
	info, st := stat("dir/file")
	if info.Mode() != file.Info.Mode || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("file: %v %d:%d, want %v 1234:5678", info.Mode(), st.Uid, st.Gid, file.Info.Mode)
	}
	if m, a := time.Unix(st.Mtim.Unix()), time.Unix(st.Atim.Unix()); !m.Equal(mtime) || !a.Equal(atime) {
		t.Errorf("file: mtime %v atime %v, want %v %v", m, a, mtime, atime)
	}
	if _, st2 := stat("dir/sub/again"); st2.Ino != st.Ino {
		t.Error("sub/again is not a hard link of file")
	}
	if _, st := stat("dir/link"); st.Uid != 4321 || st.Gid != 8765 {
		t.Errorf("link owned by %d:%d, want 4321:8765", st.Uid, st.Gid)
	}
	info, st = stat("dir")
	if info.Mode() != dir.Info.Mode || !info.ModTime().Equal(dir.Info.Mtime) || !time.Unix(st.Atim.Unix()).Equal(atime) {
		t.Errorf("dir: %v %v, want %v %v", info.Mode(), info.ModTime(), dir.Info.Mode, dir.Info.Mtime)
	}
}

// TestRestoreOwnerNotPermitted restores with Owner as a user who may not
// chown: the file is restored, without its owner and its setuid bit. As
// root, the test runs itself again as nobody.
func TestRestoreOwnerNotPermitted(t *testing.T) {
	f := fstreetest.MemFile("data")
	f.Info.Mode, f.Info.HasOwner, f.Info.UID, f.Info.GID = 0o755|fs.ModeSetuid, true, 1234, 5678
	fsys := memFS(fstreetest.Named("tool", f))
	if target := os.Getenv("BULWARK_FILES_TARGET"); target != "" {
		if _, err := Restore(context.Background(), fsys, []string{"tool"}, target, Options{Owner: true}); err != nil {
			t.Fatal(err)
		}
		return
	}
	target := t.TempDir()
	uid := os.Geteuid()
	if uid == 0 {
		uid = 65534
		for _, d := range []string{target, filepath.Dir(target)} {
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
		}
		// The test binary's own directory is root's alone.
		bin := filepath.Join(target, "files.test")
		self, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, bin, self, 0o755)
		defer os.Remove(bin)
		cmd := exec.Command(bin, "-test.run=^TestRestoreOwnerNotPermitted$")
		cmd.Env = append(os.Environ(), "BULWARK_FILES_TARGET="+target)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("as nobody: %v\n%s", err, out)
		}
	} else if _, err := Restore(context.Background(), fsys, []string{"tool"}, target, Options{Owner: true}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(filepath.Join(target, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); info.Mode() != 0o755 || st.Uid != uint32(uid) {
		t.Errorf("restored %v owned by %d, want 0755 owned by %d", info.Mode(), st.Uid, uid)
	}
}
