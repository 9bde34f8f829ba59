// Package files restores files out of a filesystem image onto the local
// disk, searches an image and streams parts of it as tar or zip archives.
//
// It works on any io/fs.FS; one that implements fs.ReadLinkFS (os.DirFS,
// *fstree.FS) has its symlinks kept as symlinks, and one made by fstree
// has its owners, times and inode numbers (for hard links and loops) kept
// from fstree.Meta.
package files

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
)

// tempPrefix starts the name under which a file is written before it is
// complete. An interrupted restore removes its temporary file; only a
// crash leaves one, never under a final name.
const tempPrefix = ".bulwark-tmp-"

// Restore restores each path of fsys (a file, a symlink or a directory
// with everything below it) under target, keeping its last element:
// "etc/hosts" becomes target/hosts, "home/u" target/u; "." puts the root's
// entries in target. Target is made if missing.
//
// Every write stays below target, whatever the names and symlinks of fsys
// or what is already under target: symlinks are restored as symlinks and
// never followed. A file is written under a temporary name beside its
// final one, synced, and renamed only when complete, so an interrupted
// restore leaves no partial file; runs of zeros are left as holes. Hard
// links (one inode, several names) are restored as hard links. Directory
// loops, names the target cannot hold and special files are reported and
// passed over.
//
// A path that fails is listed in the Summary and the others go on; the
// error is then non-nil. A cancelled context or a passed limit stops the
// restore.
func Restore(ctx context.Context, fsys fs.FS, paths []string, target string, o Options) (Summary, error) {
	s := newSession(ctx, o.Log, o.Progress)
	goos := o.GOOS
	if goos == "" {
		goos = runtime.GOOS
	}
	w := walker{ctx: ctx, fsys: fsys, goos: goos, limits: o.Limits}
	if err := s.count(w, paths); err != nil {
		return s.finish(err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return s.finish(err)
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		return s.finish(err)
	}
	defer root.Close()
	r := &restorer{
		s:     s,
		fsys:  fsys,
		root:  root,
		o:     o,
		owner: o.Owner && goos != "windows" && runtime.GOOS != "windows",
		links: map[fileID]string{},
		buf:   make([]byte, chunkSize),
	}
	defer r.closeAll()
	w.report = s.fail
	w.visit = r.visit
	w.leave = r.leave
	return s.finish(w.walkPaths(paths))
}

type restorer struct {
	s     *session
	fsys  fs.FS
	root  *os.Root // the target
	o     Options
	owner bool
	// ownerDenied is set once chown has been refused, which is said once.
	ownerDenied bool
	// links holds the first name written of each hard-linked file.
	links map[fileID]string
	// stack holds the directories being restored, innermost last. Each
	// is a Root of its own, so that what is done in it costs one path
	// element however deep it is.
	stack []frame
	buf   []byte
}

type frame struct {
	dir *os.Root
	// set says to set the directory's metadata when its entries are done.
	set bool
}

// parent is the directory that the entry being visited goes into.
func (r *restorer) parent() *os.Root {
	if len(r.stack) == 0 {
		return r.root
	}
	return r.stack[len(r.stack)-1].dir
}

func (r *restorer) closeAll() {
	for _, f := range r.stack {
		if f.dir != r.root {
			f.dir.Close()
		}
	}
	r.stack = nil
}

func (r *restorer) visit(e *entry) (bool, error) {
	r.s.start(e.src)
	dir, base := r.parent(), path.Base(e.name)
	var err error
	switch mode := e.info.Mode(); {
	case mode.IsDir():
		descend, err := r.dir(e, dir, base)
		if !descend {
			r.s.done(e.src)
		}
		return descend, r.s.settle(e.src, err)
	case mode.Type() == fs.ModeSymlink:
		err = r.symlink(e, dir, base)
	case mode.IsRegular():
		err = r.file(e, dir, base)
	default:
		r.s.sum.Skipped++
		r.s.log.Info("special file not restored", "path", e.src, "type", mode.Type())
	}
	r.s.done(e.src)
	return false, r.s.settle(e.src, err)
}

// dir makes or merges into a directory, and opens it for its entries.
// Its metadata is set by leave, after its entries, which would change
// its times and may need it writable.
func (r *restorer) dir(e *entry, dir *os.Root, base string) (bool, error) {
	if e.name == "" { // target itself, whose metadata is the user's
		r.stack = append(r.stack, frame{dir: r.root})
		return true, nil
	}
	set := true
	fi, err := dir.Lstat(base)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = dir.Mkdir(base, 0o700)
		if err == nil {
			r.s.sum.Dirs++
		}
	case err != nil:
	case fi.IsDir():
		set = r.o.Overwrite == Always
	case r.o.Overwrite != Always:
		err = fmt.Errorf("%s is in the way of a directory: %w", fi.Mode().Type(), fs.ErrExist)
	default:
		if err = dir.Remove(base); err == nil {
			err = dir.Mkdir(base, 0o700)
		}
		if err == nil {
			r.s.sum.Dirs++
		}
	}
	if err != nil {
		return false, err
	}
	sub, err := dir.OpenRoot(base)
	if err != nil {
		return false, err
	}
	r.stack = append(r.stack, frame{dir: sub, set: set})
	return true, nil
}

