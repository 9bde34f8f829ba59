package files

import (
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
)

// holeSize is the block that is left as a hole when it is all zeros.
const holeSize = 64 << 10

// zeros is what a hole reads as; never written.
var zeros [holeSize]byte

func (r *restorer) copyFile(e *entry, dir *os.Root, base string) (err error) {
	src, err := r.fsys.Open(e.src)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := tempName()
	f, err := dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			dir.Remove(tmp)
		}
	}()
	size := e.info.Size()
	err = r.s.copyChunks(src, size, r.buf, func(p []byte, off int64) error {
		// Write each run of blocks that are not all zeros at once.
		for i := 0; i < len(p); {
			j := i
			for j < len(p) {
				end := min(j+holeSize, len(p))
				if string(p[j:end]) == string(zeros[:end-j]) {
					break
				}
				j = end
			}
			if j > i {
				if _, err := f.WriteAt(p[i:j], off+int64(i)); err != nil {
					return err
				}
			}
			i = min(j+holeSize, len(p))
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Truncate makes the file's length, with a hole at the end if it ends
	// with zeros.
	if err := f.Truncate(size); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := r.setMeta(dir, tmp, e); err != nil {
		return err
	}
	return r.install(dir, tmp, base)
}

// install renames a complete temporary file to its final name, which
// replaces a file or symlink there; a directory there is removed first
// (only Always gets here with one).
func (r *restorer) install(dir *os.Root, tmp, name string) error {
	err := dir.Rename(tmp, name)
	if err != nil {
		if fi, lerr := dir.Lstat(name); lerr == nil && fi.IsDir() {
			if err = dir.RemoveAll(name); err == nil {
				err = dir.Rename(tmp, name)
			}
		}
	}
	if err != nil {
		dir.Remove(tmp)
	}
	return err
}

func tempName() string { return tempPrefix + rand.Text() }

// setMeta sets a regular file's or a directory's owner, mode and times.
// The owner goes first: chown clears the setuid and setgid bits, which
// are set only on a file whose owner was restored.
func (r *restorer) setMeta(dir *os.Root, name string, e *entry) error {
	mode := e.info.Mode()
	perm := mode.Perm()
	if r.owner && e.meta.hasOwner {
		err := dir.Chown(name, int(e.meta.uid), int(e.meta.gid))
		switch {
		case err == nil:
			perm |= mode & specialBits
		case errors.Is(err, fs.ErrPermission):
			// Not allowed to (not root): the file is restored without
			// its owner, as by anyone who may not chown.
			if !r.ownerDenied {
				r.ownerDenied = true
				r.s.log.Warn("owners not restored: chown not permitted", "path", e.src, "err", err)
			}
		default:
			return err
		}
	}
	if err := dir.Chmod(name, perm); err != nil {
		return err
	}
	// A zero time leaves that time as it is.
	return dir.Chtimes(name, e.meta.atime, e.meta.mtime)
}
