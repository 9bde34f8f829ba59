package files

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"
)

// ArchiveOptions of WriteTar and WriteZip.
type ArchiveOptions struct {
	// Progress, if set, is called now and then, as for Restore.
	Progress func(Progress)
	// Log receives each failed or skipped path; nil discards.
	Log    *slog.Logger
	Limits Limits
	// GOOS, if set, leaves out the names that system cannot hold (see
	// CheckName), as Restore does; empty leaves out only what no system
	// can hold.
	GOOS string
	// ErrorFile, if set, names a file added at the end of the archive
	// when some paths failed, listing them: a streamed download has no
	// other way to tell.
	ErrorFile string
	// Store leaves zip entries uncompressed. Tar is never compressed here.
	Store bool
}

// format is what an archive format writes for each kind of entry. Its
// errors end the archive: the stream is already partly written.
type format interface {
	dir(e *entry) error
	symlink(e *entry, target string) error
	// file writes a header and then the contents, through copy.
	file(e *entry, copy func(put func(p []byte) error) error) error
	// errorFile adds a small file made here.
	errorFile(name string, data []byte) error
	close() error
}

// linkFormat is a format with hard links; in the others, a file with
// several names has its contents at each.
type linkFormat interface {
	hardLink(e *entry, first string) error
}

// archive walks the paths and writes them in a format: what WriteTar and
// WriteZip share. A path that cannot be opened or read before its header
// is written is passed over and listed in the Summary; one that fails
// after ends the archive unfinished (no trailer), so that whoever reads
// it sees the failure.
func archive(ctx context.Context, fsys fs.FS, paths []string, o ArchiveOptions, f format) (Summary, error) {
	s := newSession(ctx, o.Log, o.Progress)
	lf, links := f.(linkFormat)
	w := walker{ctx: ctx, fsys: fsys, goos: o.GOOS, limits: o.Limits, copyLinks: !links}
	if err := s.count(w, paths); err != nil {
		return s.finish(err)
	}
	a := &archiver{s: s, fsys: fsys, f: f, lf: lf, first: map[fileID]string{}, buf: make([]byte, chunkSize)}
	w.report = s.fail
	w.visit = a.visit
	w.leave = func(e *entry) error { s.done(e.src); return nil }
	err := w.walkPaths(paths)
	if err == nil && s.sum.Failed > 0 && o.ErrorFile != "" {
		err = f.errorFile(o.ErrorFile, errorList(s.sum))
	}
	if err == nil {
		err = f.close()
	}
	return s.finish(err)
}

type archiver struct {
	s     *session
	fsys  fs.FS
	f     format
	lf    linkFormat        // nil if the format has no hard links
	first map[fileID]string // first name written of each hard-linked file
	buf   []byte
}

func (a *archiver) visit(e *entry) (bool, error) {
	a.s.start(e.src)
	mode := e.info.Mode()
	if mode.IsDir() {
		if e.name == "" {
			return true, nil
		}
		if err := a.f.dir(e); err != nil {
			return false, fmt.Errorf("%s: %w", e.src, err)
		}
		a.s.sum.Dirs++
		return true, nil
	}
	defer a.s.done(e.src)
	switch {
	case mode.Type() == fs.ModeSymlink:
		target, err := readLink(a.fsys, e.src)
		if err != nil {
			return false, a.s.settle(e.src, err)
		}
		if err := a.f.symlink(e, target); err != nil {
			return false, fmt.Errorf("%s: %w", e.src, err)
		}
		a.s.sum.Symlinks++
	case mode.IsRegular():
		if first, ok := a.first[e.meta.id]; a.lf != nil && e.meta.linked() && ok {
			if err := a.lf.hardLink(e, first); err != nil {
				return false, fmt.Errorf("%s: %w", e.src, err)
			}
			a.s.sum.HardLinks++
			return false, nil
		}
		src, err := a.fsys.Open(e.src)
		if err != nil {
			return false, a.s.settle(e.src, err)
		}
		defer src.Close()
		err = a.f.file(e, func(put func([]byte) error) error {
			return a.s.copyChunks(src, e.info.Size(), a.buf, func(p []byte, _ int64) error { return put(p) })
		})
		if err != nil {
			return false, fmt.Errorf("%s: %w", e.src, err)
		}
		if e.meta.linked() {
			a.first[e.meta.id] = e.name
		}
		a.s.sum.Files++
		a.s.sum.Bytes += e.info.Size()
	default:
		a.s.sum.Skipped++
		a.s.log.Info("special file left out", "path", e.src, "type", mode.Type())
	}
	return false, nil
}

func errorList(sum Summary) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%d paths could not be archived:\n", sum.Failed)
	for _, e := range sum.Errors {
		fmt.Fprintln(&b, e.Error())
	}
	if more := sum.Failed - int64(len(sum.Errors)); more > 0 {
		fmt.Fprintf(&b, "and %d more\n", more)
	}
	return []byte(b.String())
}

// archiveTime is the time given to what the archive adds itself.
func archiveTime() time.Time { return time.Now().Truncate(time.Second) }
