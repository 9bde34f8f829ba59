package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// sourceFile is a regular file of the assembled source tree.
type sourceFile struct {
	Path string // slash-separated, relative to the tree root
	Size int64
}

// sourceRoot is one directory of the machine to copy files from, with the
// regular files it offers in walk order.
type sourceRoot struct {
	Dir   string
	Files []sourceFile // Path relative to the tree root, e.g. "usr/lib/x"
	Total int64
}

// scanRoot lists the regular files below dir in lexical walk order. Paths
// are given relative to the tree root, which mirrors the machine's layout.
func scanRoot(ctx context.Context, dir string) (sourceRoot, error) {
	root := sourceRoot{Dir: dir}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return nil // unreadable parts of the system are simply left out
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // vanished meanwhile
		}
		root.Files = append(root.Files, sourceFile{Path: treePath(p), Size: info.Size()})
		root.Total += info.Size()
		return nil
	})
	if err != nil {
		return sourceRoot{}, fmt.Errorf("scan %s: %w", dir, err)
	}
	return root, nil
}

// treePath maps an absolute path of the machine to its path in the tree.
func treePath(p string) string {
	return strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/")
}

// planCopy chooses which files to copy so that at most budget bytes of file
// data are copied and the budget is spread evenly across roots: roots smaller
// than their share are copied whole and the rest is shared among the others.
// Within a root, files are taken in walk order, skipping files that no longer
// fit.
func planCopy(roots []sourceRoot, budget int64) []sourceFile {
	order := make([]int, len(roots))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(roots[a].Total, roots[b].Total)
	})
	quota := make([]int64, len(roots))
	remaining := budget
	for k, i := range order {
		share := remaining / int64(len(order)-k)
		quota[i] = min(roots[i].Total, share)
		remaining -= quota[i]
	}
	var plan []sourceFile
	for i, r := range roots {
		left := quota[i]
		for _, f := range r.Files {
			if f.Size <= left {
				plan = append(plan, f)
				left -= f.Size
			}
		}
	}
	return plan
}

// copyTree copies the planned files from the machine into dst, keeping
// permission bits and modification times (like cp -a) and creating the
// parent directories. Files that cannot be read are skipped; the returned list
// holds what was copied.
func copyTree(ctx context.Context, plan []sourceFile, dst string) ([]sourceFile, error) {
	copied := make([]sourceFile, 0, len(plan))
	for _, f := range plan {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := copyFile("/"+f.Path, filepath.Join(dst, filepath.FromSlash(f.Path)))
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("copy %s: %w", f.Path, err)
		}
		copied = append(copied, sourceFile{Path: f.Path, Size: n})
	}
	return copied, nil
}

// copyFile copies one regular file and returns the number of bytes copied.
func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return 0, err
	}
	if err := mkdirParents(filepath.Dir(dst), filepath.Dir(src)); err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	if err := os.Chtimes(dst, info.ModTime(), info.ModTime()); err != nil {
		return n, err
	}
	return n, os.Chmod(dst, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
}

// mkdirParents creates dir and its missing parents with the permission bits
// of the corresponding directories of the machine, src being the one that
// corresponds to dir.
func mkdirParents(dir, src string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirParents(filepath.Dir(dir), filepath.Dir(src)); err != nil {
		return err
	}
	perm := fs.FileMode(0o755)
	if info, err := os.Stat(src); err == nil {
		perm = info.Mode().Perm()
	}
	if err := os.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// freeBytes returns the space available to unprivileged users on the file
// system holding path and whether that file system is a tmpfs.
func freeBytes(path string) (free int64, tmpfs bool, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, false, fmt.Errorf("statfs %s: %w", path, err)
	}
	const tmpfsMagic = 0x01021994
	return int64(st.Bavail) * st.Bsize, st.Type == tmpfsMagic, nil
}
