package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// image is a raw image file or block device opened for backup.
type image struct {
	name string
	f    *os.File
	size int64
	file bool // a regular file, which may have holes
}

func openImage(path string) (*image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	img := &image{name: path, f: f}
	switch {
	case fi.Mode().IsRegular():
		img.size, img.file = fi.Size(), true
	case fi.Mode()&os.ModeDevice != 0:
		if img.size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("image %s: size of device: %w", path, err)
		}
	default:
		f.Close()
		return nil, fmt.Errorf("image %s: not a regular file or block device", path)
	}
	return img, nil
}

func (img *image) Close() error { return img.f.Close() }

// ReadAt implements io.ReaderAt.
func (img *image) ReadAt(p []byte, off int64) (int, error) { return img.f.ReadAt(p, off) }

// Prefetch implements chunkstore.Prefetcher: the kernel starts reading the
// areas into the page cache, all of them at once.
func (img *image) Prefetch(areas []diskmap.Area) {
	for _, a := range areas {
		_ = unix.Fadvise(int(img.f.Fd()), a.Offset, a.Length, unix.FADV_WILLNEED)
	}
}

// allocated returns the areas of a regular file that hold data, from
// SEEK_DATA and SEEK_HOLE; holes read as zero and need no reading. Nil means
// everything may hold data (a device, or a filesystem without the calls).
func (img *image) allocated() ([]diskmap.Area, error) {
	if !img.file {
		return nil, nil
	}
	fd := int(img.f.Fd())
	areas := []diskmap.Area{}
	for off := int64(0); off < img.size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole from here to the end
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("image %s: find data at %d: %w", img.name, off, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("image %s: find hole at %d: %w", img.name, data, err)
		}
		hole = min(hole, img.size)
		areas = append(areas, diskmap.Area{Offset: data, Length: hole - data})
		off = hole
	}
	return areas, nil
}
