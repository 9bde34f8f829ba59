package files

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// memNode is a file of memReader: a tree built in the test, which may
// hold what no host filesystem can (loops, Windows-hostile names, absurd
// sizes, chosen inode numbers).
type memNode struct {
	meta     fstree.Meta
	data     string
	zeros    bool // Contents reads as zeros, whatever the size
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
	if n.(*memNode).zeros {
		return zeroReader{}, nil
	}
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

type zeroReader struct{}

func (zeroReader) ReadAt(p []byte, _ int64) (int, error) {
	clear(p)
	return len(p), nil
}

var memIno atomic.Uint64

func dirNode(children ...memChild) *memNode {
	return &memNode{meta: fstree.Meta{Mode: fs.ModeDir | 0o755, Inode: memIno.Add(1) + 1000, Nlink: 2}, children: children}
}
func fileNode(data string) *memNode {
	return &memNode{meta: fstree.Meta{Mode: 0o644, Size: int64(len(data)), Inode: memIno.Add(1) + 1000, Nlink: 1}, data: data}
}
func linkNode(target string) *memNode {
	return &memNode{meta: fstree.Meta{Mode: fs.ModeSymlink | 0o777, Size: int64(len(target)), Inode: memIno.Add(1) + 1000, Nlink: 1}, target: target}
}

func memFS(children ...memChild) *fstree.FS {
	return fstree.New(memReader{root: dirNode(children...)})
}

func writeFile(t *testing.T, name string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}
