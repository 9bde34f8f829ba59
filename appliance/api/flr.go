package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"unicode"

	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/restore"
	"github.com/bulwarkbackup/bulwark/restore/files"
	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/volume"
)

// Bounds of the file-level requests' parameters.
const (
	maxFSPath        = 4096
	maxArchivePaths  = 100
	maxSearchPattern = 256
	defaultPageSize  = 1000
	maxPageSize      = fileapi.MaxPage
	maxSearchLimit   = 10000
	// archiveErrorFile lists, inside an archive, the paths that could not
	// be put in it: a streamed download has no other way to tell.
	archiveErrorFile = ".bulwark-errors.txt"
)

// browsing is one file-level request's hold on a point's session.
type browsing struct {
	point   *chunkstore.Point
	sess    *browseSession
	vol     *volume.Volume // nil for requests about the whole point
	fsys    *fstree.FS
	release func()
}

// browse resolves the point of r, which the caller must be allowed to see
// (else it is not found), opens its session and, if withVolume, the
// filesystem of the volume r names. The caller releases it.
func (s *Server) browse(r *http.Request, c *call, withVolume bool) (*browsing, error) {
	p, err := s.point(r, c)
	if err != nil {
		return nil, err
	}
	sess, release, err := s.d.Browse.acquire(r.Context(), p.ID)
	if err != nil {
		return nil, err
	}
	b := &browsing{point: p, sess: sess, release: release}
	if !withVolume {
		return b, nil
	}
	ref := r.PathValue("volume")
	vol, err := restore.FindVolume(sess.vols, volumeID(ref))
	if err != nil {
		release()
		return nil, errNotFound("%s", err)
	}
	fsys, err := vol.Open()
	if err != nil {
		release()
		return nil, errBadRequest("%s", err)
	}
	b.vol, b.fsys = vol, fsys
	return b, nil
}

// target names a path of a volume of a point in the audit log.
func (b *browsing) target(p string) string {
	return fmt.Sprintf("%s %s:/%s", b.point.ID, b.vol.ID, strings.TrimPrefix(p, "."))
}

// queryPath returns the path that the query parameter name gives, inside
// a volume: relative and slash-separated, "" or "." for the root. An
// absolute path, "." or ".." elements and control characters are refused:
// the filesystem readers would not follow them out of the volume, but a
// request holding them is a mistake or an attack, and said to be one.
func queryPath(v string) (string, error) {
	if v == "" || v == "." {
		return ".", nil
	}
	p := strings.TrimSuffix(v, "/")
	switch {
	case len(v) > maxFSPath:
		return "", errBadRequest("path of %d bytes: at most %d", len(v), maxFSPath)
	case strings.HasPrefix(v, "/"):
		return "", errBadRequest("path %q is absolute: give it relative to the volume's root", v)
	case strings.ContainsFunc(v, func(c rune) bool { return c < 0x20 || c == 0x7f }):
		return "", errBadRequest("path %q holds a control character", v)
	case !fs.ValidPath(p):
		return "", errBadRequest("path %q: empty, \".\" or \"..\" elements are not allowed", v)
	}
	return p, nil
}

// fsError maps the errors of a filesystem to statuses.
func fsError(err error) error {
	var he *httpError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &he):
		return err
	case errors.Is(err, fs.ErrNotExist):
		return errNotFound("%s", err)
	case errors.Is(err, fs.ErrInvalid):
		return errBadRequest("%s", err)
	case errors.Is(err, fstree.ErrCorrupt):
		return newError(http.StatusUnprocessableEntity, "corrupt", "%s", err)
	case errors.Is(err, files.ErrLimit):
		return newError(http.StatusRequestEntityTooLarge, "too_large", "%s", err)
	case errors.Is(err, context.DeadlineExceeded):
		return newError(http.StatusGatewayTimeout, "timeout", "%s", err)
	}
	return err
}

