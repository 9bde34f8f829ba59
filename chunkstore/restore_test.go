package chunkstore_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
)

// restoreImage is 48 MiB over two packs and several runs of each:
// random and compressible data, a zero gap, and at 32 MiB a copy of the
// first 4 MiB, which (starting a segment, as they do) are the same chunks
// written at two offsets.
func restoreImage() []byte {
	rng := rand.New(rand.NewPCG(21, 22))
	img := make([]byte, 48<<20)
	fill(rng, img[:16<<20])
	for i := 20 << 20; i < 30<<20; i++ {
		img[i] = "0123456789abcdef\n"[rng.IntN(17)]
	}
	copy(img[32<<20:], img[:4<<20])
	fill(rng, img[40<<20:44<<20])
	return img
}

// TestRestoreDiskPipeline restores a point whose chunks span several
// runs and packs, sparse and not, and checks the bytes and the progress.
func TestRestoreDiskPipeline(t *testing.T) {
	s, _ := newStore(t)
	img := restoreImage()
	p, _ := backup(t, s, bytes.NewReader(img), int64(len(img)), backupArgs{})
	for _, sparse := range []bool{true, false} {
		out := make(writerAt, len(img))
		if !sparse {
			for i := range out {
				out[i] = 0xaa // what a target held before: zeros must be written
			}
		}
		var mu sync.Mutex
		var last, total int64
		err := s.RestoreDisk(context.Background(), p.ID, 0, out, chunkstore.RestoreOptions{
			Sparse: sparse,
			Progress: func(done, all int64) {
				mu.Lock()
				last, total = max(last, done), all
				mu.Unlock()
			},
		})
		if err != nil {
			t.Fatalf("sparse %v: %v", sparse, err)
		}
		requireSame(t, "restore", img, out)
		if last != total {
			t.Errorf("sparse %v: progress ended at %d of %d", sparse, last, total)
		}
		if !sparse && total != int64(len(img)) {
			t.Errorf("restore of the whole disk counted %d bytes, want %d", total, len(img))
		}
	}
}

// failingWriter fails every write after the first n.
type failingWriter struct {
	w      writerAt
	n      atomic.Int64
	writes atomic.Int64
}

var errDiskFull = errors.New("disk full")

func (f *failingWriter) WriteAt(p []byte, off int64) (int, error) {
	if f.writes.Add(1) > f.n.Load() {
		return 0, errDiskFull
	}
	return f.w.WriteAt(p, off)
}

// TestRestoreDiskStops checks that a failing write and a cancelled
// context end a restore with their error, leaving no goroutine behind.
func TestRestoreDiskStops(t *testing.T) {
	s, _ := newStore(t)
	img := restoreImage()
	p, _ := backup(t, s, bytes.NewReader(img), int64(len(img)), backupArgs{})
	base := runtime.NumGoroutine()

	fw := &failingWriter{w: make(writerAt, len(img))}
	fw.n.Store(5)
	err := s.RestoreDisk(context.Background(), p.ID, 0, fw, chunkstore.RestoreOptions{Sparse: true})
	if !errors.Is(err, errDiskFull) {
		t.Errorf("restore to a failing writer: %v, want %v", err, errDiskFull)
	}
	waitGoroutines(t, base)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = s.RestoreDisk(ctx, p.ID, 0, make(writerAt, len(img)), chunkstore.RestoreOptions{
		Progress: func(done, _ int64) { cancel() },
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled restore: %v, want %v", err, context.Canceled)
	}
	waitGoroutines(t, base)
}

// waitGoroutines fails unless the goroutines are back to base within a
// second: those of a finished restore may still be returning.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > base; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines left, %d before the restore", runtime.NumGoroutine(), base)
			return
		}
	}
}
