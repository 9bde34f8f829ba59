package files

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"strings"
)

// MaxDepth is how deep below a path a walk goes: a filesystem without
// inode numbers cannot show a directory loop any other way.
const MaxDepth = 512

// ErrLoop marks a directory met again below itself, which a walk does not
// descend.
var ErrLoop = errors.New("directory loop")

// entry is one file met by a walk.
type entry struct {
	src  string // path in the source fs.FS
	name string // slash-separated path in the output; "" for its root
	info fs.FileInfo
	meta fileMeta
}

// walker walks the trees under some paths of an fs.FS, without following
// symlinks, with the bounds and the name rules that Restore, WriteTar,
// WriteZip and Search share. Trouble with one path goes to report and the
// walk goes on; an error from visit or leave, a cancelled context or a
// passed limit ends it.
type walker struct {
	ctx    context.Context
	fsys   fs.FS
	goos   string // whose names are refused; see CheckName
	limits Limits
	// copyLinks counts the bytes of a hard-linked file at each of its
	// names, for outputs that copy it each time (zip).
	copyLinks bool
	report    func(src string, err error)
	// visit is called on each entry; for a directory, descend says
	// whether to walk its entries, then leave is called.
	visit func(e *entry) (descend bool, err error)
	leave func(e *entry) error // may be nil

	files, bytes int64
	ancestors    map[fileID]bool
	links        map[fileID]bool
}

// walkPaths walks each path, named in the output by its last element, or,
// for ".", with its entries at the output's top.
func (w *walker) walkPaths(paths []string) error {
	w.ancestors, w.links = map[fileID]bool{}, map[fileID]bool{}
	top := map[string]string{} // output name (folded) -> source path
	for _, p := range paths {
		src, err := cleanPath(p)
		if err != nil {
			w.report(p, err)
			continue
		}
		info, err := fs.Lstat(w.fsys, src)
		if err != nil {
			w.report(src, err)
			continue
		}
		name := ""
		if src != "." {
			name = path.Base(src)
			if err := CheckName(w.goos, name); err != nil {
				w.report(src, err)
				continue
			}
		} else if !info.IsDir() {
			w.report(src, errors.New("the root is not a directory"))
			continue
		}
		key := foldName(w.goos, name)
		if other, dup := top[key]; dup {
			w.report(src, fmt.Errorf("has the same name as %s, also asked for", other))
			continue
		}
		top[key] = src
		if err := w.walk(src, name, info, 0); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) walk(src, name string, info fs.FileInfo, depth int) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	e := &entry{src: src, name: name, info: info, meta: metaOf(info)}
	mode := info.Mode()
	if mode.IsRegular() && info.Size() < 0 {
		w.report(src, fmt.Errorf("size %d", info.Size()))
		return nil
	}
	if mode.IsDir() {
		if depth > MaxDepth {
			w.report(src, fmt.Errorf("more than %d directories deep", MaxDepth))
			return nil
		}
		if e.meta.hasID && w.ancestors[e.meta.id] {
			w.report(src, fmt.Errorf("%w: the directory is one of its own ancestors (inode %d)", ErrLoop, e.meta.id.ino))
			return nil
		}
	}
	if err := w.count(e); err != nil {
		return err
	}
	descend, err := w.visit(e)
	if err != nil || !descend || !mode.IsDir() {
		return err
	}
	if e.meta.hasID {
		w.ancestors[e.meta.id] = true
		defer delete(w.ancestors, e.meta.id)
	}
	entries, err := fs.ReadDir(w.fsys, src)
	if err != nil {
		// The entries that could be read, if any, are still restored.
		w.report(src, err)
	}
	var names map[string]string // folded name -> name, where folding matters
	if w.goos == "windows" {
		names = map[string]string{}
	}
	for _, d := range entries {
		child := path.Join(src, d.Name())
		if err := CheckName(w.goos, d.Name()); err != nil {
			w.report(child, err)
			continue
		}
		if names != nil {
			key := foldName(w.goos, d.Name())
			if other, dup := names[key]; dup {
				w.report(child, fmt.Errorf("%q and %q are one name on %s: %w", other, d.Name(), w.goos, ErrInvalidName))
				continue
			}
			names[key] = d.Name()
		}
		ci, err := d.Info()
		if err != nil {
			w.report(child, err)
			continue
		}
		if err := w.walk(child, path.Join(name, d.Name()), ci, depth+1); err != nil {
			return err
		}
	}
	if w.leave != nil {
		return w.leave(e)
	}
	return nil
}

// count counts an entry against the limits.
func (w *walker) count(e *entry) error {
	w.files++
	if max := w.limits.MaxFiles; max > 0 && w.files > max {
		return fmt.Errorf("%w: more than %d files", ErrLimit, max)
	}
	if !e.info.Mode().IsRegular() {
		return nil
	}
	if e.meta.linked() && !w.copyLinks {
		if w.links[e.meta.id] {
			return nil
		}
		w.links[e.meta.id] = true
	}
	if w.bytes > math.MaxInt64-e.info.Size() {
		w.bytes = math.MaxInt64
	} else {
		w.bytes += e.info.Size()
	}
	if max := w.limits.MaxBytes; max > 0 && w.bytes > max {
		return fmt.Errorf("%w: more than %d bytes, at %s of %d bytes", ErrLimit, max, e.src, e.info.Size())
	}
	return nil
}

// cleanPath turns a path as a user gives it ("/etc/hosts", "home/u/")
// into an fs.FS path. ".." stops at the root.
func cleanPath(p string) (string, error) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		p = "."
	}
	if !fs.ValidPath(p) {
		return "", &fs.PathError{Op: "restore", Path: p, Err: fs.ErrInvalid}
	}
	return p, nil
}
