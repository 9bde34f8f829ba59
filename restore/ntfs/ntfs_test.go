package ntfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

const (
	hugeSize   = 5<<30 + 12345 // past 4 GiB, sparse
	hugeDataAt = 4<<30 + 3<<20 + 100
)

// streams are the alternate data streams of ads.txt.
var streams = map[string][]byte{
	"alpha": []byte("first stream"),
	"beta":  randomBytes(7, 60000), // non-resident; xattrs stop at 64 KiB
}

// buildSource writes the tree that the images get.
func buildSource(t testing.TB, src string, entries int) {
	writeFile(t, filepath.Join(src, "hello.txt"), []byte("hello, world\n"))
	writeFile(t, filepath.Join(src, "empty"), nil)
	for i, n := range []int{1, 511, 700, 4097, 65537, 1<<20 + 3} {
		writeFile(t, filepath.Join(src, "odd", fmt.Sprintf("size-%d", n)), randomBytes(uint64(i), n))
	}
	writeFile(t, filepath.Join(src, "nested/a/b/c/deep.txt"), []byte("deep\n"))
	mkdirAll(t, filepath.Join(src, "nested/empty-dir"))
	for i := range entries {
		writeFile(t, filepath.Join(src, "many", fmt.Sprintf("entry-%04d-ünïcödé.txt", i)), fmt.Appendf(nil, "entry %d\n", i))
	}
	writeFile(t, filepath.Join(src, "日本語.txt"), []byte("にほんご\n"))
	writeFile(t, filepath.Join(src, "emoji-😀.txt"), []byte("🙂\n"))
	writeFile(t, filepath.Join(src, "Ünïcødé dir/файл"), []byte("данные\n"))

	// A hole and data at the end.
	sparse := filepath.Join(src, "sparse.bin")
	writeFile(t, sparse, nil)
	if err := os.Truncate(sparse, 3<<20); err != nil {
		t.Fatal(err)
	}
	appendAt(t, sparse, 3<<20, []byte("the end"))
	huge := filepath.Join(src, "huge.bin")
	writeFile(t, huge, nil)
	if err := os.Truncate(huge, hugeSize); err != nil {
		t.Fatal(err)
	}
	appendAt(t, huge, hugeDataAt, []byte("far away"))
	appendAt(t, huge, hugeSize-5, []byte("tail!"))

	writeFile(t, filepath.Join(src, "links/hl1"), []byte("one file, two names\n"))
	if err := os.Link(filepath.Join(src, "links/hl1"), filepath.Join(src, "nested/hl2")); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"links/rel":      "../hello.txt",
		"links/abs":      "/nested/a",
		"links/dangling": "nowhere",
		"links/dir":      "../nested",
	} {
		if err := os.Symlink(target, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(src, "ads.txt"), []byte("main stream\n"))
	writeFile(t, filepath.Join(src, "readonly.txt"), []byte("read me only\n"))
	writeFile(t, filepath.Join(src, "hidden.txt"), []byte("you do not see me\n"))
}

// compressedFiles are written into a compressed directory: text, random
// data, a sparse file, and three files written in interleaved appends so
// that their clusters, compression units among them, are fragmented.
func compressedFiles() map[string][]byte {
	return map[string][]byte{
		"comp/text.txt":    textBytes(1, 1<<20),
		"comp/random.bin":  randomBytes(2, 300000),
		"comp/small.txt":   []byte("small and resident\n"),
		"comp/frag-a.txt":  textBytes(3, 400000),
		"comp/frag-b.bin":  randomBytes(4, 200000),
		"comp/frag-c.txt":  textBytes(5, 300001),
		"comp/sparse.bin":  nil, // made below
		"comp/sub/in.txt":  textBytes(6, 100000),
		"comp/hole-in.bin": nil,
	}
}

