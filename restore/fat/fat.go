// Package fat reads FAT12, FAT16 and FAT32 volumes.
//
// The FAT has no inodes: a file is its directory entry (name, attributes,
// times, first cluster, size), and its data is the chain of clusters the
// file allocation table links from that first cluster. Open reads the boot
// sector; directories and FAT sectors are read when a caller needs them and
// kept in small caches, because every read of the volume costs.
package fat

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/internal/fatchain"
)

// dirCacheEntries bounds the directory entries a Reader keeps, so that a
// few huge directories cannot hold much memory.
const dirCacheEntries = 1 << 16

// Reader reads one FAT volume. It is safe for concurrent use.
type Reader struct {
	vol   volume
	label string
	root  *node
	fat   *fatchain.Table
	// chains reads the device: its clusters, through their chains.
	chains fatchain.Volume
	dirs   *fstree.Cache[uint32, []dirent] // listings by first cluster (0: FAT12/16 root)
}

var _ fstree.Reader = (*Reader)(nil)

// Open reads the boot sector of the FAT volume of size bytes that r holds.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	vol, err := readBoot(r, size)
	if err != nil {
		return nil, err
	}
	fr := &Reader{
		vol:  vol,
		fat:  fatchain.NewTable(r, vol.fatOffset, vol.fatSize),
		dirs: fstree.NewCache[uint32, []dirent](dirCacheEntries, 0),
	}
	fr.chains = fatchain.Volume{Dev: r, ClusterSize: vol.clusterSize, Heap: vol.dataOffset, Clusters: vol.clusters, Link: fr.link}
	fr.root = &node{attr: attrDir, cluster: vol.rootCluster, root: true}
	fr.label = vol.label
	// Windows and mlabel keep the label in the root directory; the copy in
	// the boot sector may be stale. A root that cannot be read leaves the
	// boot sector's label, and Root and ReadDir report why.
	if list, err := fr.list(fr.root); err == nil {
		for _, d := range list {
			if d.label {
				fr.label = d.name
			}
		}
	}
	return fr, nil
}

// Type is "fat12", "fat16" or "fat32".
func (r *Reader) Type() string { return fmt.Sprintf("fat%d", r.vol.bits) }

// Label is the volume label, from the root directory or else the boot
// sector.
func (r *Reader) Label() string { return r.label }

// Root returns the root directory.
func (r *Reader) Root() (fstree.Node, error) { return r.root, nil }

// ReadDir lists a directory. Each entry's Load returns the node at once:
// the directory entry is all there is of a FAT file.
func (r *Reader) ReadDir(dir fstree.Node) ([]fstree.Entry, error) {
	d, ok := dir.(*node)
	if !ok || !d.isDir() {
		return nil, errors.New("fat: not a directory of this volume")
	}
	list, err := r.list(d)
	if err != nil {
		return nil, err
	}
	entries := make([]fstree.Entry, 0, len(list))
	for _, e := range list {
		if e.label {
			continue
		}
		child := &node{attr: e.attr, cluster: e.cluster, size: e.size,
			mtime: e.mtime, atime: e.atime, btime: e.btime, parent: d}
		var typ fs.FileMode
		if child.isDir() {
			typ = fs.ModeDir
		}
		entries = append(entries, fstree.Entry{
			Name: e.name,
			Type: typ,
			Load: func() (fstree.Node, error) { return r.load(child, e.name) },
		})
	}
	return entries, nil
}

// load checks what can be checked of a node without reading it: a
// directory must have clusters and must not be one of its own ancestors,
// or a walk of the tree would never end.
func (r *Reader) load(n *node, name string) (fstree.Node, error) {
	if !n.isDir() {
		return n, nil
	}
	if n.cluster == 0 {
		return nil, fmt.Errorf("directory %q without a cluster: %w", name, fstree.ErrCorrupt)
	}
	for p := n.parent; p != nil; p = p.parent {
		if p.cluster == n.cluster {
			return nil, fmt.Errorf("directory %q at cluster %d contains itself: %w", name, n.cluster, fstree.ErrCorrupt)
		}
	}
	return n, nil
}

// Contents returns a regular file's data.
func (r *Reader) Contents(file fstree.Node) (io.ReaderAt, error) {
	n, ok := file.(*node)
	if !ok || n.isDir() {
		return nil, errors.New("fat: not a file of this volume")
	}
	if n.size == 0 {
		return emptyFile{}, nil
	}
	if n.cluster == 0 {
		return nil, fmt.Errorf("file of %d bytes without a cluster: %w", n.size, fstree.ErrCorrupt)
	}
	cs := r.vol.clusterSize
	want := uint32((int64(n.size) + cs - 1) / cs)
	what := fmt.Sprintf("file at cluster %d", n.cluster)
	return r.chains.Chained(n.cluster, want, false, what).File(int64(n.size), int64(n.size)), nil
}

// ReadLink fails: FAT has no symlinks.
func (r *Reader) ReadLink(fstree.Node) (string, error) {
	return "", errors.New("fat: no symlinks on FAT")
}

type emptyFile struct{}

func (emptyFile) ReadAt([]byte, int64) (int, error) { return 0, io.EOF }
