package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Reads of a file are made in blocks this large, readAhead of them under
// way at once: few enough requests for a large file, and the next block
// arrives while the last one is written.
const (
	blockSize = 4 << 20
	readAhead = 2
)

// maxKnown bounds the listing entries remembered for Open and ReadLink.
const maxKnown = 100_000

// remoteFS is a volume of a point on the appliance, seen as an io/fs.FS.
// Its FileInfos carry *fstree.Meta, so that files.Restore keeps owners,
// times and hard links as it does from a local image. Every call is a
// request to the appliance, made under ctx.
type remoteFS struct {
	ctx           context.Context
	c             *fileapi.Client
	point, volume string

	mu sync.Mutex
	// known holds the regular files and symlinks of the latest listings,
	// so that a restore does not ask again for what a listing told.
	known map[string]fileapi.FileView
}

var (
	_ fs.ReadDirFS  = (*remoteFS)(nil)
	_ fs.StatFS     = (*remoteFS)(nil)
	_ fs.ReadLinkFS = (*remoteFS)(nil)
)

func newRemoteFS(ctx context.Context, c *fileapi.Client, point, volume string) *remoteFS {
	return &remoteFS{ctx: ctx, c: c, point: point, volume: volume, known: map[string]fileapi.FileView{}}
}

// pathError turns an API error into one that errors.Is tells apart as
// io/fs errors are.
func pathError(op, name string, err error) error {
	var se *fileapi.StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusNotFound:
			err = fmt.Errorf("%s: %w", se.Body.Error, fs.ErrNotExist)
		case http.StatusBadRequest:
			err = fmt.Errorf("%s: %w", se.Body.Error, fs.ErrInvalid)
		}
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

func (r *remoteFS) remember(v fileapi.FileView) {
	if v.Error != "" || v.Type != "file" && v.Type != "symlink" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.known) >= maxKnown {
		clear(r.known) // only costs requests
	}
	r.known[v.Path] = v
}

// recall returns and forgets what a listing told of name.
func (r *remoteFS) recall(name, typ string) (fileapi.FileView, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.known[name]
	if ok && v.Type == typ {
		delete(r.known, name)
		return v, true
	}
	return fileapi.FileView{}, false
}

