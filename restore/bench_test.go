package restore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/restore"
	"github.com/bulwarkbackup/bulwark/restore/files"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

// BenchmarkFileRestore restores one 10 MiB file from a point of a 4 GiB
// disk (GPT, ext4 holding 2.2 GiB of files) and reports how many bytes the
// restore read from the store per byte of the file: the target is below 3.
// Each iteration opens the store afresh, so that no chunk is cached from
// the one before; the backend's files are in the page cache after the
// first.
//
// The store is built once and kept in $TMPDIR/bulwark-file-bench-v1
// (about a minute, 2.2 GiB of disk); remove it to build it again.
func BenchmarkFileRestore(b *testing.B) {
	dir := filepath.Join(os.TempDir(), "bulwark-file-bench-v1")
	fx := loadFixture(b, dir, fixtureSpec{ImageSize: 4 << 30, Data: 2200 << 20, Seed: 1})
	b.SetBytes(fx.Size)
	var st restoreStats
	for b.Loop() {
		st = restoreOneFile(b, fx)
	}
	b.ReportMetric(float64(st.read)/float64(fx.Size), "read/size")
	b.ReportMetric(float64(st.loads), "loads/op")
	b.Logf("read %d bytes in %d loads: %d opening the store, %d more finding the volumes", st.read, st.loads, st.open, st.volumes)
}

// fixtureSpec says what image a fixture backs up.
type fixtureSpec struct {
	ImageSize int64 // apparent size of the sparse disk image
	Data      int64 // bytes of files besides the target
	Seed      uint64
}

// fixture is a store holding one point of a disk image with a GPT and an
// ext4 filesystem, and the file to restore from it.
type fixture struct {
	Store  string  `json:"-"` // the store's directory (a local backend)
	Point  blob.ID `json:"point"`
	Volume string  `json:"volume"`
	File   string  `json:"file"` // its path in the volume
	Size   int64   `json:"size"`
	SHA256 string  `json:"sha256"`
}

const (
	benchPassword = "bench"
	targetSize    = 10 << 20
	fixtureFile   = "fixture.json"
)

// loadFixture returns the fixture kept in dir, or builds it there.
func loadFixture(tb testing.TB, dir string, spec fixtureSpec) *fixture {
	tb.Helper()
	fx := &fixture{Store: filepath.Join(dir, "store")}
	if b, err := os.ReadFile(filepath.Join(dir, fixtureFile)); err == nil {
		if err := json.Unmarshal(b, fx); err != nil {
			tb.Fatal(err)
		}
		return fx
	}
	if err := os.RemoveAll(dir); err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	buildFixture(tb, dir, spec, fx)
	tb.Logf("fixture built in %v: %s", time.Since(start).Round(time.Millisecond), dir)
	b, err := json.Marshal(fx)
	if err != nil {
		tb.Fatal(err)
	}
	// Written last: a fixture exists once its description does.
	if err := os.WriteFile(filepath.Join(dir, fixtureFile), b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return fx
}

// buildFixture writes a source tree, makes the image from it with sgdisk
// and mke2fs -d, backs it up into a new store with the default parameters
// and removes the tree and the image.
func buildFixture(tb testing.TB, dir string, spec fixtureSpec, fx *fixture) {
	tb.Helper()
	src := filepath.Join(dir, "src")
	sum, err := writeTree(src, spec)
	if err != nil {
		tb.Fatal(err)
	}
	fx.File, fx.Size, fx.SHA256 = "d07/target.bin", targetSize, sum

	img := filepath.Join(dir, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(spec.ImageSize); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	// One partition from 1 MiB to 1 MiB before the end, where the backup
	// GPT is.
	const mib = 1 << 20
	last := (spec.ImageSize-mib)/512 - 1
	fstreetest.Run(tb, "sgdisk", "-n", "1:2048:"+strconv.FormatInt(last, 10), "-t", "1:8300", img)
	partSize := spec.ImageSize - 2*mib
	fstreetest.Run(tb, "mke2fs", "-F", "-q", "-t", "ext4", "-b", "4096", "-E", "offset="+strconv.Itoa(mib),
		"-d", src, img, strconv.FormatInt(partSize/4096, 10))
	fx.Volume = "d0p1"
	if err := os.RemoveAll(src); err != nil {
		tb.Fatal(err)
	}

	ctx := context.Background()
	be := backend.NewLocal(fx.Store)
	if err := chunkstore.Init(ctx, be, chunkstore.InitOptions{Password: []byte(benchPassword), KDF: crypto.KDFParams{Time: 1, Memory: 8 << 10, Threads: 1}}); err != nil {
		tb.Fatal(err)
	}
	s, err := chunkstore.Open(ctx, be, chunkstore.Options{Password: []byte(benchPassword)})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	f, err = os.Open(img)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	alloc, err := allocated(f, spec.ImageSize)
	if err != nil {
		tb.Fatal(err)
	}
	bk, err := s.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: "bench"}, Consistency: "image"})
	if err != nil {
		tb.Fatal(err)
	}
	defer bk.Close()
	if _, err := bk.AddDisk(ctx, chunkstore.DiskSpec{Label: img, Reader: f, Size: spec.ImageSize, Allocated: alloc}); err != nil {
		tb.Fatal(err)
	}
	p, err := bk.Commit(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	fx.Point = p.ID
	if err := os.Remove(img); err != nil {
		tb.Fatal(err)
	}
}

