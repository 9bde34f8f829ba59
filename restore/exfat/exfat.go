// Package exfat reads exFAT volumes.
//
// exFAT keeps FAT's cluster chains but describes each file with a set of
// directory entries: a file entry (attributes, times), a stream extension
// (first cluster, lengths, whether the clusters are contiguous and so
// absent from the FAT) and name entries, all under one checksum. Open reads
// the boot region; directories and FAT sectors are read when a caller
// needs them and kept in small caches, because every read of the volume
// costs.
package exfat

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

// Reader reads one exFAT volume. It is safe for concurrent use.
type Reader struct {
	vol   volume
	label string
	root  *node
	fat   *fatchain.Table
	// chains reads the device: its clusters, through their chains.
	chains fatchain.Volume
	dirs   *fstree.Cache[uint32, []dirent] // listings by first cluster
	// verify checks the boot region's and the entry sets' checksums.
	// Only the fuzz test turns it off, to get past them.
	verify bool
}

var _ fstree.Reader = (*Reader)(nil)

// Open reads the boot region of the exFAT volume of size bytes that r
// holds.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	return open(r, size, true)
}

func open(r io.ReaderAt, size int64, verify bool) (*Reader, error) {
	vol, err := readBoot(r, size, verify)
	if err != nil {
		return nil, err
	}
	er := &Reader{
		vol:    vol,
		fat:    fatchain.NewTable(r, vol.fatOffset, vol.fatSize),
		dirs:   fstree.NewCache[uint32, []dirent](dirCacheEntries, 0),
		verify: verify,
	}
	er.chains = fatchain.Volume{Dev: r, ClusterSize: vol.clusterSize, Heap: vol.heapOffset, Clusters: vol.clusters, Link: er.link}
	er.root = &node{attr: attrDir, first: vol.rootCluster, root: true}
	// The label is an entry of the root directory. A root that cannot be
	// read leaves no label, and Root and ReadDir report why.
	if list, err := er.list(er.root); err == nil {
		for _, d := range list {
			if d.label {
				er.label = d.name
			}
		}
	}
	return er, nil
}

// Type is "exfat".
func (r *Reader) Type() string { return "exfat" }

// Label is the volume label.
func (r *Reader) Label() string { return r.label }

// Root returns the root directory.
func (r *Reader) Root() (fstree.Node, error) { return r.root, nil }

// ReadDir lists a directory. Each entry's Load returns the node at once:
// the entry set is all there is of an exFAT file.
func (r *Reader) ReadDir(dir fstree.Node) ([]fstree.Entry, error) {
	d, ok := dir.(*node)
	if !ok || !d.isDir() {
		return nil, errors.New("exfat: not a directory of this volume")
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
		child := &node{attr: e.attr, flags: e.flags, first: e.first, valid: e.valid, size: e.size,
			mtime: e.mtime, atime: e.atime, btime: e.btime, parent: d}
		var typ fs.FileMode
		if child.isDir() && e.err == nil {
			typ = fs.ModeDir
		}
		entries = append(entries, fstree.Entry{
			Name: e.name,
			Type: typ,
			Load: func() (fstree.Node, error) {
				if e.err != nil {
					return nil, e.err
				}
				return r.load(child, e.name)
			},
		})
	}
	return entries, nil
}

// load checks what the stream extension says against the volume, and
// that a directory is not one of its own ancestors, or a walk of the tree
// would never end.
func (r *Reader) load(n *node, name string) (fstree.Node, error) {
	v := &r.vol
	switch {
	case n.valid > n.size:
		return nil, fmt.Errorf("%q: valid data length %d beyond its length %d: %w", name, n.valid, n.size, fstree.ErrCorrupt)
	case n.size > uint64(v.clusters)*uint64(v.clusterSize):
		return nil, fmt.Errorf("%q: %d bytes beyond the volume's clusters: %w", name, n.size, fstree.ErrCorrupt)
	case n.size > 0 && !v.valid(n.first):
		return nil, fmt.Errorf("%q: %d bytes at cluster %d of %d: %w", name, n.size, n.first, v.clusters, fstree.ErrCorrupt)
	}
	if !n.isDir() {
		return n, nil
	}
	if n.size == 0 || n.size > maxDirSize {
		return nil, fmt.Errorf("directory %q of %d bytes: %w", name, n.size, fstree.ErrCorrupt)
	}
	for p := n.parent; p != nil; p = p.parent {
		if p.first == n.first {
			return nil, fmt.Errorf("directory %q at cluster %d contains itself: %w", name, n.first, fstree.ErrCorrupt)
		}
	}
	return n, nil
}

// list returns a directory's entries, from the cache or the volume.
func (r *Reader) list(d *node) ([]dirent, error) {
	if list, ok := r.dirs.Get(d.first); ok {
		return list, nil
	}
	ext, err := r.data(d)
	if err != nil {
		return nil, err
	}
	list, err := parseDir(&dirIter{r: r, ext: ext}, d.root)
	if err != nil {
		return nil, err
	}
	r.dirs.Add(d.first, list, int64(len(list)+1))
	return list, nil
}

// data returns the extent of a node's clusters.
func (r *Reader) data(n *node) (*fatchain.Map, error) {
	cs := uint64(r.vol.clusterSize)
	what := fmt.Sprintf("file at cluster %d", n.first)
	if n.isDir() {
		what = fmt.Sprintf("directory at cluster %d", n.first)
	}
	if n.root {
		return r.extent(n.first, uint32(maxDirSize/cs), false, true, what)
	}
	// load bounded size by the volume's clusters: the count fits.
	return r.extent(n.first, uint32((n.size+cs-1)/cs), n.flags&flagNoFatChain != 0, false, what)
}

// Contents returns a regular file's data.
func (r *Reader) Contents(f fstree.Node) (io.ReaderAt, error) {
	n, ok := f.(*node)
	if !ok || n.isDir() {
		return nil, errors.New("exfat: not a file of this volume")
	}
	if n.size == 0 {
		return emptyFile{}, nil
	}
	ext, err := r.data(n)
	if err != nil {
		return nil, err
	}
	return ext.File(int64(n.size), int64(n.valid)), nil
}

// ReadLink fails: exFAT has no symlinks.
func (r *Reader) ReadLink(fstree.Node) (string, error) {
	return "", errors.New("exfat: no symlinks on exFAT")
}

type emptyFile struct{}

func (emptyFile) ReadAt([]byte, int64) (int, error) { return 0, io.EOF }
