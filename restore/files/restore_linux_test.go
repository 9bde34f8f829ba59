//go:build linux

package files

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// hostFile is what a test compares of a file on the host.
type hostFile struct {
	mode     fs.FileMode
	size     int64
	sum      string
	target   string
	uid, gid uint32
	mtime    time.Time
	ino      uint64
	blocks   int64
}

func scanHost(t *testing.T, dir string) map[string]hostFile {
	t.Helper()
	out := map[string]hostFile{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		f := hostFile{mode: info.Mode(), size: info.Size(), uid: st.Uid, gid: st.Gid,
			mtime: info.ModTime(), ino: st.Ino, blocks: st.Blocks}
		switch {
		case info.Mode().IsRegular():
			f.sum = hashFile(t, p)
		case info.Mode().Type() == fs.ModeSymlink:
			f.target, _ = os.Readlink(p)
		}
		out[rel] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareHost checks that got holds the tree of want: types, modes with
// the special bits, owners, contents, symlink targets, modification
// times to the nanosecond (symlinks aside: no Root call sets theirs) and
// hard links.
func compareHost(t *testing.T, want, got string) {
	t.Helper()
	w, g := scanHost(t, want), scanHost(t, got)
	links := map[uint64]uint64{} // source inode -> restored inode
	for p, wf := range w {
		gf, ok := g[p]
		if !ok {
			t.Errorf("%s: not restored", p)
			continue
		}
		if gf.mode != wf.mode || gf.uid != wf.uid || gf.gid != wf.gid || gf.sum != wf.sum ||
			gf.target != wf.target || gf.size != wf.size {
			t.Errorf("%s: restored %v %d:%d size %d sum %.8s target %q, want %v %d:%d size %d sum %.8s target %q",
				p, gf.mode, gf.uid, gf.gid, gf.size, gf.sum, gf.target, wf.mode, wf.uid, wf.gid, wf.size, wf.sum, wf.target)
		}
		if p != "." && wf.mode.Type() != fs.ModeSymlink && !gf.mtime.Equal(wf.mtime) {
			t.Errorf("%s: mtime %v, want %v", p, gf.mtime, wf.mtime)
		}
		if wf.mode.IsRegular() {
			if ino, seen := links[wf.ino]; seen && ino != gf.ino {
				t.Errorf("%s: not a hard link of the file it shares an inode with in the source", p)
			}
			links[wf.ino] = gf.ino
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: restored, not in the source", p)
		}
	}
}

// makeTree writes a source tree with what a restore must keep. outside is
// a directory that its absolute symlinks point to.
func makeTree(t *testing.T, dir, outside string) {
	writeFile(t, filepath.Join(dir, "a.txt"), []byte("hello\n"), 0o644)
	writeFile(t, filepath.Join(dir, "ünïcødé", "日本語 テキスト.txt"), randomData(3<<20+17, 1), 0o640)
	writeFile(t, filepath.Join(dir, "ünïcødé", "empty"), nil, 0o600)
	writeFile(t, filepath.Join(dir, "bin", "tool"), []byte("#!/bin/sh\n"), 0o755|fs.ModeSetuid)
	writeFile(t, filepath.Join(dir, "ro", "inside"), []byte("in a read-only directory"), 0o444)
	writeFile(t, filepath.Join(dir, "deep", "er", "still", "f"), []byte("deep"), 0o600)
	if err := os.Chown(filepath.Join(dir, "a.txt"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	// Hard links, in two directories.
	writeFile(t, filepath.Join(dir, "links", "one"), []byte("linked"), 0o644)
	if err := os.Link(filepath.Join(dir, "links", "one"), filepath.Join(dir, "two")); err != nil {
		t.Fatal(err)
	}
	// A sparse file: data at both ends, 8 MiB of hole between; and one
	// ending with a hole.
	f, err := os.Create(filepath.Join(dir, "sparse.img"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("start"), 0)
	f.WriteAt([]byte("end"), 8<<20)
	f.Close()
	f, err = os.Create(filepath.Join(dir, "tail-hole"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("data"))
	f.Truncate(5 << 20)
	f.Close()
	symlink(t, "a.txt", filepath.Join(dir, "rel"))
	symlink(t, filepath.Join(outside, "secret"), filepath.Join(dir, "abs"))
	symlink(t, "../../../../../etc", filepath.Join(dir, "deep", "up"))
	symlink(t, "nowhere", filepath.Join(dir, "dangling"))
	if err := os.Mkdir(filepath.Join(dir, "shared"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "shared"), 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	setTimes(t, dir)
}

// setTimes gives every file but symlinks a distinct time with
// nanoseconds, directories after their entries.
func setTimes(t *testing.T, dir string) {
	t.Helper()
	var dirs []string
	i := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		i++
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
		case d.Type() != fs.ModeSymlink:
			tm := testTime.Add(time.Duration(i) * time.Hour)
			os.Chtimes(p, tm, tm)
		}
		return nil
	})
	for j := len(dirs) - 1; j >= 0; j-- {
		tm := testTime.Add(-time.Duration(j) * time.Hour)
		os.Chtimes(dirs[j], tm, tm)
	}
}

func TestRestoreTree(t *testing.T) {
	base, outside, target := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(outside, "secret"), []byte("outside"), 0o644)
	src := filepath.Join(base, "src")
	makeTree(t, src, outside)

	var last Progress
	sum, err := Restore(context.Background(), os.DirFS(base), []string{"src"}, target,
		Options{Owner: true, Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatalf("Restore: %v (%+v)", err, sum)
	}
	compareHost(t, src, filepath.Join(target, "src"))
	if sum.Files != 9 || sum.HardLinks != 1 || sum.Symlinks != 4 || sum.Dirs != 9 || sum.Failed != 0 {
		t.Errorf("summary %+v, want 9 files, 1 hard link, 4 symlinks, 9 directories", sum)
	}
	if last.Files != last.TotalFiles || last.Bytes != last.TotalBytes || last.TotalFiles != 23 {
		t.Errorf("last progress %+v, want all of 23 entries done", last)
	}
	for _, name := range []string{"sparse.img", "tail-hole"} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(target, "src", name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Blocks*512 > 1<<20 {
			t.Errorf("%s: %d bytes allocated of %d: not sparse", name, st.Blocks*512, st.Size)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "outside" {
		t.Errorf("the file outside holds %q", b)
	}
	if left := tempFiles(t, target); left != nil {
		t.Errorf("temporary files left: %v", left)
	}

	// Once more: Never keeps everything.
	sum, err = Restore(context.Background(), os.DirFS(base), []string{"src"}, target, Options{Owner: true})
	if err != nil || sum.Skipped != 14 || sum.Files != 0 || sum.Dirs != 0 {
		t.Errorf("second restore: %+v, %v; want 14 skipped, nothing written", sum, err)
	}
	compareHost(t, src, filepath.Join(target, "src"))
}

func TestRestoreWithoutOwner(t *testing.T) {
	base, target := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(base, "tool"), []byte("x"), 0o755|fs.ModeSetuid|fs.ModeSetgid)
	os.Chown(filepath.Join(base, "tool"), 1234, 5678)
	if _, err := Restore(context.Background(), os.DirFS(base), []string{"tool"}, target, Options{}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(filepath.Join(target, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); info.Mode() != 0o755 || st.Uid != uint32(os.Getuid()) {
		t.Errorf("restored %v owned by %d, want 0755 without setuid, owned by the restorer", info.Mode(), st.Uid)
	}
}

func TestRestoreNames(t *testing.T) {
	base, target := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(base, "etc", "hosts"), []byte("127.0.0.1 localhost\n"), 0o644)
	writeFile(t, filepath.Join(base, "home", "u", "notes"), []byte("notes"), 0o600)
	symlink(t, "/usr/share/zoneinfo/UTC", filepath.Join(base, "etc", "localtime"))
	sum, err := Restore(context.Background(), os.DirFS(base), []string{"/etc/hosts", "home/u/", "etc/localtime", "etc/../home/u"}, target, Options{})
	if err == nil || sum.Failed != 1 {
		t.Errorf("restoring two paths named u: %+v, %v; want one failure", sum, err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "hosts")); string(b) != "127.0.0.1 localhost\n" {
		t.Errorf("hosts holds %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "u", "notes")); string(b) != "notes" {
		t.Errorf("u/notes holds %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(target, "localtime")); l != "/usr/share/zoneinfo/UTC" {
		t.Errorf("localtime links to %q", l)
	}
	// "." restores the root's entries into the target.
	target2 := t.TempDir()
	if _, err := Restore(context.Background(), os.DirFS(base), []string{"."}, target2, Options{}); err != nil {
		t.Fatal(err)
	}
	compareHost(t, base, target2)
}

func TestRestoreOverwrite(t *testing.T) {
	old, recent := testTime, testTime.Add(24*time.Hour)
	for _, tc := range []struct {
		policy   string
		existing time.Time // mtime of the file already there
		replaced bool
	}{
		{"never", old, false},
		{"never", recent, false},
		{"if-newer", old, true},
		{"if-newer", recent, false},
		{"always", old, true},
		{"always", recent.Add(time.Hour), true},
	} {
		base, target := t.TempDir(), t.TempDir()
		writeFile(t, filepath.Join(base, "f"), []byte("restored"), 0o644)
		os.Chtimes(filepath.Join(base, "f"), recent, recent)
		writeFile(t, filepath.Join(target, "f"), []byte("existing"), 0o644)
		os.Chtimes(filepath.Join(target, "f"), tc.existing, tc.existing)
		policy, err := ParseOverwrite(tc.policy)
		if err != nil || policy.String() != tc.policy {
			t.Fatalf("ParseOverwrite(%s) = %v, %v", tc.policy, policy, err)
		}
		sum, err := Restore(context.Background(), os.DirFS(base), []string{"f"}, target, Options{Overwrite: policy})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(target, "f"))
		if got := string(b) == "restored"; got != tc.replaced || (sum.Skipped == 1) == tc.replaced {
			t.Errorf("%s over a file of %v: holds %q, %+v", tc.policy, tc.existing, b, sum)
		}
	}
	if _, err := ParseOverwrite("sometimes"); err == nil {
		t.Error("ParseOverwrite accepted sometimes")
	}
}

func TestRestoreTypeConflicts(t *testing.T) {
	base := t.TempDir()
	writeFile(t, filepath.Join(base, "src", "d", "inner"), []byte("inner"), 0o644)
	writeFile(t, filepath.Join(base, "src", "f"), []byte("file"), 0o644)
	for _, policy := range []Overwrite{Never, IfNewer, Always} {
		target := t.TempDir()
		writeFile(t, filepath.Join(target, "src", "d"), []byte("a file where a directory goes"), 0o644)
		writeFile(t, filepath.Join(target, "src", "f", "x"), []byte("a directory where a file goes"), 0o644)
		sum, err := Restore(context.Background(), os.DirFS(base), []string{"src"}, target, Options{Overwrite: policy})
		if policy != Always {
			if err == nil || sum.Failed != 2 || !errors.Is(sum.Errors[0], fs.ErrExist) {
				t.Errorf("%v: %+v, %v; want two failures", policy, sum, err)
			}
			if b, _ := os.ReadFile(filepath.Join(target, "src", "d")); string(b) != "a file where a directory goes" {
				t.Errorf("%v: the file in the way holds %q", policy, b)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", policy, err)
		}
		compareHost(t, filepath.Join(base, "src"), filepath.Join(target, "src"))
	}
}

// TestRestoreSymlinksNeverFollowed restores files and directories where
// symlinks to outside the target are: from the image itself (an earlier
// path of the same restore) or already in the target. Nothing may be
// written through them.
func TestRestoreSymlinksNeverFollowed(t *testing.T) {
	base, outside := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(outside, "passwd"), []byte("root:x:0:0\n"), 0o644)
	symlink(t, filepath.Join(outside, "passwd"), filepath.Join(base, "one", "passwd"))
	symlink(t, outside, filepath.Join(base, "one", "etc"))
	symlink(t, "../../../../../../../..", filepath.Join(base, "one", "up"))
	writeFile(t, filepath.Join(base, "two", "passwd"), []byte("pwned\n"), 0o644)
	writeFile(t, filepath.Join(base, "two", "etc", "passwd"), []byte("pwned\n"), 0o644)
	writeFile(t, filepath.Join(base, "two", "up", "tmp", "pwned"), []byte("pwned\n"), 0o644)
	fsys := os.DirFS(base)
	want := scanHost(t, outside)
	check := func(when string) {
		t.Helper()
		got := scanHost(t, outside)
		if len(got) != len(want) || got["passwd"].sum != want["passwd"].sum {
			t.Fatalf("%s: the directory outside the target changed: %v", when, got)
		}
		if _, err := os.Lstat("/tmp/pwned"); err == nil {
			t.Fatalf("%s: /tmp/pwned written", when)
		}
	}
	for _, policy := range []Overwrite{Never, IfNewer, Always} {
		target := t.TempDir()
		if _, err := Restore(context.Background(), fsys, []string{"one/passwd", "one/etc", "one/up"}, target, Options{Overwrite: policy}); err != nil {
			t.Fatal(err)
		}
		sum, err := Restore(context.Background(), fsys, []string{"two/passwd", "two/etc", "two/up"}, target, Options{Overwrite: policy})
		check(policy.String())
		if policy == Always {
			if err != nil {
				t.Fatalf("always: %v", err)
			}
			compareHost(t, filepath.Join(base, "two"), target)
		} else if sum.Files != 0 {
			t.Errorf("%v: %+v, %v; want nothing written", policy, sum, err)
		}
	}

	// The same with /etc/passwd itself, now that the test above showed
	// that nothing is written through a symlink.
	before := hashFile(t, "/etc/passwd")
	base2, target := t.TempDir(), t.TempDir()
	symlink(t, "/etc/passwd", filepath.Join(base2, "one", "passwd"))
	symlink(t, "/etc", filepath.Join(base2, "one", "etc"))
	writeFile(t, filepath.Join(base2, "two", "passwd"), []byte("pwned\n"), 0o644)
	writeFile(t, filepath.Join(base2, "two", "etc", "passwd"), []byte("pwned\n"), 0o644)
	fsys = os.DirFS(base2)
	for _, policy := range []Overwrite{Never, Always} {
		Restore(context.Background(), fsys, []string{"one/passwd", "one/etc"}, target, Options{Overwrite: Always})
		Restore(context.Background(), fsys, []string{"two/passwd", "two/etc"}, target, Options{Overwrite: policy})
		if hashFile(t, "/etc/passwd") != before {
			t.Fatalf("%v: /etc/passwd changed", policy)
		}
	}
}

func TestRestoreCancel(t *testing.T) {
	base, target := t.TempDir(), t.TempDir()
	data := randomData(5<<20, 2)
	writeFile(t, filepath.Join(base, "d", "big"), data, 0o644)
	writeFile(t, filepath.Join(target, "d", "big"), []byte("old"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fsys := &cancelFS{FS: os.DirFS(base), after: 1 << 20, cancel: cancel}
	_, err := Restore(ctx, fsys, []string{"d"}, target, Options{Overwrite: Always})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Restore: %v, want context.Canceled", err)
	}
	if fsys.read.Load() >= int64(len(data)) {
		t.Error("the whole file was read after the cancel")
	}
	if b, _ := os.ReadFile(filepath.Join(target, "d", "big")); string(b) != "old" {
		t.Errorf("after the cancel, the final name holds %d bytes, want the old file", len(b))
	}
	if left := tempFiles(t, target); left != nil {
		t.Errorf("temporary files left: %v", left)
	}
	if _, err := Restore(context.Background(), os.DirFS(base), []string{"d"}, target, Options{Overwrite: Always}); err != nil {
		t.Fatal(err)
	}
	if hashFile(t, filepath.Join(target, "d", "big")) != sha(data) {
		t.Error("the second restore's file differs")
	}
}

func TestRestoreLimits(t *testing.T) {
	base := t.TempDir()
	for i := range 10 {
		writeFile(t, filepath.Join(base, "d", string(rune('a'+i))), []byte("0123456789"), 0o644)
	}
	for _, l := range []Limits{{MaxFiles: 5}, {MaxBytes: 55}} {
		target := t.TempDir()
		sum, err := Restore(context.Background(), os.DirFS(base), []string{"d"}, target, Options{Limits: l})
		if !errors.Is(err, ErrLimit) {
			t.Errorf("%+v: %v, want ErrLimit", l, err)
		}
		if entries, _ := os.ReadDir(target); len(entries) != 0 || sum.Files != 0 {
			t.Errorf("%+v: %d entries written before the limit stopped the restore", l, len(entries))
		}
	}
	if _, err := Restore(context.Background(), os.DirFS(base), []string{"d"}, t.TempDir(), Options{Limits: Limits{MaxFiles: 11, MaxBytes: 100}}); err != nil {
		t.Errorf("a restore within its limits: %v", err)
	}
}
