package fstree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"
)

// Lookuper is implemented by readers that find one name in a directory
// faster than listing it (an ext4 htree, an XFS B+tree). Found is false when
// the name is absent.
type Lookuper interface {
	Lookup(dir Node, name string) (e Entry, found bool, err error)
}

// FS is a filesystem reader seen as an io/fs.FS. Open and Stat follow
// symlinks, also in the last element; Lstat, ReadLink and ReadDir do not.
// Symlink targets resolve inside the filesystem: an absolute target starts
// at its root and ".." stops there, as in a chroot. It is safe for
// concurrent use when its Reader is.
type FS struct {
	r Reader
}

var (
	_ fs.ReadDirFS   = (*FS)(nil)
	_ fs.StatFS      = (*FS)(nil)
	_ fs.ReadLinkFS  = (*FS)(nil)
	_ fs.ReadDirFile = (*dir)(nil)
	_ io.ReaderAt    = (*file)(nil)
	_ io.Seeker      = (*file)(nil)
)

// New returns the FS of a reader.
func New(r Reader) *FS { return &FS{r: r} }

// Type names the filesystem.
func (f *FS) Type() string { return f.r.Type() }

// Label is the volume label.
func (f *FS) Label() string { return f.r.Label() }

// Reader returns the filesystem's reader, for what io/fs does not cover
// (alternate data streams).
func (f *FS) Reader() Reader { return f.r }

// Open opens the named file. A regular file also implements io.ReaderAt
// and io.Seeker; a directory implements fs.ReadDirFile.
func (f *FS) Open(name string) (fs.File, error) {
	n, base, err := f.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	info := &fileInfo{name: base, meta: n.Meta()}
	switch {
	case info.IsDir():
		return &dir{f: f, path: name, node: n, info: info}, nil
	case info.Mode().IsRegular():
		ra, err := f.r.Contents(n)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &file{ra: ra, info: info}, nil
	default: // devices, fifos, sockets: nothing to read
		return &file{ra: emptyReader{}, info: info}, nil
	}
}

// Stat returns the named file's information, following symlinks.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	n, base, err := f.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return &fileInfo{name: base, meta: n.Meta()}, nil
}

// Lstat returns the named file's information; a symlink is not followed.
func (f *FS) Lstat(name string) (fs.FileInfo, error) {
	n, base, err := f.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return &fileInfo{name: base, meta: n.Meta()}, nil
}

// ReadLink returns the target of the named symlink.
func (f *FS) ReadLink(name string) (string, error) {
	n, _, err := f.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.Meta().Mode.Type() != fs.ModeSymlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	target, err := f.readLink(n)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return target, nil
}

// ReadDir lists the named directory, sorted by name. Entries whose names
// cannot be paths (holding '/', "..", duplicates) are left out, and an
// error naming them is returned with the rest.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, _, err := f.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.Meta().Mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	return f.list(name, n)
}

func (f *FS) list(name string, n Node) ([]fs.DirEntry, error) {
	entries, err := f.r.ReadDir(n)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, 0, len(entries))
	var bad []error
	for _, e := range entries {
		if err := CheckName(e.Name); err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, &dirEntry{e: e})
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	out = slices.CompactFunc(out, func(a, b fs.DirEntry) bool {
		if a.Name() == b.Name() {
			bad = append(bad, fmt.Errorf("directory entry %q appears twice: %w", a.Name(), ErrCorrupt))
			return true
		}
		return false
	})
	if len(bad) > 0 {
		return out, &fs.PathError{Op: "readdir", Path: name, Err: errors.Join(bad...)}
	}
	return out, nil
}

func (f *FS) readLink(n Node) (string, error) {
	target, err := f.r.ReadLink(n)
	if err != nil {
		return "", err
	}
	if target == "" || len(target) > MaxPath || strings.IndexByte(target, 0) >= 0 {
		return "", fmt.Errorf("symlink target of %d bytes: %w", len(target), ErrCorrupt)
	}
	return target, nil
}

// lookup finds one name in a directory node.
func (f *FS) lookup(dir Node, name string) (Entry, bool, error) {
	if l, ok := f.r.(Lookuper); ok {
		return l.Lookup(dir, name)
	}
	entries, err := f.r.ReadDir(dir)
	if err != nil {
		return Entry{}, false, err
	}
	for _, e := range entries {
		if e.Name == name {
			return e, true, nil
		}
	}
	return Entry{}, false, nil
}

