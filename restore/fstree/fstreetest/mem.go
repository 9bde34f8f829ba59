package fstreetest

import (
	"io"
	"io/fs"
	"strings"
	"sync/atomic"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// MemNode is a file of a tree built in memory by a test, which may hold
// what no host filesystem can: loops, Windows-hostile names, absurd
// sizes, chosen inode numbers.
type MemNode struct {
	Info     fstree.Meta
	Data     string
	Zeros    bool // Contents reads as zeros, whatever the size
	Target   string
	Children []MemChild
}

// MemChild is a named entry of a MemNode directory.
type MemChild struct {
	Name string
	Node *MemNode
}

func (n *MemNode) Meta() fstree.Meta { return n.Info }

var memIno atomic.Uint64

// MemDir returns a directory of children.
func MemDir(children ...MemChild) *MemNode {
	return &MemNode{Info: fstree.Meta{Mode: fs.ModeDir | 0o755, Inode: memIno.Add(1) + 1000, Nlink: 2}, Children: children}
}

// MemFile returns a regular file of data.
func MemFile(data string) *MemNode {
	return &MemNode{Info: fstree.Meta{Mode: 0o644, Size: int64(len(data)), Inode: memIno.Add(1) + 1000, Nlink: 1}, Data: data}
}

// MemLink returns a symlink to target.
func MemLink(target string) *MemNode {
	return &MemNode{Info: fstree.Meta{Mode: fs.ModeSymlink | 0o777, Size: int64(len(target)), Inode: memIno.Add(1) + 1000, Nlink: 1}, Target: target}
}

// MemFS returns the tree under root as an FS.
func MemFS(root *MemNode) *fstree.FS { return fstree.New(memReader{root}) }

type memReader struct{ root *MemNode }

func (memReader) Type() string                           { return "mem" }
func (memReader) Label() string                          { return "" }
func (r memReader) Root() (fstree.Node, error)           { return r.root, nil }
func (memReader) ReadLink(n fstree.Node) (string, error) { return n.(*MemNode).Target, nil }

func (memReader) Contents(n fstree.Node) (io.ReaderAt, error) {
	if n.(*MemNode).Zeros {
		return zeros{}, nil
	}
	return strings.NewReader(n.(*MemNode).Data), nil
}

func (memReader) ReadDir(n fstree.Node) ([]fstree.Entry, error) {
	var out []fstree.Entry
	for _, c := range n.(*MemNode).Children {
		out = append(out, fstree.Entry{Name: c.Name, Type: c.Node.Info.Mode.Type(),
			Load: func() (fstree.Node, error) { return c.Node, nil }})
	}
	return out, nil
}

type zeros struct{}

func (zeros) ReadAt(p []byte, _ int64) (int, error) {
	clear(p)
	return len(p), nil
}

// Named returns the entry name of a directory for node.
func Named(name string, node *MemNode) MemChild { return MemChild{Name: name, Node: node} }
