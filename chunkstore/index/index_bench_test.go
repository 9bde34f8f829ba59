package index

import (
	"encoding/binary"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// BenchmarkIndexMillions fills an index with synthetic chunks (10 million by
// default, BULWARK_BENCH_CHUNKS to change), as packs of 1000 blobs, then
// measures lookups. It reports the process's peak RSS: the target is under
// 1 GiB with 10 million chunks indexed.
//
//	go test -run '^$' -bench IndexMillions -benchtime 200000x ./chunkstore/index
func BenchmarkIndexMillions(b *testing.B) {
	n := 10_000_000
	if v := os.Getenv("BULWARK_BENCH_CHUNKS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	if os.Getenv("GOMEMLIMIT") == "" { // as cmd/bulwark runs
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(SoftMemoryLimit))
	}
	x, err := Open(b.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	const perPack = 1000
	entries := make([]pack.Entry, perPack)
	for p := 0; p < n/perPack; p++ {
		for i := range entries {
			entries[i] = pack.Entry{Type: blob.Data, ID: synthID(p*perPack + i), Offset: uint32(5 + i*1000), Length: 1000, RawLength: 1 << 20, Compressed: true}
		}
		if err := x.AddPack(synthID(-1-p), perPack*1000, entries); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "chunks")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := synthID(int(uint64(i) * 2654435761 % uint64(n)))
		if _, found, err := x.Lookup(id); err != nil || !found {
			b.Fatalf("lookup %d: found %v, %v", i, found, err)
		}
	}
	b.StopTimer()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "RssAnon") || strings.HasPrefix(l, "RssFile") || strings.HasPrefix(l, "VmHWM") {
				b.Log(l)
			}
		}
	}
}

func synthID(i int) blob.ID {
	var id blob.ID
	binary.LittleEndian.PutUint64(id[:], uint64(i)*0x9E3779B97F4A7C15)
	binary.LittleEndian.PutUint64(id[8:], uint64(i))
	return id
}