// resolve walks name from the root and returns its node and the last
// element of the path it names ("." for the root).
func (f *FS) resolve(op, name string, follow bool) (Node, string, error) {
	if !fs.ValidPath(name) {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	fail := func(err error) (Node, string, error) {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: err}
	}
	root, err := f.r.Root()
	if err != nil {
		return fail(err)
	}
	var todo []string // elements still to walk, next first
	if name != "." {
		todo = strings.Split(name, "/")
	}
	stack := []Node{root} // the directories walked, root first
	base := "."
	hops := 0
	for len(todo) > 0 {
		elem := todo[0]
		todo = todo[1:]
		switch elem {
		case "", ".":
			continue
		case "..": // only from a symlink's target
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		cur := stack[len(stack)-1]
		if !cur.Meta().Mode.IsDir() {
			return fail(errors.New("a path element is not a directory"))
		}
		e, found, err := f.lookup(cur, elem)
		if err != nil {
			return fail(err)
		}
		if !found {
			return fail(fs.ErrNotExist)
		}
		n, err := e.Load()
		if err != nil {
			return fail(err)
		}
		last := len(todo) == 0
		if n.Meta().Mode.Type() == fs.ModeSymlink && (!last || follow) {
			if hops++; hops > MaxSymlinks {
				return fail(fmt.Errorf("more than %d symlinks", MaxSymlinks))
			}
			target, err := f.readLink(n)
			if err != nil {
				return fail(err)
			}
			if strings.HasPrefix(target, "/") {
				stack = stack[:1]
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		stack = append(stack, n)
		base = elem
	}
	return stack[len(stack)-1], base, nil
}

// fileInfo is an fs.FileInfo whose Sys is *Meta.
type fileInfo struct {
	name string
	meta Meta
}

func (i *fileInfo) Name() string       { return i.name }
func (i *fileInfo) Size() int64        { return i.meta.Size }
func (i *fileInfo) Mode() fs.FileMode  { return i.meta.Mode }
func (i *fileInfo) ModTime() time.Time { return i.meta.Mtime }
func (i *fileInfo) IsDir() bool        { return i.meta.Mode.IsDir() }
func (i *fileInfo) Sys() any           { return &i.meta }

// MetaOf returns the metadata behind a FileInfo of an FS.
func MetaOf(info fs.FileInfo) (*Meta, bool) {
	m, ok := info.Sys().(*Meta)
	return m, ok
}

type dirEntry struct {
	e Entry
}

func (d *dirEntry) Name() string { return d.e.Name }
func (d *dirEntry) IsDir() bool  { return d.Type().IsDir() }

func (d *dirEntry) Type() fs.FileMode {
	if d.e.Type != 0 || d.e.Load == nil {
		return d.e.Type.Type()
	}
	// A regular file has no type bits, so Type 0 may mean "regular" or
	// "not recorded": look.
	if n, err := d.e.Load(); err == nil {
		return n.Meta().Mode.Type()
	}
	return 0
}

func (d *dirEntry) Info() (fs.FileInfo, error) {
	n, err := d.e.Load()
	if err != nil {
		return nil, err
	}
	return &fileInfo{name: d.e.Name, meta: n.Meta()}, nil
}

type dir struct {
	f       *FS
	path    string
	node    Node
	info    *fileInfo
	entries []fs.DirEntry
	listed  bool
	offset  int
}

func (d *dir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dir) Close() error               { return nil }

func (d *dir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errors.New("is a directory")}
}

func (d *dir) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.listed {
		entries, err := d.f.list(d.path, d.node)
		if err != nil && entries == nil {
			return nil, err
		}
		d.entries, d.listed = entries, true
	}
	rest := d.entries[d.offset:]
	if n <= 0 {
		d.offset = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.offset += n
	return rest[:n], nil
}

// file is an open regular file. Read and Seek share an offset; ReadAt does
// not touch it and may be called concurrently.
type file struct {
	ra     io.ReaderAt
	info   *fileInfo
	offset int64
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *file) Close() error               { return nil }

func (f *file) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.offset)
	f.offset += int64(n)
	return n, err
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	p, eof := ClipRead(p, off, f.info.Size())
	if len(p) == 0 {
		return 0, eof
	}
	n, err := f.ra.ReadAt(p, off)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err == nil {
		err = eof
	}
	return n, err
}

func (f *file) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.offset
	case io.SeekEnd:
		offset += f.info.Size()
	default:
		return 0, fmt.Errorf("seek: bad whence %d", whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek to negative offset %d", offset)
	}
	f.offset = offset
	return offset, nil
}

type emptyReader struct{}

func (emptyReader) ReadAt([]byte, int64) (int, error) { return 0, io.EOF }