func (r *restorer) leave(e *entry) error {
	r.s.done(e.src)
	f := r.stack[len(r.stack)-1]
	r.stack = r.stack[:len(r.stack)-1]
	if f.dir == r.root {
		return nil
	}
	f.dir.Close()
	if !f.set {
		return nil
	}
	return r.s.settle(e.src, r.setMeta(r.parent(), path.Base(e.name), e))
}

// replace says whether to write over what is already at name, by the
// overwrite policy.
func (r *restorer) replace(e *entry, dir *os.Root, name string) (bool, error) {
	fi, err := dir.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return true, nil
	case err != nil:
		return false, err
	case r.o.Overwrite == Always:
		return true, nil
	case fi.IsDir():
		return false, fmt.Errorf("a directory is in the way: %w", fs.ErrExist)
	case r.o.Overwrite == IfNewer && e.meta.mtime.After(fi.ModTime()):
		return true, nil
	}
	r.s.sum.Skipped++
	r.s.log.Info("kept existing file", "path", e.src, "overwrite", r.o.Overwrite)
	return false, nil
}

func (r *restorer) file(e *entry, dir *os.Root, base string) error {
	if ok, err := r.replace(e, dir, base); !ok {
		return err
	}
	if first, ok := r.links[e.meta.id]; e.meta.linked() && ok {
		// Hard links span directories: made from the target's root.
		tmp := tempName()
		err := r.root.Link(first, filepath.Join(filepath.FromSlash(path.Dir(e.name)), tmp))
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", first, err)
		}
		if err := r.install(dir, tmp, base); err != nil {
			return err
		}
		r.s.sum.HardLinks++
		return nil
	}
	if err := r.copyFile(e, dir, base); err != nil {
		return err
	}
	if e.meta.linked() {
		r.links[e.meta.id] = filepath.FromSlash(e.name)
	}
	r.s.sum.Files++
	r.s.sum.Bytes += e.info.Size()
	return nil
}

func (r *restorer) symlink(e *entry, dir *os.Root, base string) error {
	target, err := readLink(r.fsys, e.src)
	if err != nil {
		return err
	}
	if ok, err := r.replace(e, dir, base); !ok {
		return err
	}
	tmp := tempName()
	// The target is data: the link is made, never followed.
	if err := dir.Symlink(target, tmp); err != nil {
		return err
	}
	if r.owner && e.meta.hasOwner {
		err := dir.Lchown(tmp, int(e.meta.uid), int(e.meta.gid))
		if err != nil && !errors.Is(err, fs.ErrPermission) {
			dir.Remove(tmp)
			return err
		}
	}
	if err := r.install(dir, tmp, base); err != nil {
		return err
	}
	r.s.sum.Symlinks++
	return nil
}