func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	b, err := s.browse(r, c, false)
	if err != nil {
		return nil, err
	}
	defer b.release()
	out := make([]VolumeView, len(b.sess.vols))
	for i := range b.sess.vols {
		out[i] = viewVolume(&b.sess.vols[i])
	}
	return out, nil
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	q := r.URL.Query()
	p, err := queryPath(q.Get("path"))
	if err != nil {
		return nil, err
	}
	limit, err := queryInt(r, "limit", defaultPageSize)
	if err != nil {
		return nil, err
	}
	if limit == 0 || limit > maxPageSize {
		return nil, errBadRequest("limit=%d: from 1 to %d", limit, maxPageSize)
	}
	after := q.Get("after")
	follow, statOnly := q.Get("follow") == "true", q.Get("stat") == "true"
	b, err := s.browse(r, c, true)
	if err != nil {
		return nil, err
	}
	defer b.release()
	ctx, cancel := context.WithTimeout(r.Context(), s.d.Browse.o.ListTimeout)
	defer cancel()

	stat := b.fsys.Lstat
	if follow {
		stat = b.fsys.Stat
	}
	info, err := stat(p)
	if err != nil {
		return nil, fsError(err)
	}
	out := Listing{File: s.fileView(b.fsys, path.Base(p), p, info)}
	if statOnly || !info.IsDir() {
		return out, nil
	}
	entries, err := b.fsys.ReadDir(p)
	if err != nil {
		if entries == nil {
			return nil, fsError(err)
		}
		out.Errors = append(out.Errors, err.Error())
	}
	// Entries are sorted by name: the page starts after the last name of
	// the previous one.
	start := 0
	for start < len(entries) && entries[start].Name() <= after && after != "" {
		start++
	}
	out.Entries = []FileView{}
	for _, d := range entries[start:] {
		if len(out.Entries) == int(limit) {
			out.More = true
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, fsError(fmt.Errorf("listing %s: %w", p, err))
		}
		child := path.Join(p, d.Name())
		ci, err := d.Info()
		if err != nil {
			out.Entries = append(out.Entries, FileView{Name: d.Name(), Path: child, Error: err.Error()})
			continue
		}
		out.Entries = append(out.Entries, s.fileView(b.fsys, d.Name(), child, ci))
	}
	return out, nil
}

// fileView shows a file, with its symlink target.
func (s *Server) fileView(fsys *fstree.FS, name, p string, info fs.FileInfo) FileView {
	m, ok := fstree.MetaOf(info)
	if !ok {
		m = &fstree.Meta{Mode: info.Mode(), Size: info.Size(), Mtime: info.ModTime()}
	}
	v := viewFile(name, p, m)
	if info.Mode().Type() == fs.ModeSymlink {
		target, err := fsys.ReadLink(p)
		if err != nil {
			v.Error = err.Error()
		}
		v.Target = target
	}
	return v
}

func (s *Server) fileContent(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	p, err := queryPath(r.URL.Query().Get("path"))
	if err != nil {
		return nil, err
	}
	b, err := s.browse(r, c, true)
	if err != nil {
		return nil, err
	}
	defer b.release()
	f, err := b.fsys.Open(p)
	if err != nil {
		return nil, fsError(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fsError(err)
	}
	ra, ok := f.(io.ReaderAt)
	if !info.Mode().IsRegular() || !ok {
		return nil, errBadRequest("%s is a %s, not a regular file", p, typeName(info.Mode()))
	}
	// A download that starts at the beginning is audited; the ranges that
	// follow it, which a client reading a large file asks for by the
	// hundred, are not.
	if rg := r.Header.Get("Range"); rg == "" || strings.HasPrefix(rg, "bytes=0-") {
		s.audit(c, "", "download file", b.target(p), "ok", fmt.Sprintf("%d bytes", info.Size()))
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", attachment(info.Name()))
	// The point cannot change: its path and the file's identity make a
	// strong validator, which lets a client resume with If-Range.
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d", b.point.ID, b.vol.ID, p, info.Size()))
	h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	http.ServeContent(w, r, "", info.ModTime(), newBlockReader(ra, info.Size()))
	return nil, nil
}

// attachment is a Content-Disposition that saves a download as name, with
// what a browser could misread as a path or a header taken out.
func attachment(name string) string {
	name = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f || c == '/' || c == '\\' || c == '"' || !unicode.IsPrint(c) && c != ' ' {
			return '_'
		}
		return c
	}, name)
	if name == "" || name == "." || name == ".." {
		name = "download"
	}
	if v := mime.FormatMediaType("attachment", map[string]string{"filename": name}); v != "" {
		return v
	}
	return "attachment"
}

