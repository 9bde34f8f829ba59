package chunkstore_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
)

// BenchmarkRestoreDisk restores a 512 MiB disk holding 256 MiB of data,
// half random and half text that zstd halves, into a sparse file, synced:
// what "bulwark image restore" does, without opening the store. Profile
// it with -cpuprofile; bulwark-bench compare measures the whole command.
func BenchmarkRestoreDisk(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	if err := chunkstore.Init(ctx, backend.NewLocal(dir), chunkstore.InitOptions{Password: testPassword, KDF: cheapKDF}); err != nil {
		b.Fatal(err)
	}
	s, err := chunkstore.Open(ctx, backend.NewLocal(dir), chunkstore.Options{Password: testPassword})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(31, 32))
	img := make([]byte, 512<<20)
	for off := 0; off < len(img); off += 32 << 20 {
		data := img[off : off+16<<20] // the rest of each 32 MiB is zero
		fill(rng, data[:8<<20])
		for i := range data[8<<20:] {
			data[8<<20+i] = "0123456789abcdef\n"[rng.IntN(17)]
		}
	}
	bk, err := s.NewBackup(ctx, chunkstore.BackupOptions{Source: chunkstore.Source{Name: "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bk.AddDisk(ctx, chunkstore.DiskSpec{Reader: bytes.NewReader(img), Size: int64(len(img))}); err != nil {
		b.Fatal(err)
	}
	p, err := bk.Commit(ctx)
	if err != nil {
		b.Fatal(err)
	}
	name := filepath.Join(b.TempDir(), "disk.img")
	b.SetBytes(512 << 20)
	for b.Loop() {
		f, err := os.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(512 << 20); err != nil {
			b.Fatal(err)
		}
		if err := s.RestoreDisk(ctx, p.ID, 0, f, chunkstore.RestoreOptions{Sparse: true}); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
