package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// commonFlags are the flags shared by all commands.
type commonFlags struct {
	Dir     string
	Out     string
	Bulwark string
	Sources string
	Keep    bool
	Size    byteSize
	Data    byteSize
	Pct     float64
	Seed    uint64
}

// register defines the shared flags on fs with the given default sizes.
func (c *commonFlags) register(set *flag.FlagSet, size, data int64) {
	c.Size, c.Data = byteSize(size), byteSize(data)
	set.StringVar(&c.Dir, "dir", "", "directory to create the work directory in (default $TMPDIR, or /work if $TMPDIR is a tmpfs or too small)")
	set.StringVar(&c.Out, "out", "", "also write the Markdown report to this `file`")
	set.StringVar(&c.Bulwark, "bulwark", "", "Bulwark CLI `binary` to use (default: go build ./cmd/bulwark)")
	set.StringVar(&c.Sources, "sources", "/usr/lib,/usr/share,/usr/bin,/usr/local/go", "comma-separated `directories` to copy files from; missing ones are skipped")
	set.BoolVar(&c.Keep, "keep", false, "keep the work directory")
	set.Var(&c.Size, "size", "apparent `size` of the disk image")
	set.Var(&c.Data, "data", "`bytes` of file data to copy into the image")
	set.Float64Var(&c.Pct, "change-pct", 1.5, "`percent` of the file data to overwrite in place between the backups")
	set.Uint64Var(&c.Seed, "seed", 1, "seed of the bytes written over the changed files")
}

// imageOptions returns the image options, leaving out source directories
// that do not exist.
func (c *commonFlags) imageOptions() (imageOptions, error) {
	opt := imageOptions{Size: int64(c.Size), Data: int64(c.Data), ChangePct: c.Pct, Seed: c.Seed, Keep: c.Keep}
	for _, s := range strings.Split(c.Sources, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		abs, err := filepath.Abs(s)
		if err != nil {
			return opt, fmt.Errorf("source %s: %w", s, err)
		}
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			opt.Sources = append(opt.Sources, abs)
		}
	}
	switch {
	case len(opt.Sources) == 0:
		return opt, fmt.Errorf("none of the --sources directories %q exists", c.Sources)
	case opt.Size <= 2<<20:
		return opt, errors.New("--size must be more than 2 MiB")
	case opt.Data <= 0:
		return opt, errors.New("--data must be positive")
	case opt.ChangePct <= 0 || opt.ChangePct > 50:
		return opt, errors.New("--change-pct must be in (0, 50]")
	}
	return opt, nil
}

// workspace is the directory a run keeps its image, repositories and
// restored files in.
type workspace struct {
	Dir  string
	Keep bool
}

// newWorkspace creates a fresh work directory in parent or, if parent is
// empty, in $TMPDIR unless that is a tmpfs or has less than need bytes free
// and /work is better.
func newWorkspace(log *slog.Logger, parent string, need int64, keep bool) (*workspace, error) {
	if parent == "" {
		parent = defaultParent(log, need)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	if free, _, err := freeBytes(parent); err == nil && free < need {
		log.Warn("work directory may be too small", "dir", parent, "free", formatBytes(free), "need", formatBytes(need))
	}
	dir, err := os.MkdirTemp(parent, "bulwark-bench-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	log.Info("work directory", "dir", dir)
	return &workspace{Dir: dir, Keep: keep}, nil
}

// defaultParent picks $TMPDIR, or /work when $TMPDIR is a tmpfs or too
// small and /work is a directory.
func defaultParent(log *slog.Logger, need int64) string {
	tmp := os.TempDir()
	free, tmpfs, err := freeBytes(tmp)
	if err == nil && !tmpfs && free >= need {
		return tmp
	}
	if fi, err := os.Stat("/work"); err == nil && fi.IsDir() {
		log.Info("not using $TMPDIR for the work directory", "tmpdir", tmp, "tmpfs", tmpfs, "free", formatBytes(free))
		return "/work"
	}
	return tmp
}

// path joins elem to the work directory.
func (w *workspace) path(elem ...string) string {
	return filepath.Join(append([]string{w.Dir}, elem...)...)
}

// mkdir creates a fresh subdirectory.
func (w *workspace) mkdir(name string) (string, error) {
	p := w.path(name)
	if err := os.RemoveAll(p); err != nil {
		return "", err
	}
	return p, os.MkdirAll(p, 0o755)
}

// close removes the work directory unless it is to be kept.
func (w *workspace) close(log *slog.Logger) {
	if w.Keep {
		log.Info("keeping work directory", "dir", w.Dir)
		return
	}
	if err := os.RemoveAll(w.Dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("remove work directory", "dir", w.Dir, "err", err)
	}
}

// cacheDropper drops the page cache so that every tool starts from the same
// cache state, and remembers whether that worked.
type cacheDropper struct {
	Tried, Failed int
	Err           error
}

// drop writes dirty pages back and drops clean caches. Failure (not root,
// read-only /proc) is recorded, not returned.
func (d *cacheDropper) drop(log *slog.Logger) {
	syscall.Sync()
	d.Tried++
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		if d.Failed == 0 {
			log.Warn("cannot drop the page cache; timings include whatever is cached", "err", err)
		}
		d.Failed++
		d.Err = err
	}
}

// String describes the outcome for the report.
func (d *cacheDropper) String() string {
	switch {
	case d.Tried == 0:
		return "not dropped"
	case d.Failed == 0:
		return fmt.Sprintf("dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before each of the %d timed phases", d.Tried)
	default:
		return fmt.Sprintf("could not be dropped before %d of %d timed phases (%v); timings include whatever was cached", d.Failed, d.Tried, d.Err)
	}
}