// writeTree writes spec.Data bytes of files under dir, half of them
// random and half hexadecimal text (which zstd halves), of sizes spread
// from 4 KiB to 32 MiB, with the 10 MiB random target among them. It
// returns the target's SHA-256.
func writeTree(dir string, spec fixtureSpec) (string, error) {
	rng := rand.New(rand.NewPCG(spec.Seed, 7))
	fill := rand.NewChaCha8([32]byte{byte(spec.Seed)})
	buf := make([]byte, 32<<20)
	var sum string
	var written int64
	for i := 0; written < spec.Data || sum == ""; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%16))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return "", err
		}
		name := filepath.Join(sub, fmt.Sprintf("f%04d", i))
		// Log-uniform sizes: many small files, most bytes in large ones.
		n := int(4<<10) << rng.IntN(14)
		n += rng.IntN(n)
		n = min(n, len(buf), int(max(spec.Data-written, 4<<10)))
		text := i%2 == 1
		if written >= spec.Data/2 && sum == "" {
			name, n, text = filepath.Join(dir, "d07", "target.bin"), targetSize, false
		}
		p := buf[:n]
		_, _ = fill.Read(p)
		if text {
			for j := range p {
				p[j] = "0123456789abcdef"[p[j]&15]
				if j%64 == 63 {
					p[j] = '\n'
				}
			}
		}
		if err := os.WriteFile(name, p, 0o644); err != nil {
			return "", err
		}
		if filepath.Base(name) == "target.bin" {
			h := sha256.Sum256(p)
			sum = hex.EncodeToString(h[:])
		} else {
			written += int64(n)
		}
	}
	return sum, nil
}

// allocated returns the areas of a sparse file that hold data.
func allocated(f *os.File, size int64) ([]diskmap.Area, error) {
	fd := int(f.Fd())
	var areas []diskmap.Area
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		areas = append(areas, diskmap.Area{Offset: data, Length: hole - data})
		off = hole
	}
	return areas, nil
}

// countingBackend counts what is loaded from a store's backend.
type countingBackend struct {
	backend.Backend
	read, loads atomic.Int64
}

func (c *countingBackend) Load(ctx context.Context, h backend.Handle, offset int64, length int) ([]byte, error) {
	b, err := c.Backend.Load(ctx, h, offset, length)
	c.read.Add(int64(len(b)))
	c.loads.Add(1)
	return b, err
}

// restoreStats is what restoring one file cost.
type restoreStats struct {
	read, loads int64
	// open and volumes are the bytes read by the time the store was open
	// and the point's volumes found.
	open, volumes int64
}

// restoreOneFile opens the fixture's store, finds the point's volumes,
// restores the file with files.Restore into a new directory and checks
// its SHA-256. It returns what was loaded from the store, opening it
// included.
func restoreOneFile(tb testing.TB, fx *fixture) restoreStats {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	be := &countingBackend{Backend: backend.NewLocal(fx.Store)}
	s, err := chunkstore.Open(ctx, be, chunkstore.Options{Password: []byte(benchPassword), IndexDir: filepath.Join(fx.Store, "index")})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	var st restoreStats
	st.open = be.read.Load()
	vols, err := restore.Volumes(ctx, s, fx.Point)
	if err != nil {
		tb.Fatal(err)
	}
	st.volumes = be.read.Load() - st.open
	v, err := restore.FindVolume(vols, fx.Volume)
	if err != nil {
		tb.Fatal(err)
	}
	fsys, err := v.Open()
	if err != nil {
		tb.Fatal(err)
	}
	target, err := os.MkdirTemp("", "bulwark-file-restore-")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(target)
	sum, err := files.Restore(ctx, fsys, []string{fx.File}, target, files.Options{})
	if err != nil {
		tb.Fatalf("restore %s: %v (%+v)", fx.File, err, sum.Errors)
	}
	st.read, st.loads = be.read.Load(), be.loads.Load()
	got, err := hashFile(filepath.Join(target, filepath.Base(fx.File)))
	if err != nil {
		tb.Fatal(err)
	}
	if got != fx.SHA256 {
		tb.Fatalf("restored %s has SHA-256 %s, want %s", fx.File, got, fx.SHA256)
	}
	return st
}

func hashFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
