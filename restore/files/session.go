package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"time"
)

// session is what one Restore, WriteTar or WriteZip keeps: the summary,
// the progress and the context.
type session struct {
	ctx      context.Context
	log      *slog.Logger
	progress func(Progress)
	sum      Summary
	at       Progress
	last     time.Time // of the last progress call
}

func newSession(ctx context.Context, log *slog.Logger, progress func(Progress)) *session {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &session{ctx: ctx, log: log, progress: progress}
}

// fail records the failure of one path.
func (s *session) fail(src string, err error) {
	s.sum.Failed++
	if len(s.sum.Errors) < MaxErrors {
		s.sum.Errors = append(s.sum.Errors, PathError{Path: src, Err: err})
	}
	switch {
	case s.sum.Failed <= MaxErrors:
		s.log.Warn("path failed", "path", src, "err", err)
	case s.sum.Failed == MaxErrors+1:
		s.log.Warn("more paths failed; only their number is kept from here on")
	}
}

// settle records err as the failure of src and returns nil, unless err
// ends the whole run: a cancelled context or a passed limit.
func (s *session) settle(src string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := s.ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, ErrLimit) {
		return err
	}
	s.fail(src, err)
	return nil
}

// count walks the paths first, so that progress has totals and a limit
// is found before anything is written. It costs a second walk of the
// metadata, so it is done only when someone uses it.
func (s *session) count(w walker, paths []string) error {
	if s.progress == nil && w.limits == (Limits{}) {
		return nil
	}
	w.report = func(string, error) {}
	w.visit = func(*entry) (bool, error) { return true, nil }
	w.leave = nil
	if err := w.walkPaths(paths); err != nil {
		return err
	}
	s.at.TotalFiles, s.at.TotalBytes = w.files, w.bytes
	return nil
}

// start says which entry is being done, for progress during a long file.
func (s *session) start(src string) { s.at.Path = src }

// done counts one more entry done.
func (s *session) done(src string) {
	s.at.Files++
	s.at.Path = src
	s.tick(false)
}

func (s *session) tick(force bool) {
	if s.progress == nil {
		return
	}
	if now := time.Now(); force || now.Sub(s.last) >= ProgressInterval {
		s.last = now
		s.progress(s.at)
	}
}

func (s *session) finish(err error) (Summary, error) {
	s.tick(true)
	if err != nil {
		s.log.Warn("stopped", "err", err, "files", s.at.Files, "bytes", s.at.Bytes)
		return s.sum, err
	}
	s.log.Info("done", "files", s.sum.Files, "dirs", s.sum.Dirs, "symlinks", s.sum.Symlinks,
		"hardlinks", s.sum.HardLinks, "bytes", s.sum.Bytes, "skipped", s.sum.Skipped, "failed", s.sum.Failed)
	if s.sum.Failed > 0 {
		return s.sum, fmt.Errorf("%d paths failed; the first: %w", s.sum.Failed, s.sum.Errors[0])
	}
	return s.sum, nil
}

// chunkSize is how much of a file is read at once.
const chunkSize = 1 << 20

// copyChunks reads the size bytes of a file in chunks of buf and hands
// each to put with its offset, checking the context between chunks.
func (s *session) copyChunks(src io.Reader, size int64, buf []byte, put func(p []byte, off int64) error) error {
	for off := int64(0); off < size; {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		n := int(min(size-off, int64(len(buf))))
		m, err := io.ReadFull(src, buf[:n])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("file ends at byte %d of its %d", off+int64(m), size)
			}
			return err
		}
		if err := put(buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
		s.at.Bytes += int64(n)
		s.tick(false)
	}
	return nil
}

// readLink returns a symlink's target, which must not be empty.
func readLink(fsys fs.FS, name string) (string, error) {
	target, err := fs.ReadLink(fsys, name)
	if err == nil && target == "" {
		err = errors.New("empty symlink target")
	}
	return target, err
}