func (r *remoteFS) stat(op, name string, follow bool) (fileapi.FileView, error) {
	if !fs.ValidPath(name) {
		return fileapi.FileView{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	v, err := r.c.Stat(r.ctx, r.point, r.volume, name, follow)
	if err != nil {
		return fileapi.FileView{}, pathError(op, name, err)
	}
	return v, nil
}

// Stat returns a file's information, following symlinks.
func (r *remoteFS) Stat(name string) (fs.FileInfo, error) {
	v, err := r.stat("stat", name, true)
	if err != nil {
		return nil, err
	}
	return newFileInfo(v), nil
}

// Lstat returns a file's information; a symlink is not followed.
func (r *remoteFS) Lstat(name string) (fs.FileInfo, error) {
	v, err := r.stat("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return newFileInfo(v), nil
}

// ReadLink returns a symlink's target.
func (r *remoteFS) ReadLink(name string) (string, error) {
	v, ok := r.recall(name, "symlink")
	if !ok {
		var err error
		if v, err = r.stat("readlink", name, false); err != nil {
			return "", err
		}
	}
	if v.Type != "symlink" {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	if v.Error != "" {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: errors.New(v.Error)}
	}
	return v.Target, nil
}

// ReadDir lists a directory, sorted by name. Entries the appliance left
// out (names that cannot be paths) are reported in the error, with the
// others returned.
func (r *remoteFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	dir, views, problems, err := r.c.ListAll(r.ctx, r.point, r.volume, name, true)
	if err != nil {
		return nil, pathError("readdir", name, err)
	}
	if dir.Type != "dir" {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	out := make([]fs.DirEntry, len(views))
	for i, v := range views {
		r.remember(v)
		out[i] = dirEntry{v}
	}
	if len(problems) > 0 {
		return out, &fs.PathError{Op: "readdir", Path: name, Err: errors.New(problems[0])}
	}
	return out, nil
}

// Open opens a file; a regular file reads its contents from the
// appliance in large blocks, a few at a time, as it is read.
func (r *remoteFS) Open(name string) (fs.File, error) {
	v, ok := r.recall(name, "file")
	if !ok {
		var err error
		if v, err = r.stat("open", name, true); err != nil {
			return nil, err
		}
	}
	info := newFileInfo(v)
	if info.IsDir() {
		return &remoteDir{fs: r, name: name, info: info}, nil
	}
	ctx, cancel := context.WithCancel(r.ctx)
	f := &remoteFile{fs: r, name: name, info: info, ctx: ctx, cancel: cancel}
	if !info.Mode().IsRegular() {
		f.size = 0 // devices, fifos and sockets have nothing to read
	} else {
		f.size = info.Size()
	}
	return f, nil
}

// fileInfo is a file as the appliance shows it; Sys is its *fstree.Meta.
type fileInfo struct {
	v    fileapi.FileView
	meta fstree.Meta
}

func newFileInfo(v fileapi.FileView) *fileInfo { return &fileInfo{v: v, meta: v.Meta()} }

func (i *fileInfo) Name() string       { return i.v.Name }
func (i *fileInfo) Size() int64        { return i.meta.Size }
func (i *fileInfo) Mode() fs.FileMode  { return i.meta.Mode }
func (i *fileInfo) ModTime() time.Time { return i.meta.Mtime }
func (i *fileInfo) IsDir() bool        { return i.meta.Mode.IsDir() }
func (i *fileInfo) Sys() any           { return &i.meta }

type dirEntry struct{ v fileapi.FileView }

func (d dirEntry) Name() string      { return d.v.Name }
func (d dirEntry) IsDir() bool       { return d.Type().IsDir() }
func (d dirEntry) Type() fs.FileMode { return fileapi.FileModeOf(d.v.Mode).Type() }

func (d dirEntry) Info() (fs.FileInfo, error) {
	if d.v.Error != "" {
		return nil, &fs.PathError{Op: "stat", Path: d.v.Path, Err: errors.New(d.v.Error)}
	}
	return newFileInfo(d.v), nil
}

type remoteDir struct {
	fs      *remoteFS
	name    string
	info    *fileInfo
	entries []fs.DirEntry
	listed  bool
}

func (d *remoteDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *remoteDir) Close() error               { return nil }

func (d *remoteDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: errors.New("is a directory")}
}

func (d *remoteDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.listed {
		entries, err := d.fs.ReadDir(d.name)
		if err != nil && entries == nil {
			return nil, err
		}
		d.entries, d.listed = entries, true
	}
	if n <= 0 {
		rest := d.entries
		d.entries = nil
		return rest, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.entries))
	rest := d.entries[:n]
	d.entries = d.entries[n:]
	return rest, nil
}

// remoteFile is an open file. Read fetches blocks ahead of the offset;
// ReadAt asks for just what it is given.
type remoteFile struct {
	fs     *remoteFS
	name   string
	info   *fileInfo
	size   int64
	ctx    context.Context
	cancel context.CancelFunc
	off    int64
	blocks []*block // fetched or being fetched, in file order
	// fetches counts the fetches under way, also of blocks dropped by a
	// seek, which Close waits for.
	fetches sync.WaitGroup
}

// block is a part of a file being fetched.
type block struct {
	off  int64
	data []byte
	err  error
	done chan struct{}
}

func (f *remoteFile) Stat() (fs.FileInfo, error) { return f.info, nil }

// Close cancels the fetches under way and waits for them.
func (f *remoteFile) Close() error {
	f.cancel()
	f.fetches.Wait()
	f.blocks = nil
	return nil
}

func (f *remoteFile) blockLen(off int64) int64 { return min(blockSize, f.size-off) }

func (f *remoteFile) fetch(off int64) *block {
	b := &block{off: off, data: make([]byte, f.blockLen(off)), done: make(chan struct{})}
	f.fetches.Go(func() {
		defer close(b.done)
		n, err := f.fs.c.ReadAt(f.ctx, f.fs.point, f.fs.volume, f.name, b.data, off)
		if n < len(b.data) {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("the file ends at byte %d of its %d", off+int64(n), f.size)
			}
			b.err = &fs.PathError{Op: "read", Path: f.name, Err: err}
		}
	})
	return b
}

func (f *remoteFile) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	// Drop the blocks before the offset; if none holds it (a first read),
	// start there.
	for len(f.blocks) > 0 {
		b := f.blocks[0]
		if b.off <= f.off && f.off < b.off+int64(len(b.data)) {
			break
		}
		f.blocks = f.blocks[1:]
		if b.off > f.off {
			f.blocks = nil // behind every block: start over
		}
	}
	if len(f.blocks) == 0 {
		f.blocks = append(f.blocks, f.fetch(f.off))
	}
	for len(f.blocks) < readAhead {
		last := f.blocks[len(f.blocks)-1]
		next := last.off + int64(len(last.data))
		if next >= f.size {
			break
		}
		f.blocks = append(f.blocks, f.fetch(next))
	}
	b := f.blocks[0]
	select {
	case <-b.done:
	case <-f.ctx.Done():
		return 0, f.ctx.Err()
	}
	if b.err != nil {
		return 0, b.err
	}
	n := copy(p, b.data[f.off-b.off:])
	f.off += int64(n)
	return n, nil
}

// ReadAt reads p at off with one request.
func (f *remoteFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.size {
		return 0, io.EOF
	}
	return f.fs.c.ReadAt(f.ctx, f.fs.point, f.fs.volume, f.name, p, off)
}
