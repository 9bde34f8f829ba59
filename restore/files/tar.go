package files

import (
	"archive/tar"
	"context"
	"io"
	"io/fs"
)

// WriteTar writes the paths of fsys, each with everything below it, to w
// as a tar stream, named as Restore names them. PAX headers keep long and
// Unicode names, times to the nanosecond, owners and modes; symlinks and
// hard links are kept. Nothing is written anywhere but w.
func WriteTar(ctx context.Context, w io.Writer, fsys fs.FS, paths []string, o ArchiveOptions) (Summary, error) {
	return archive(ctx, fsys, paths, o, &tarFormat{w: tar.NewWriter(w)})
}

type tarFormat struct {
	w *tar.Writer
}

func (t *tarFormat) header(e *entry, typ byte) *tar.Header {
	h := &tar.Header{
		Typeflag:   typ,
		Name:       e.name,
		Mode:       tarMode(e.info.Mode()),
		ModTime:    e.meta.mtime,
		AccessTime: e.meta.atime,
		ChangeTime: e.meta.ctime,
		Format:     tar.FormatPAX,
	}
	if e.meta.hasOwner {
		h.Uid, h.Gid = int(e.meta.uid), int(e.meta.gid)
	}
	return h
}

func (t *tarFormat) dir(e *entry) error {
	h := t.header(e, tar.TypeDir)
	h.Name += "/"
	return t.w.WriteHeader(h)
}

func (t *tarFormat) symlink(e *entry, target string) error {
	h := t.header(e, tar.TypeSymlink)
	h.Linkname = target
	return t.w.WriteHeader(h)
}

func (t *tarFormat) hardLink(e *entry, first string) error {
	h := t.header(e, tar.TypeLink)
	h.Linkname = first
	return t.w.WriteHeader(h)
}

func (t *tarFormat) file(e *entry, copy func(put func([]byte) error) error) error {
	h := t.header(e, tar.TypeReg)
	h.Size = e.info.Size()
	if err := t.w.WriteHeader(h); err != nil {
		return err
	}
	return copy(func(p []byte) error {
		_, err := t.w.Write(p)
		return err
	})
}

func (t *tarFormat) errorFile(name string, data []byte) error {
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)),
		ModTime: archiveTime(), Format: tar.FormatPAX}
	if err := t.w.WriteHeader(h); err != nil {
		return err
	}
	_, err := t.w.Write(data)
	return err
}

func (t *tarFormat) close() error { return t.w.Close() }

// tarMode is a mode as tar keeps it: the Unix permission and special bits.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
