package main

import (
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	s := time.Second
	tests := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{[]time.Duration{5 * s}, 5 * s},
		{[]time.Duration{9 * s, 1 * s, 5 * s}, 5 * s},
		{[]time.Duration{4 * s, 1 * s, 2 * s, 100 * s}, 3 * s},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestComparisonMarkdown(t *testing.T) {
	run := func(full, incr, restore time.Duration, rss, size int64) *toolRun {
		return &toolRun{
			Full:           backupResult{measurement: measurement{Wall: full, MaxRSS: rss}, BytesRead: 1, BytesNew: 1, BytesStored: 1},
			Incr:           backupResult{measurement: measurement{Wall: incr, MaxRSS: rss}, BytesRead: 1, BytesNew: 1, BytesStored: 1},
			Restore:        measurement{Wall: restore, MaxRSS: rss},
			RestoreDurable: measurement{Wall: restore + time.Second, MaxRSS: rss},
			RestoredSHA:    "abc",
			Size:           storeSize{Total: size, WithoutIndex: unknown},
		}
	}
	s := time.Second
	c := &comparison{
		Image:    &diskImage{Size: 4e9, PartOffset: 1 << 20, BlockSize: 4096},
		Change:   &changeSet{},
		ImageSHA: "abc",
		Caches:   &cacheDropper{},
		Runs:     3,
		Tools: []*toolResults{
			{Name: "other", Runs: []*toolRun{run(40*s, 20*s, 10*s, 100, 300), run(20*s, 20*s, 10*s, 100, 300), run(30*s, 20*s, 10*s, 100, 300)}},
			{Name: "Bulwark", IsBulwark: true, Runs: []*toolRun{run(10*s, 2*s, 20*s, 400, 100), run(99*s, 2*s, 20*s, 300, 100), run(10*s, 2*s, 20*s, 100, 100)}},
		},
	}
	c.Tools[1].Runs[2].RestoredSHA = "bad"
	md := c.markdown()
	for _, want := range []string{
		"|  | other | Bulwark | Bulwark vs other |",
		"| Full backup | 30.0 s (133 MB/s) | 10.0 s (400 MB/s) | 3.00× |",
		"| Incremental backup | 20.0 s (200 MB/s) | 2.00 s (2000 MB/s) | 10.00× |",
		"| Full restore | 10.0 s (400 MB/s) | 20.0 s (200 MB/s) | 0.50× |",
		"| Full restore, on disk | 11.0 s (364 MB/s) | 21.0 s (190 MB/s) | 0.52× |",
		"| Store size after both points | 300 B | 100 B | 3.00× |",
		"| Peak RSS | 100 B | 400 B | 0.25× |",
		"| Bulwark | full backup | 10.0 s | 10.0 s | 99.0 s |",
		"Bulwark **NOT BIT-EXACT in 1 of 3 runs**",
		"other bit-exact",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