func appendAt(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// populate copies src into a fresh NTFS image through ntfs-3g, then adds
// what cp cannot: compressed files, streams, attributes and Windows
// reparse points, each mirrored in src. It returns the image.
func populate(t testing.TB, img, src string, compress bool) {
	mnt, unmount := mount(t, img, "compression")
	fstreetest.Run(t, "cp", "-R", "--no-dereference", "--preserve=timestamps,links", "--sparse=always", src+"/.", mnt)
	if compress {
		writeCompressed(t, src, mnt)
	}
	for name, data := range streams {
		setxattr(t, filepath.Join(mnt, "ads.txt"), "user."+name, data)
	}
	// Windows links: an empty file or directory made a reparse point, and
	// the symlink that is read back in the source.
	for _, l := range []struct {
		name, target string
		data         []byte
		dir          bool
	}{
		{"links/win-rel", "../hello.txt", windowsLink(tagSymlink, `..\hello.txt`, symlinkFlagRelative), false},
		{"links/win-abs", "/nested/a", windowsLink(tagSymlink, `\??\C:\nested\a`, 0), false},
		{"links/junction", "/nested", windowsLink(tagMountPoint, `\??\C:\nested`, 0), true},
	} {
		p := filepath.Join(mnt, l.name)
		if l.dir {
			mkdirAll(t, p)
		} else {
			writeFile(t, p, nil)
		}
		setReparse(t, p, l.data)
		if err := os.Symlink(l.target, filepath.Join(src, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	// Times last: writing streams and reparse points changes them.
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(p)) == "many" {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(info.ModTime().UnixNano()), unix.NsecToTimespec(info.ModTime().UnixNano())}
		err = unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(mnt, rel), ts, unix.AT_SYMLINK_NOFOLLOW)
		if strings.HasPrefix(rel, "links/win-") || rel == "links/junction" {
			// ntfs-3g sets the times of a link whose tag it does
			// not map, and then fails to stat it.
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	setAttrib(t, filepath.Join(mnt, "readonly.txt"), fstree.AttrReadOnly|fstree.AttrArchive)
	setAttrib(t, filepath.Join(mnt, "hidden.txt"), fstree.AttrHidden|fstree.AttrArchive)
	unmount()
}

// writeCompressed writes compressedFiles into a directory marked for
// compression in the mount and into src.
func writeCompressed(t testing.TB, src, mnt string) {
	mkdirAll(t, filepath.Join(mnt, "comp"))
	setAttrib(t, filepath.Join(mnt, "comp"), fstree.AttrCompressed)
	mkdirAll(t, filepath.Join(mnt, "comp/sub"))
	files := compressedFiles()
	for name, data := range files {
		writeFile(t, filepath.Join(src, name), data)
		if !slices.Contains([]string{"comp/frag-a.txt", "comp/frag-b.bin", "comp/frag-c.txt"}, name) {
			writeFile(t, filepath.Join(mnt, name), data)
		}
	}
	// Interleaved appends of odd sizes make the clusters of each
	// compression unit of each file come from several runs.
	var fds []*os.File
	var rest [][]byte
	for _, name := range []string{"comp/frag-a.txt", "comp/frag-b.bin", "comp/frag-c.txt"} {
		f, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, f)
		rest = append(rest, files[name])
	}
	for step := 0; ; step++ {
		left := false
		for i, f := range fds {
			n := min(len(rest[i]), 3000+step%7*1000)
			if n == 0 {
				continue
			}
			left = true
			if _, err := f.Write(rest[i][:n]); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			rest[i] = rest[i][n:]
		}
		if !left {
			break
		}
	}
	for _, f := range fds {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A compressed file with whole units of holes, and one with a hole
	// inside a unit.
	for _, p := range []string{src, mnt} {
		appendAt(t, filepath.Join(p, "comp/sparse.bin"), 1<<20, []byte("after a megabyte of nothing"))
		appendAt(t, filepath.Join(p, "comp/hole-in.bin"), 0, textBytes(8, 10000))
		appendAt(t, filepath.Join(p, "comp/hole-in.bin"), 50000, textBytes(9, 10000))
	}
}

var compareOptions = fstreetest.CompareOptions{
	Mtime:   time.Microsecond, // NTFS keeps 100 ns
	Links:   true,
	Symlink: true,
	Skip:    func(p string) bool { return p == "huge.bin" },
}

func TestImages(t *testing.T) {
	for _, tc := range []struct {
		sector, cluster int
		entries         int
		compress        bool
	}{
		{512, 4096, 2000, true},
		{4096, 4096, 300, true},
		{512, 512, 300, true},
		{512, 16384, 300, false}, // index blocks smaller than a cluster; no compression past 4 KiB
	} {
		t.Run(fmt.Sprintf("s%d-c%d", tc.sector, tc.cluster), func(t *testing.T) {
			src := t.TempDir()
			buildSource(t, src, tc.entries)
			img := mkntfs(t, 64, tc.sector, tc.cluster, "Bulwark")
			populate(t, img, src, tc.compress)

			r, cr := openImage(t, img)
			fsys := fstree.New(r)
			if got := fsys.Type(); got != "ntfs" {
				t.Errorf("type %q", got)
			}
			if got := fsys.Label(); got != "Bulwark" {
				t.Errorf("label %q, want Bulwark", got)
			}
			fstreetest.Compare(t, fsys, src, compareOptions)
			checkMeta(t, fsys)
			checkStreams(t, fsys)
			checkHuge(t, fsys, cr)
			if tc.compress {
				checkCompressed(t, fsys)
			}
		})
	}
}

// checkMeta checks what Compare does not: attributes, modes, links.
func checkMeta(t *testing.T, fsys *fstree.FS) {
	t.Helper()
	for _, c := range []struct {
		name       string
		attr, not  uint32
		mode       fs.FileMode
		nlink      uint32
		checkNlink bool
	}{
		{name: "readonly.txt", attr: fstree.AttrReadOnly | fstree.AttrArchive, mode: 0o444},
		{name: "hidden.txt", attr: fstree.AttrHidden, not: fstree.AttrReadOnly, mode: 0o644},
		{name: "hello.txt", not: fstree.AttrHidden | fstree.AttrReadOnly, mode: 0o644, nlink: 1, checkNlink: true},
		{name: "nested", attr: fstree.AttrDirectory, mode: fs.ModeDir | 0o755},
		{name: "links/hl1", mode: 0o644, nlink: 2, checkNlink: true},
		{name: "links/junction", attr: fstree.AttrReparse, mode: fs.ModeSymlink | 0o777},
	} {
		m := lstatMeta(t, fsys, c.name)
		if m.Attributes&c.attr != c.attr || m.Attributes&c.not != 0 {
			t.Errorf("%s: attributes %#x, want %#x and not %#x", c.name, m.Attributes, c.attr, c.not)
		}
		if m.Mode != c.mode {
			t.Errorf("%s: mode %v, want %v", c.name, m.Mode, c.mode)
		}
		if c.checkNlink && m.Nlink != c.nlink {
			t.Errorf("%s: %d links, want %d", c.name, m.Nlink, c.nlink)
		}
		if m.HasOwner || m.Btime.IsZero() || m.Ctime.IsZero() || m.Atime.IsZero() {
			t.Errorf("%s: owner %v, times %v %v %v", c.name, m.HasOwner, m.Btime, m.Ctime, m.Atime)
		}
	}
	if a, b := lstatMeta(t, fsys, "links/hl1"), lstatMeta(t, fsys, "nested/hl2"); a.Inode != b.Inode || a.Inode < firstUserRecord {
		t.Errorf("hard links on records %d and %d", a.Inode, b.Inode)
	}
	// The metafiles stay hidden, the links resolve inside the volume.
	root, err := fsys.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range root {
		if e.Name()[0] == '$' || e.Name() == "." {
			t.Errorf("root lists %q", e.Name())
		}
	}
	for link, want := range map[string]string{"links/win-rel": "hello.txt", "links/junction/a/b/c/deep.txt": "deep.txt", "links/win-abs/b": "b"} {
		if info, err := fsys.Stat(link); err != nil || info.Name() != want {
			t.Errorf("stat %s: %v, %v", link, info, err)
		}
	}
}

func checkStreams(t *testing.T, fsys *fstree.FS) {
	t.Helper()
	m := lstatMeta(t, fsys, "ads.txt")
	want := []fstree.Stream{{Name: "alpha", Size: int64(len(streams["alpha"]))}, {Name: "beta", Size: int64(len(streams["beta"]))}}
	if !slices.Equal(m.Streams, want) {
		t.Errorf("streams %v, want %v", m.Streams, want)
	}
	if m := lstatMeta(t, fsys, "hello.txt"); len(m.Streams) != 0 {
		t.Errorf("hello.txt has streams %v", m.Streams)
	}
	node := loadNode(t, fsys, "ads.txt")
	sr := fsys.Reader().(fstree.StreamReader)
	for name, data := range streams {
		ra, size, err := sr.Stream(node, name)
		if err != nil || size != int64(len(data)) {
			t.Fatalf("stream %s: size %d, %v", name, size, err)
		}
		got := make([]byte, size)
		if n, err := ra.ReadAt(got, 0); n != len(got) || (err != nil && err != io.EOF) {
			t.Fatalf("stream %s: read %d: %v", name, n, err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("stream %s differs", name)
		}
	}
	if _, _, err := sr.Stream(node, "gamma"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing stream: %v", err)
	}
}

// loadNode finds a node by walking its path through the reader.
func loadNode(t testing.TB, fsys *fstree.FS, name string) fstree.Node {
	t.Helper()
	r := fsys.Reader()
	n, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	for elem := range bytes.SplitSeq([]byte(name), []byte("/")) {
		entries, err := r.ReadDir(n)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(entries, func(e fstree.Entry) bool { return e.Name == string(elem) })
		if i < 0 {
			t.Fatalf("%s: no %s", name, elem)
		}
		if n, err = entries[i].Load(); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// checkHuge reads a sparse file past 4 GiB, whose holes cost no reads.
func checkHuge(t *testing.T, fsys *fstree.FS, cr *fstreetest.CountingReaderAt) {
	t.Helper()
	f, err := fsys.Open("huge.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ra := f.(io.ReaderAt)
	if info, _ := f.Stat(); info.Size() != hugeSize {
		t.Fatalf("huge.bin: size %d", info.Size())
	}
	buf := make([]byte, 1<<20)
	before := cr.Reads.Load()
	for _, off := range []int64{0, 1 << 30, 4<<30 - 512<<10, hugeDataAt&^0xffff - 1<<20} {
		if n, err := ra.ReadAt(buf, off); n != len(buf) || err != nil {
			t.Fatalf("huge.bin at %d: %d, %v", off, n, err)
		}
		if !bytes.Equal(buf, make([]byte, len(buf))) {
			t.Errorf("huge.bin: a hole at %d is not zeros", off)
		}
	}
	if n := cr.Reads.Load() - before; n != 0 {
		t.Errorf("reading holes read the volume %d times", n)
	}
	for off, want := range map[int64]string{hugeDataAt: "far away", hugeSize - 5: "tail!"} {
		got := make([]byte, len(want))
		if _, err := ra.ReadAt(got, off); (err != nil && err != io.EOF) || string(got) != want {
			t.Errorf("huge.bin at %d: %q, %v", off, got, err)
		}
	}
}

// checkCompressed checks that the compressed files are compressed.
func checkCompressed(t *testing.T, fsys *fstree.FS) {
	t.Helper()
	for name, data := range compressedFiles() {
		n := loadNode(t, fsys, name).(*node)
		if n.meta.Attributes&fstree.AttrCompressed == 0 {
			t.Errorf("%s: attributes %#x, not compressed", name, n.meta.Attributes)
		}
		if len(data) > 4096 && (n.data == nil || n.data.resident || !n.data.compressed()) {
			t.Errorf("%s: data not compressed", name)
		}
	}
}

// TestCompressedFragmented reads compressed files whose compression units
// lie in several runs: written where the free space is single clusters.
func TestCompressedFragmented(t *testing.T) {
	img := mkntfs(t, 8, 512, 4096, "frag")
	src := t.TempDir()
	mnt, unmount := mount(t, img, "compression")
	var fill []string
	for i := 0; ; i++ {
		name := fmt.Sprintf("fill-%04d", i)
		if err := os.WriteFile(filepath.Join(mnt, name), randomBytes(uint64(i), 4096), 0o644); err != nil {
			_ = os.Remove(filepath.Join(mnt, name))
			break
		}
		fill = append(fill, name)
	}
	// Keeping every third file leaves holes of two clusters.
	for i, name := range fill {
		if i%3 != 0 {
			if err := os.Remove(filepath.Join(mnt, name)); err != nil {
				t.Fatal(err)
			}
		} else {
			writeFile(t, filepath.Join(src, name), randomBytes(uint64(i), 4096))
		}
	}
	mkdirAll(t, filepath.Join(mnt, "comp"))
	setAttrib(t, filepath.Join(mnt, "comp"), fstree.AttrCompressed)
	files := map[string][]byte{
		"comp/text.txt":  textBytes(1, 500000),
		"comp/mixed.bin": append(textBytes(2, 100000), randomBytes(3, 20000)...),
	}
	for name, data := range files {
		writeFile(t, filepath.Join(src, name), data)
		writeFile(t, filepath.Join(mnt, name), data)
	}
	unmount()

	r, _ := openImage(t, img)
	fsys := fstree.New(r)
	fstreetest.Compare(t, fsys, src, fstreetest.CompareOptions{Links: true})
	spanning := 0
	for name := range files {
		n := loadNode(t, fsys, name).(*node)
		if n.data == nil || !n.data.compressed() {
			t.Fatalf("%s is not compressed", name)
		}
		spanning += unitsAcrossRuns(n.data)
	}
	t.Logf("%d of %d files kept, %d compressed units span several runs", len(fill)/3, len(fill), spanning)
	if spanning == 0 {
		t.Errorf("no compressed unit spans two runs: the test does not test them")
	}
}

// unitsAcrossRuns counts the compressed units whose data lies in more than
// one run.
func unitsAcrossRuns(d *dataAttr) int {
	clusters := int64(1) << d.compUnit
	count := 0
	for first := int64(0); first < runLength(d.runs); first += clusters {
		runs := 0
		holes := false
		for _, rn := range d.runs {
			if rn.vcn+rn.n <= first || rn.vcn >= first+clusters {
				continue
			}
			if rn.sparse() {
				holes = true
			} else {
				runs++
			}
		}
		if holes && runs > 1 {
			count++
		}
	}
	return count
}

// TestNtfscp makes an image without mounting it: mkntfs, then ntfscp.
func TestNtfscp(t *testing.T) {
	src := t.TempDir()
	files := map[string][]byte{
		"tiny.txt":   []byte("tiny\n"),
		"medium.bin": randomBytes(11, 300000),
		"text.txt":   textBytes(12, 70000),
	}
	img := mkntfs(t, 8, 512, 4096, "ntfscp")
	for name, data := range files {
		writeFile(t, filepath.Join(src, name), data)
		fstreetest.Run(t, "ntfscp", "-f", img, filepath.Join(src, name), name)
	}
	r, _ := openImage(t, img)
	fstreetest.Compare(t, fstree.New(r), src, fstreetest.CompareOptions{})
}

// TestWSLSymlink reads the symlinks ntfs-3g makes as WSL reparse points.
func TestWSLSymlink(t *testing.T) {
	img := mkntfs(t, 8, 512, 4096, "wsl")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "dir/file"), []byte("x"))
	for name, target := range map[string]string{"rel": "dir/file", "abs": "/dir", "up": "../dir/file"} {
		if err := os.Symlink(target, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	mnt, unmount := mount(t, img, "special_files=wsl")
	fstreetest.Run(t, "cp", "-R", "--no-dereference", "--preserve=timestamps", src+"/.", mnt)
	unmount()
	r, _ := openImage(t, img)
	fsys := fstree.New(r)
	fstreetest.Compare(t, fsys, src, fstreetest.CompareOptions{Mtime: time.Microsecond, Symlink: true})
	if m := lstatMeta(t, fsys, "rel"); m.Attributes&fstree.AttrReparse == 0 {
		t.Errorf("rel: attributes %#x: not a reparse point, the test does not test WSL links", m.Attributes)
	}
}

// TestConcurrent reads files, streams and directories of one reader from
// many goroutines; run it with -race.
func TestConcurrent(t *testing.T) {
	src := t.TempDir()
	buildSource(t, src, 300)
	img := mkntfs(t, 32, 512, 4096, "race")
	populate(t, img, src, true)
	r, _ := openImage(t, img)
	fsys := fstree.New(r)
	var want []string
	var sums []string
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && p != "huge.bin" {
			sum, err := fstreetest.HashFile(fsys, p)
			if err != nil {
				t.Fatal(err)
			}
			want, sums = append(want, p), append(sums, sum)
		}
		return nil
	})
	if len(want) < 300 {
		t.Fatalf("only %d files", len(want))
	}
	node := loadNode(t, fsys, "ads.txt")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(want); i += 3 {
				if sum, err := fstreetest.HashFile(fsys, want[i]); err != nil || sum != sums[i] {
					t.Errorf("%s: %v", want[i], err)
				}
				if g%2 == 0 {
					if _, err := fsys.ReadDir(filepath.Dir(want[i])); err != nil {
						t.Error(err)
					}
				}
			}
			ra, size, err := r.Stream(node, "beta")
			if err != nil {
				t.Error(err)
				return
			}
			buf := make([]byte, size)
			if _, err := ra.ReadAt(buf, 0); err != nil && err != io.EOF || !bytes.Equal(buf, streams["beta"]) {
				t.Errorf("stream beta: %v", err)
			}
		})
	}
	wg.Wait()
}

func TestUnrecognized(t *testing.T) {
	for _, size := range []int64{0, 100, 1 << 20} {
		if _, err := Open(bytes.NewReader(make([]byte, size)), size); !errors.Is(err, fstree.ErrUnrecognized) {
			t.Errorf("%d zero bytes: %v", size, err)
		}
	}
}

// TestAttributeList reads files whose attributes overflow their MFT
// record into extension records (many names, many streams), and a file of
// many runs.
func TestAttributeList(t *testing.T) {
	img := mkntfs(t, 8, 512, 4096, "attrlist")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "target"), []byte("many names\n"))
	for i := range 40 {
		name := fmt.Sprintf("a-hard-link-with-a-rather-long-name-to-fill-the-record-%02d", i)
		if err := os.Link(filepath.Join(src, "target"), filepath.Join(src, "links", name)); err != nil {
			mkdirAll(t, filepath.Join(src, "links"))
			if err := os.Link(filepath.Join(src, "target"), filepath.Join(src, "links", name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFile(t, filepath.Join(src, "streams"), []byte("many streams\n"))
	mnt, unmount := mount(t, img)
	fstreetest.Run(t, "cp", "-R", "--preserve=links", src+"/.", mnt)
	want := map[string][]byte{}
	for i := range 40 {
		name := fmt.Sprintf("stream-%02d", i)
		want[name] = randomBytes(uint64(i), 300)
		setxattr(t, filepath.Join(mnt, "streams"), "user."+name, want[name])
	}
	// A file written where the free space is in holes has many runs.
	var fill []string
	for i := 0; ; i++ {
		name := fmt.Sprintf("fill-%04d", i)
		if err := os.WriteFile(filepath.Join(mnt, name), randomBytes(uint64(i), 4096), 0o644); err != nil {
			_ = os.Remove(filepath.Join(mnt, name))
			break
		}
		fill = append(fill, name)
	}
	for i, name := range fill {
		if i%2 == 0 {
			if err := os.Remove(filepath.Join(mnt, name)); err != nil {
				t.Fatal(err)
			}
		} else {
			writeFile(t, filepath.Join(src, name), randomBytes(uint64(i), 4096))
		}
	}
	frag := randomBytes(99, len(fill)/2*4096*3/4)
	writeFile(t, filepath.Join(mnt, "frag"), frag)
	writeFile(t, filepath.Join(src, "frag"), frag)
	unmount()

	r, _ := openImage(t, img)
	fsys := fstree.New(r)
	fstreetest.Compare(t, fsys, src, fstreetest.CompareOptions{Links: true})
	for _, name := range []string{"target", "streams"} {
		if n := loadNode(t, fsys, name).(*node); n.records < 2 {
			t.Errorf("%s: %d record(s): the test does not test attribute lists", name, n.records)
		}
	}
	if n := loadNode(t, fsys, "frag").(*node); len(n.data.runs) < 10 {
		t.Errorf("frag: %d runs: the test does not test fragmented files", len(n.data.runs))
	}
	if m := lstatMeta(t, fsys, "target"); m.Nlink != 41 {
		t.Errorf("target: %d links, want 41", m.Nlink)
	}
	node := loadNode(t, fsys, "streams")
	if got := len(node.Meta().Streams); got != len(want) {
		t.Errorf("%d streams, want %d", got, len(want))
	}
	for name, data := range want {
		ra, size, err := r.Stream(node, name)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size)
		if _, err := ra.ReadAt(got, 0); (err != nil && err != io.EOF) || !bytes.Equal(got, data) {
			t.Errorf("stream %s: %v", name, err)
		}
	}
}
