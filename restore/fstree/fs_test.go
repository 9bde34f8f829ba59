package fstree_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

func TestFS(t *testing.T) {
	loop := fstreetest.MemDir()
	loop.Children = []fstreetest.MemChild{fstreetest.Named("self", fstreetest.MemLink("../loop/self"))}
	root := fstreetest.MemDir(
		fstreetest.Named("etc", fstreetest.MemDir(fstreetest.Named("hosts", fstreetest.MemFile("127.0.0.1 localhost\n")))),
		fstreetest.Named("abs", fstreetest.MemLink("/etc/hosts")),
		fstreetest.Named("rel", fstreetest.MemLink("etc/../etc/hosts")),
		fstreetest.Named("up", fstreetest.MemLink("../../../etc")),
		fstreetest.Named("loop", loop),
		fstreetest.Named("empty", fstreetest.MemFile("")),
	)
	fsys := fstreetest.MemFS(root)

	for _, name := range []string{"abs", "rel", "up/hosts"} {
		b, err := fs.ReadFile(fsys, name)
		if err != nil || string(b) != "127.0.0.1 localhost\n" {
			t.Errorf("ReadFile(%s) = %q, %v", name, b, err)
		}
	}
	if target, err := fsys.ReadLink("abs"); err != nil || target != "/etc/hosts" {
		t.Errorf("ReadLink(abs) = %q, %v", target, err)
	}
	if info, err := fsys.Lstat("abs"); err != nil || info.Mode().Type() != fs.ModeSymlink {
		t.Errorf("Lstat(abs) = %v, %v", info, err)
	}
	if _, err := fsys.Stat("loop/self"); err == nil || !strings.Contains(err.Error(), "symlinks") {
		t.Errorf("Stat of a symlink loop: %v, want an error naming symlinks", err)
	}
	if _, err := fsys.Open("etc/hosts/x"); err == nil {
		t.Error("a path through a file opened")
	}
	if _, err := fsys.Open("nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(nope): %v, want ErrNotExist", err)
	}
	if _, err := fsys.Open("../etc"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Open(../etc): %v, want ErrInvalid", err)
	}
	// fstest.TestFS walks with ReadDir and Open; it follows no symlinks
	// while walking, but opens them, so leave the loop out of it.
	sub := fstreetest.MemFS(fstreetest.MemDir(root.Children[0], root.Children[1], root.Children[5]))
	if err := fstest.TestFS(sub, "etc/hosts", "abs", "empty"); err != nil {
		t.Error(err)
	}
}

func TestReadDirRefusesBadNames(t *testing.T) {
	root := fstreetest.MemDir(
		fstreetest.Named("ok", fstreetest.MemFile("x")),
		fstreetest.Named("..", fstreetest.MemFile("x")),
		fstreetest.Named("a/b", fstreetest.MemFile("x")),
		fstreetest.Named("dup", fstreetest.MemFile("1")),
		fstreetest.Named("dup", fstreetest.MemFile("2")),
	)
	entries, err := fstreetest.MemFS(root).ReadDir(".")
	if !errors.Is(err, fstree.ErrCorrupt) {
		t.Fatalf("ReadDir error %v, want ErrCorrupt", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "dup,ok" {
		t.Errorf("entries %v, want dup and ok", names)
	}
	for _, want := range []string{`".."`, `"a/b"`, `"dup" appears twice`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
