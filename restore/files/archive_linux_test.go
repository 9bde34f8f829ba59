//go:build linux

package files

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// archived is an entry read back from an archive.
type archived struct {
	mode     fs.FileMode
	mtime    time.Time
	uid, gid int
	sum      string
	link     string // symlink target or, in tar, hard link's first name
	hard     bool
}

// archiveSource makes a tree to archive, with a long Unicode name that
// needs PAX headers in tar.
func archiveSource(t *testing.T) (base string) {
	base, outside := t.TempDir(), t.TempDir()
	makeTree(t, filepath.Join(base, "src"), outside)
	long := filepath.Join(base, "src", strings.Repeat("ü", 60)+".txt")
	writeFile(t, long, []byte("long name"), 0o644)
	os.Chtimes(long, testTime, testTime)
	return base
}

// compareArchive checks the entries read back against the source tree
// under base/src.
func compareArchive(t *testing.T, base string, got map[string]archived, format string) {
	t.Helper()
	seen := map[uint64]string{}
	n := 0
	filepath.WalkDir(filepath.Join(base, "src"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		n++
		rel, _ := filepath.Rel(base, p)
		info, _ := os.Lstat(p)
		st := info.Sys().(*syscall.Stat_t)
		a, ok := got[rel]
		if !ok {
			t.Errorf("%s: %s: missing", format, rel)
			return nil
		}
		wantMtime := info.ModTime()
		if format == "zip" {
			wantMtime = wantMtime.Truncate(time.Second)
		}
		if a.mode != info.Mode() || (info.Mode().Type() != fs.ModeSymlink && !a.mtime.Equal(wantMtime)) {
			t.Errorf("%s: %s: %v %v, want %v %v", format, rel, a.mode, a.mtime, info.Mode(), wantMtime)
		}
		if format == "tar" && (a.uid != int(st.Uid) || a.gid != int(st.Gid)) {
			t.Errorf("%s: %s: owner %d:%d, want %d:%d", format, rel, a.uid, a.gid, st.Uid, st.Gid)
		}
		switch {
		case info.Mode().Type() == fs.ModeSymlink:
			if target, _ := os.Readlink(p); a.link != target {
				t.Errorf("%s: %s: symlink to %q, want %q", format, rel, a.link, target)
			}
		case info.Mode().IsRegular():
			first, linked := seen[st.Ino]
			if !linked {
				seen[st.Ino] = rel
			}
			switch {
			case format == "tar" && linked:
				if !a.hard || a.link != first {
					t.Errorf("%s: %s: %+v, want a hard link to %s", format, rel, a, first)
				}
			case a.sum != hashFile(t, p):
				t.Errorf("%s: %s: contents differ", format, rel)
			}
		}
		return nil
	})
	if len(got) != n {
		t.Errorf("%s: %d entries, want %d", format, len(got), n)
	}
}

func TestWriteTar(t *testing.T) {
	base := archiveSource(t)
	var buf bytes.Buffer
	sum, err := WriteTar(context.Background(), &buf, os.DirFS(base), []string{"src"}, ArchiveOptions{})
	if err != nil || sum.Files != 10 || sum.HardLinks != 1 || sum.Symlinks != 4 || sum.Dirs != 9 {
		t.Fatalf("%+v, %v", sum, err)
	}
	got := map[string]archived{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		got[name] = archived{mode: h.FileInfo().Mode(), mtime: h.ModTime, uid: h.Uid, gid: h.Gid,
			sum: sha(b), link: h.Linkname, hard: h.Typeflag == tar.TypeLink}
	}
	compareArchive(t, base, got, "tar")
}