func (s *Server) fileArchive(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	q := r.URL.Query()
	raw := q["path"]
	if len(raw) == 0 || len(raw) > maxArchivePaths {
		return nil, errBadRequest("give from 1 to %d path parameters", maxArchivePaths)
	}
	paths := make([]string, len(raw))
	for i, v := range raw {
		p, err := queryPath(v)
		if err != nil {
			return nil, err
		}
		paths[i] = p
	}
	format := q.Get("format")
	var write func(context.Context, io.Writer, fs.FS, []string, files.ArchiveOptions) (files.Summary, error)
	var ctype string
	switch format {
	case "", "tar":
		format, write, ctype = "tar", files.WriteTar, "application/x-tar"
	case "zip":
		write, ctype = files.WriteZip, "application/zip"
	default:
		return nil, errBadRequest("format=%q: want tar or zip", format)
	}
	b, err := s.browse(r, c, true)
	if err != nil {
		return nil, err
	}
	defer b.release()
	name := "files"
	if len(paths) == 1 && paths[0] != "." {
		name = path.Base(paths[0])
	}
	out := &lazyResponse{w: w, header: func(h http.Header) {
		h.Set("Content-Type", ctype)
		h.Set("Content-Disposition", attachment(name+"."+format))
	}}
	target := b.target(strings.Join(paths, ", "))
	sum, err := write(r.Context(), out, b.fsys, paths, files.ArchiveOptions{
		Limits: s.d.Browse.o.Archive, ErrorFile: archiveErrorFile})
	detail := fmt.Sprintf("%s: %d files, %d bytes", format, sum.Files, sum.Bytes)
	var pe files.PathError
	switch {
	case err == nil:
		s.audit(c, "", "download archive", target, "ok", detail)
	case errors.As(err, &pe) && sum.Failed > 0 && out.written:
		// Complete, with the failures listed in its error file.
		s.audit(c, "", "download archive", target, "partial", fmt.Sprintf("%s; %d paths failed: %v", detail, sum.Failed, err))
	case !out.written:
		s.audit(c, "", "download archive", target, "failed", err.Error())
		return nil, fsError(err)
	default:
		// The stream is cut short without its trailer, so that the client
		// sees it fail rather than take a truncated archive for whole.
		s.audit(c, "", "download archive", target, "failed", err.Error())
		s.log.Warn("archive cut short", "target", target, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil, nil
}

// lazyResponse sets a streamed response's headers at its first write, so
// that an error found before anything is written can still be a JSON
// error response.
type lazyResponse struct {
	w       http.ResponseWriter
	header  func(http.Header)
	written bool
}

func (l *lazyResponse) Write(p []byte) (int, error) {
	if !l.written {
		l.written = true
		l.header(l.w.Header())
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

func (s *Server) searchFiles(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	q := r.URL.Query()
	pattern := q.Get("pattern")
	switch {
	case pattern == "":
		return nil, errBadRequest("pattern is missing")
	case len(pattern) > maxSearchPattern:
		return nil, errBadRequest("pattern of %d bytes: at most %d", len(pattern), maxSearchPattern)
	case strings.ContainsFunc(pattern, func(c rune) bool { return c < 0x20 || c == 0x7f || c == '/' }):
		return nil, errBadRequest("pattern %q holds '/' or a control character: it matches names, not paths", pattern)
	}
	if _, err := path.Match(strings.ToLower(pattern), ""); err != nil {
		return nil, errBadRequest("pattern %q: %v", pattern, err)
	}
	root, err := queryPath(q.Get("path"))
	if err != nil {
		return nil, err
	}
	limit, err := queryInt(r, "limit", files.DefaultSearchLimit)
	if err != nil {
		return nil, err
	}
	if limit == 0 || limit > maxSearchLimit {
		return nil, errBadRequest("limit=%d: from 1 to %d", limit, maxSearchLimit)
	}
	b, err := s.browse(r, c, true)
	if err != nil {
		return nil, err
	}
	defer b.release()
	if _, err := b.fsys.Lstat(root); err != nil {
		return nil, fsError(err)
	}
	timeout := s.d.Browse.o.SearchTimeout
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	matches, err := files.Search(ctx, b.fsys, root, pattern, int(limit))
	out := SearchResult{Matches: make([]MatchView, len(matches)), Complete: len(matches) < int(limit)}
	for i, m := range matches {
		out.Matches[i] = MatchView{Path: m.Path, Type: typeName(m.Mode), Mode: fileapi.UnixMode(m.Mode), Size: m.Size, Mtime: m.ModTime}
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			out.Complete = false
			err = fmt.Errorf("the search stopped after %v: %w", timeout, err)
		}
		if r.Context().Err() != nil {
			return nil, r.Context().Err()
		}
		out.Errors = strings.Split(err.Error(), "\n")
	}
	return out, nil
}

// blockReader reads a file in blocks of a size that suits the store's
// chunks, whatever the size of the reads made of it (http.ServeContent
// copies 32 KiB at a time).
type blockReader struct {
	ra        io.ReaderAt
	size, off int64
	buf       []byte
	bufOff    int64 // offset of buf in the file
}

const contentBlock = 1 << 20

func newBlockReader(ra io.ReaderAt, size int64) *blockReader {
	return &blockReader{ra: ra, size: size}
}

func (b *blockReader) Read(p []byte) (int, error) {
	if b.off >= b.size {
		return 0, io.EOF
	}
	if b.off < b.bufOff || b.off >= b.bufOff+int64(len(b.buf)) {
		n := min(int64(contentBlock), b.size-b.off)
		if cap(b.buf) < int(n) {
			b.buf = make([]byte, contentBlock)
		}
		b.buf = b.buf[:n]
		m, err := b.ra.ReadAt(b.buf, b.off)
		if m < len(b.buf) {
			b.buf = b.buf[:0]
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		b.bufOff = b.off
	}
	n := copy(p, b.buf[b.off-b.bufOff:])
	b.off += int64(n)
	return n, nil
}

func (b *blockReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += b.off
	case io.SeekEnd:
		offset += b.size
	default:
		return 0, fmt.Errorf("seek: bad whence %d", whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek to negative offset %d", offset)
	}
	b.off = offset
	return offset, nil
}
