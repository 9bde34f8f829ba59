package chunkstore_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestDiskReaderConcurrentRandomReads reads a point's disk from several
// goroutines at random offsets and lengths, across chunk edges, zero gaps
// and the end of the disk, and compares with the image.
func TestDiskReaderConcurrentRandomReads(t *testing.T) {
	s, _ := newStore(t)
	rng := rand.New(rand.NewPCG(11, 12))
	const size = 40<<20 + 333
	img := make([]byte, size)
	fill(rng, img[1<<20:9<<20])
	fill(rng, img[20<<20:21<<20])
	fill(rng, img[size-5000:])
	p, _ := backup(t, s, bytes.NewReader(img), size, backupArgs{})
	r, err := s.OpenDisk(context.Background(), p.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() != size {
		t.Fatalf("size %d, want %d", r.Size(), size)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			buf := make([]byte, 3<<20)
			off := rng.Int64N(size)
			for range 200 {
				if rng.IntN(3) > 0 { // mostly random, sometimes sequential
					off = rng.Int64N(size)
				}
				n := 1 + rng.IntN(len(buf))
				got, err := r.ReadAt(buf[:n], off)
				want := min(int64(n), size-off)
				if got != int(want) || (err != nil && err != io.EOF) || (err == io.EOF) != (int64(n) > size-off) {
					errs <- "bad count or error"
					return
				}
				if !bytes.Equal(buf[:got], img[off:off+int64(got)]) {
					errs <- "bytes differ"
					return
				}
				off += int64(got)
				if off >= size {
					off = 0
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if n, err := r.ReadAt(make([]byte, 10), size); n != 0 || err != io.EOF {
		t.Errorf("read at the end: %d, %v; want 0, EOF", n, err)
	}
}
