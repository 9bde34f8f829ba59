package files

import (
	"archive/zip"
	"context"
	"io"
	"io/fs"
)

// WriteZip writes the paths of fsys, each with everything below it, to w
// as a zip stream, named as Restore names them: UTF-8 names, Unix modes,
// modification times, symlinks as zip symlinks (the target is the
// entry's data), and Zip64 where sizes need it. Zip has no hard links: a
// file with several names is stored at each. Nothing is written anywhere
// but w.
func WriteZip(ctx context.Context, w io.Writer, fsys fs.FS, paths []string, o ArchiveOptions) (Summary, error) {
	method := zip.Deflate
	if o.Store {
		method = zip.Store
	}
	return archive(ctx, fsys, paths, o, &zipFormat{w: zip.NewWriter(w), method: method})
}

type zipFormat struct {
	w      *zip.Writer
	method uint16
}

func (z *zipFormat) create(e *entry, name string, method uint16) (io.Writer, error) {
	h := &zip.FileHeader{Name: name, Method: method, Modified: e.meta.mtime}
	h.SetMode(e.info.Mode())
	return z.w.CreateHeader(h)
}

func (z *zipFormat) dir(e *entry) error {
	_, err := z.create(e, e.name+"/", zip.Store)
	return err
}

func (z *zipFormat) symlink(e *entry, target string) error {
	w, err := z.create(e, e.name, zip.Store)
	if err == nil {
		_, err = io.WriteString(w, target)
	}
	return err
}

func (z *zipFormat) file(e *entry, copy func(put func([]byte) error) error) error {
	w, err := z.create(e, e.name, z.method)
	if err != nil {
		return err
	}
	return copy(func(p []byte) error {
		_, err := w.Write(p)
		return err
	})
}

func (z *zipFormat) errorFile(name string, data []byte) error {
	h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: archiveTime()}
	h.SetMode(0o644)
	w, err := z.w.CreateHeader(h)
	if err == nil {
		_, err = w.Write(data)
	}
	return err
}

func (z *zipFormat) close() error { return z.w.Close() }
