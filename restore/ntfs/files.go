package ntfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Contents returns a regular file's unnamed data stream.
func (r *Reader) Contents(fn fstree.Node) (io.ReaderAt, error) {
	n, ok := fn.(*node)
	if !ok || !n.meta.Mode.IsRegular() {
		return nil, fmt.Errorf("ntfs: contents of a node that is not a regular file: %w", fs.ErrInvalid)
	}
	if n.data == nil {
		return bytes.NewReader(nil), nil
	}
	return r.open(n, n.data)
}

// Stream returns a file's alternate data stream and its size.
func (r *Reader) Stream(fn fstree.Node, name string) (io.ReaderAt, int64, error) {
	n, ok := fn.(*node)
	if !ok {
		return nil, 0, fmt.Errorf("ntfs: stream of a foreign node: %w", fs.ErrInvalid)
	}
	d, ok := n.streams[name]
	if !ok {
		return nil, 0, fmt.Errorf("ntfs: record %d has no stream %q: %w", n.num, name, fs.ErrNotExist)
	}
	ra, err := r.open(n, d)
	if err != nil {
		return nil, 0, err
	}
	return ra, d.size, nil
}

func (r *Reader) open(n *node, d *dataAttr) (io.ReaderAt, error) {
	if d.encrypted {
		return nil, fmt.Errorf("ntfs: record %d is encrypted (EFS): %w", n.num, errors.ErrUnsupported)
	}
	return r.newStream(d), nil
}

// ReadLink returns a symlink's target.
func (r *Reader) ReadLink(fn fstree.Node) (string, error) {
	n, ok := fn.(*node)
	if !ok || n.meta.Mode.Type() != fs.ModeSymlink {
		return "", fmt.Errorf("ntfs: readlink of a node that is not a symlink: %w", fs.ErrInvalid)
	}
	return n.link, nil
}
