package fstree_test

import (
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// memNode is a file of memReader: a tree built in the test.
type memNode struct {
	meta     fstree.Meta
	data     string
	target   string
	children []memChild
}

type memChild struct {
	name string
	node *memNode
}

func (n *memNode) Meta() fstree.Meta { return n.meta }

type memReader struct{ root *memNode }

func (memReader) Type() string                           { return "mem" }
func (memReader) Label() string                          { return "" }
func (r memReader) Root() (fstree.Node, error)           { return r.root, nil }
func (memReader) ReadLink(n fstree.Node) (string, error) { return n.(*memNode).target, nil }
func (memReader) Contents(n fstree.Node) (io.ReaderAt, error) {
	return strings.NewReader(n.(*memNode).data), nil
}
func (memReader) ReadDir(n fstree.Node) ([]fstree.Entry, error) {
	var out []fstree.Entry
	for _, c := range n.(*memNode).children {
		out = append(out, fstree.Entry{Name: c.name, Type: c.node.meta.Mode.Type(),
			Load: func() (fstree.Node, error) { return c.node, nil }})
	}
	return out, nil
}

func dirNode(children ...memChild) *memNode {
	return &memNode{meta: fstree.Meta{Mode: fs.ModeDir | 0o755}, children: children}
}
func fileNode(data string) *memNode {
	return &memNode{meta: fstree.Meta{Mode: 0o644, Size: int64(len(data))}, data: data}
}
func linkNode(target string) *memNode {
	return &memNode{meta: fstree.Meta{Mode: fs.ModeSymlink | 0o777, Size: int64(len(target))}, target: target}
}

func TestFS(t *testing.T) {
	loop := dirNode()
	loop.children = []memChild{{"self", linkNode("../loop/self")}}
	root := dirNode(
		memChild{"etc", dirNode(memChild{"hosts", fileNode("127.0.0.1 localhost\n")})},
		memChild{"abs", linkNode("/etc/hosts")},
		memChild{"rel", linkNode("etc/../etc/hosts")},
		memChild{"up", linkNode("../../../etc")},
		memChild{"loop", loop},
		memChild{"empty", fileNode("")},
	)
	fsys := fstree.New(memReader{root: root})

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
	sub := fstree.New(memReader{root: dirNode(root.children[0], root.children[1], root.children[5])})
	if err := fstest.TestFS(sub, "etc/hosts", "abs", "empty"); err != nil {
		t.Error(err)
	}
}

func TestReadDirRefusesBadNames(t *testing.T) {
	root := dirNode(
		memChild{"ok", fileNode("x")},
		memChild{"..", fileNode("x")},
		memChild{"a/b", fileNode("x")},
		memChild{"dup", fileNode("1")},
		memChild{"dup", fileNode("2")},
	)
	entries, err := fstree.New(memReader{root: root}).ReadDir(".")
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