func TestWriteZip(t *testing.T) {
	base := archiveSource(t)
	var buf bytes.Buffer
	sum, err := WriteZip(context.Background(), &buf, os.DirFS(base), []string{"src"}, ArchiveOptions{})
	if err != nil || sum.Files != 11 || sum.HardLinks != 0 || sum.Symlinks != 4 || sum.Dirs != 9 {
		t.Fatalf("%+v, %v", sum, err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]archived{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		a := archived{mode: f.Mode(), mtime: f.Modified, sum: sha(b)}
		if f.Mode().Type() == fs.ModeSymlink {
			a.link = string(b)
		}
		got[strings.TrimSuffix(f.Name, "/")] = a
		ascii := strings.IndexFunc(f.Name, func(r rune) bool { return r >= 0x80 }) < 0
		if f.NonUTF8 || (f.Flags&0x800 != 0) == ascii {
			t.Errorf("%s: UTF-8 flag %v", f.Name, f.Flags&0x800 != 0)
		}
	}
	compareArchive(t, base, got, "zip")

	// Stored, the contents read back alike.
	buf.Reset()
	if _, err := WriteZip(context.Background(), &buf, os.DirFS(base), []string{"src/ünïcødé"}, ArchiveOptions{Store: true}); err != nil {
		t.Fatal(err)
	}
	zr, err = zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil || len(zr.File) != 3 || zr.File[1].Method != zip.Store {
		t.Fatalf("stored zip: %v, %+v", err, zr.File)
	}
}

func TestArchiveHostile(t *testing.T) {
	loop := fstreetest.MemDir(fstreetest.Named("f", fstreetest.MemFile("f")))
	loop.Children = append(loop.Children, fstreetest.Named("again", loop))
	fsys := memFS(fstreetest.Named("d", fstreetest.MemDir(
		fstreetest.Named("loop", loop),
		fstreetest.Named("CON", fstreetest.MemFile("con")),
		fstreetest.Named("up", fstreetest.MemLink("../../../../etc/passwd")),
	)))
	for _, format := range []string{"tar", "zip"} {
		write := WriteTar
		if format == "zip" {
			write = WriteZip
		}
		var buf bytes.Buffer
		sum, err := write(context.Background(), &buf, fsys, []string{"d"}, ArchiveOptions{GOOS: "windows", ErrorFile: "ERRORS.txt"})
		if err == nil || sum.Failed != 2 || sum.Files != 1 || sum.Symlinks != 1 {
			t.Fatalf("%s: %+v, %v; want a loop and a name refused", format, sum, err)
		}
		var names []string
		var errorFile string
		if format == "tar" {
			tr := tar.NewReader(&buf)
			for h, err := tr.Next(); err == nil; h, err = tr.Next() {
				names = append(names, h.Name)
				if h.Name == "ERRORS.txt" {
					b, _ := io.ReadAll(tr)
					errorFile = string(b)
				}
			}
		} else {
			zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range zr.File {
				names = append(names, f.Name)
				if f.Name == "ERRORS.txt" {
					rc, _ := f.Open()
					b, _ := io.ReadAll(rc)
					errorFile = string(b)
				}
			}
		}
		if strings.Join(names, ",") != "d/,d/loop/,d/loop/f,d/up,ERRORS.txt" {
			t.Errorf("%s: entries %q", format, names)
		}
		if !strings.Contains(errorFile, "d/CON") || !strings.Contains(errorFile, "d/loop/again") {
			t.Errorf("%s: the error file holds %q", format, errorFile)
		}
	}
}

// TestTarMeta checks what only a filesystem reader gives: access and
// change times, owners without a host's stat.
func TestTarMeta(t *testing.T) {
	f := fstreetest.MemFile("data")
	f.Info.Mode |= fs.ModeSetuid
	f.Info.HasOwner, f.Info.UID, f.Info.GID = true, 1234, 5678
	f.Info.Mtime, f.Info.Atime, f.Info.Ctime = testTime, testTime.Add(time.Second), testTime.Add(time.Minute)
	var buf bytes.Buffer
	if _, err := WriteTar(context.Background(), &buf, memFS(fstreetest.Named("f", f)), []string{"f"}, ArchiveOptions{}); err != nil {
		t.Fatal(err)
	}
	h, err := tar.NewReader(&buf).Next()
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "f" || h.FileInfo().Mode() != f.Info.Mode || h.Uid != 1234 || h.Gid != 5678 ||
		!h.ModTime.Equal(f.Info.Mtime) || !h.AccessTime.Equal(f.Info.Atime) || !h.ChangeTime.Equal(f.Info.Ctime) {
		t.Errorf("header %+v, want the file's metadata %+v", h, f.Info)
	}
}

func TestArchiveCancelAndLimits(t *testing.T) {
	base := t.TempDir()
	writeFile(t, filepath.Join(base, "d", "big"), randomData(5<<20, 3), 0o644)
	for _, write := range []func(context.Context, io.Writer, fs.FS, []string, ArchiveOptions) (Summary, error){WriteTar, WriteZip} {
		ctx, cancel := context.WithCancel(context.Background())
		fsys := &cancelFS{FS: os.DirFS(base), after: 1 << 20, cancel: cancel}
		var buf bytes.Buffer
		if _, err := write(ctx, &buf, fsys, []string{"d"}, ArchiveOptions{}); !errors.Is(err, context.Canceled) {
			t.Errorf("%v, want context.Canceled", err)
		}
		cancel()
		if buf.Len() > 3<<20 {
			t.Errorf("%d bytes written after the cancel", buf.Len())
		}
		buf.Reset()
		if _, err := write(context.Background(), &buf, os.DirFS(base), []string{"d"}, ArchiveOptions{Limits: Limits{MaxBytes: 1 << 20}}); !errors.Is(err, ErrLimit) || buf.Len() != 0 {
			t.Errorf("%v with %d bytes written, want ErrLimit before anything", err, buf.Len())
		}
	}
}
