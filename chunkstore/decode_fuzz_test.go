package chunkstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/restic/chunker"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// testPol is a chunker polynomial as Init makes them: irreducible, degree 53.
const testPol = chunker.Pol(0x3DA3358B4DC173)

func samplePoint() *Point {
	parent := blob.ID{0xaa, 0xbb}
	return &Point{
		Version:     pointVersion,
		Time:        time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC),
		Source:      Source{Name: "vm-web", VCenter: "vc1", VMUUID: "4211-abcd", MoRef: "vm-42", VMName: "web"},
		Job:         "nightly",
		Parent:      &parent,
		Consistency: "quiesced",
		VMConfig:    json.RawMessage(`{"cpus":2}`),
		Disks: []Disk{
			{Index: 0, Label: "disk0", Capacity: 3*diskmap.PageSpan + 5, ChangeID: "52 1/2", DataBytes: 1 << 20, Extents: 5,
				Pages: []PageRef{{0, blob.ID{1}}, {2, blob.ID{2}}, {3, blob.ID{3}}}},
			{Index: 1, Capacity: 0, FullRead: "first backup"},
		},
		Stats: BackupStats{BytesRead: 10, BytesNew: 5, BytesStored: 6, Chunks: 2, NewChunks: 1, Seconds: 0.5},
	}
}

// pointJSON encodes samplePoint changed by fn.
func pointJSON(t testing.TB, fn func(p *Point)) []byte {
	t.Helper()
	p := samplePoint()
	fn(p)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodePoint(t *testing.T) {
	good := pointJSON(t, func(*Point) {})
	p, err := DecodePoint(good)
	if err != nil {
		t.Fatalf("DecodePoint of a good point: %v", err)
	}
	want := samplePoint()
	if p.Version != 1 || !p.Time.Equal(want.Time) || p.Source != want.Source || *p.Parent != *want.Parent ||
		len(p.Disks) != 2 || p.Disks[0].Pages[2] != want.Disks[0].Pages[2] || p.Stats != want.Stats {
		t.Errorf("DecodePoint = %+v, want %+v", p, want)
	}
	if d, err := p.Disk(1); err != nil || d.FullRead != "first backup" {
		t.Errorf("Disk(1) = %+v, %v", d, err)
	}
	if _, err := p.Disk(2); err == nil {
		t.Errorf("Disk(2) of a point without it: no error")
	}

	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"no disks", pointJSON(t, func(p *Point) { p.Disks = nil }), true},
		{"page at the disk's last span", pointJSON(t, func(p *Point) { p.Disks[0].Capacity = 3*diskmap.PageSpan + 1 }), true},
		{"version 0", pointJSON(t, func(p *Point) { p.Version = 0 }), false},
		{"version 2", pointJSON(t, func(p *Point) { p.Version = 2 }), false},
		{"no version", []byte(`{"disks":[]}`), false},
		{"negative capacity", pointJSON(t, func(p *Point) { p.Disks[1].Capacity = -1 }), false},
		{"negative index", pointJSON(t, func(p *Point) { p.Disks[1].Index = -1 }), false},
		{"repeated index", pointJSON(t, func(p *Point) { p.Disks[1].Index = 0 }), false},
		{"pages out of order", pointJSON(t, func(p *Point) { pg := p.Disks[0].Pages; pg[0], pg[1] = pg[1], pg[0] }), false},
		{"repeated page", pointJSON(t, func(p *Point) { p.Disks[0].Pages[1].Index = 0 }), false},
		{"negative page", pointJSON(t, func(p *Point) { p.Disks[0].Pages[0].Index = -1 }), false},
		{"page beyond the disk", pointJSON(t, func(p *Point) { p.Disks[0].Capacity = 3*diskmap.PageSpan - 1 }), false},
		{"page of an empty disk", pointJSON(t, func(p *Point) { p.Disks[1].Pages = []PageRef{{1, blob.ID{}}} }), false},
		{"bad page ID", bytes.Replace(good, []byte(blob.ID{1}.String()), []byte("xyz"), 1), false},
		{"bad parent ID", bytes.Replace(good, []byte(blob.ID{0xaa, 0xbb}.String()), []byte("aabb"), 1), false},
		{"capacity not a number", bytes.Replace(good, []byte(`"capacity":0`), []byte(`"capacity":"0"`), 1), false},
		{"truncated", good[:len(good)-1], false},
		{"empty", nil, false},
		{"null", []byte("null"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodePoint(tt.b)
			if (err == nil) != tt.ok {
				t.Errorf("DecodePoint(%s) = %+v, %v; want ok=%v", tt.b, p, err, tt.ok)
			}
		})
	}
}

// TestDecodePointRejectsBadExtentCount: loadMap sizes its slice from a
// disk's extent count, so a negative or huge count must be refused.
func TestDecodePointRejectsBadExtentCount(t *testing.T) {
	for _, n := range []int{-1, 1 << 50} {
		b := pointJSON(t, func(p *Point) {
			p.Disks = []Disk{{Index: 0, Capacity: 1 << 20, Extents: n}}
		})
		p, err := DecodePoint(b)
		if err != nil {
			continue // refused: fine
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("DecodePoint accepted a disk of %d extents; loadMap then panics: %v", n, r)
				}
			}()
			// The disk has no pages, so loadMap reads nothing from the store.
			if _, err := (&Store{}).loadMap(context.Background(), &p.Disks[0]); err != nil {
				t.Logf("loadMap: %v", err)
			}
		}()
	}
}

// TestDecodePointPageBeyondDiskEnd: a page names the span starting at
// Index*PageSpan; on a disk whose capacity is a multiple of PageSpan (or 0),
// a page for the span that starts exactly at the end of the disk is refused.
func TestDecodePointPageBeyondDiskEnd(t *testing.T) {
	for _, capacity := range []int64{0, diskmap.PageSpan, 4 * diskmap.PageSpan} {
		idx := capacity / diskmap.PageSpan
		b := pointJSON(t, func(p *Point) {
			p.Disks = []Disk{{Index: 0, Capacity: capacity, Pages: []PageRef{{idx, blob.ID{1}}}}}
		})
		if p, err := DecodePoint(b); err == nil {
			t.Errorf("DecodePoint accepted page %d (bytes from %d) of a disk of %d bytes: %+v", idx, idx*diskmap.PageSpan, capacity, p.Disks[0])
		}
	}
}

func FuzzDecodePoint(f *testing.F) {
	f.Add(pointJSON(f, func(*Point) {}))
	f.Add(pointJSON(f, func(p *Point) { p.Disks = nil; p.Parent = nil; p.VMConfig = nil }))
	f.Add(pointJSON(f, func(p *Point) { p.Version = 2 }))
	f.Add(pointJSON(f, func(p *Point) { p.Disks[1].Index = 0 }))
	f.Add(pointJSON(f, func(p *Point) { p.Disks[0].Capacity = 1 }))
	f.Add([]byte(`{"version":1,"disks":[{"index":0,"capacity":1,"pages":[{"index":0,"id":"` + blob.ID{}.String() + `"}]}]}`))
	f.Add([]byte(`{"version":1,"disks":[{"index":0,"capacity":-1}]}`))
	f.Add([]byte(`{"version":1.5}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePoint(b)
		if err != nil {
			return
		}
		if err := checkPoint(p); err != nil {
			t.Fatalf("DecodePoint(%q) accepted a bad point: %v", b, err)
		}
		re, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("accepted point does not encode: %v", err)
		}
		q, err := DecodePoint(re)
		if err != nil {
			t.Fatalf("re-encoded point %s does not decode: %v", re, err)
		}
		if again, err := json.Marshal(q); err != nil || !bytes.Equal(again, re) {
			t.Fatalf("point encoding is not stable:\n%s\n%s", re, again)
		}
	})
}

func checkPoint(p *Point) error {
	if p.Version != pointVersion {
		return fmt.Errorf("version %d", p.Version)
	}
	seen := map[int]bool{}
	for _, d := range p.Disks {
		if d.Index < 0 || d.Capacity < 0 || seen[d.Index] {
			return fmt.Errorf("disk %d: bad index or capacity %d", d.Index, d.Capacity)
		}
		seen[d.Index] = true
		for i, pr := range d.Pages {
			if pr.Index < 0 || pr.Index > d.Capacity/diskmap.PageSpan || (i > 0 && pr.Index <= d.Pages[i-1].Index) {
				return fmt.Errorf("disk %d: page %d (span %d) out of order or beyond %d bytes", d.Index, i, pr.Index, d.Capacity)
			}
		}
	}
	return nil
}

func configJSON(t testing.TB, fn func(c *config)) []byte {
	t.Helper()
	c := config{Version: storeVersion, ID: "00112233445566778899aabbccddeeff", Polynomial: testPol, Params: DefaultParams()}
	fn(&c)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeConfig(t *testing.T) {
	if !testPol.Irreducible() {
		t.Fatalf("test polynomial %v is reducible", testPol)
	}
	c, err := decodeConfig(configJSON(t, func(*config) {}))
	if err != nil {
		t.Fatalf("decodeConfig of a good config: %v", err)
	}
	if c.Version != 1 || c.Polynomial != testPol || c.Params != DefaultParams() || c.ID != "00112233445566778899aabbccddeeff" {
		t.Errorf("decodeConfig = %+v", c)
	}
	tests := []struct {
		name string
		fn   func(c *config)
	}{
		{"version 0", func(c *config) { c.Version = 0 }},
		{"version 2", func(c *config) { c.Version = 2 }},
		{"reducible polynomial", func(c *config) { c.Polynomial = testPol ^ 1 }}, // x divides it
		{"chunk average not a power of two", func(c *config) { c.Params.ChunkAvg = 3 << 19 }},
		{"chunk average 0", func(c *config) { c.Params.ChunkAvg = 0 }},
		{"chunk min too small", func(c *config) { c.Params.ChunkMin = 1024 }},
		{"chunk min above average", func(c *config) { c.Params.ChunkMin = 2 << 20 }},
		{"chunk max too big", func(c *config) { c.Params.ChunkMax = 32 << 20 }},
		{"zero block 0", func(c *config) { c.Params.ZeroBlock = 0 }},
		{"zero block 256", func(c *config) { c.Params.ZeroBlock = 256 }},
		{"segment 0", func(c *config) { c.Params.Segment = 0 }},
		{"segment not dividing 256 MiB", func(c *config) { c.Params.Segment = 24 << 20 }},
		{"segment below chunk max", func(c *config) { c.Params.Segment = int64(c.Params.ChunkMax) / 2 }},
		{"pack size 0", func(c *config) { c.Params.PackSize = 0 }},
		{"pack size 2 GiB", func(c *config) { c.Params.PackSize = 2 << 30 }},
		{"zstd level 0", func(c *config) { c.Params.ZstdLevel = 0 }},
		{"zstd level 5", func(c *config) { c.Params.ZstdLevel = 5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := configJSON(t, tt.fn)
			if c, err := decodeConfig(b); err == nil {
				t.Errorf("decodeConfig(%s) = %+v, want an error", b, c)
			}
		})
	}
	for _, s := range []string{"", "null", "{}", `{"version":1}`, `{"version":1,"polynomial":12}`, `{"version":"1"}`} {
		if c, err := decodeConfig([]byte(s)); err == nil {
			t.Errorf("decodeConfig(%s) = %+v, want an error", s, c)
		}
	}
}

// chunks reports whether the chunker can cut data with pol, as a backup
// would.
func chunks(pol chunker.Pol) error {
	p := DefaultParams()
	data := bytes.Repeat([]byte("0123456789abcdef"), p.ChunkMin/8)
	ch := chunker.NewWithBoundaries(bytes.NewReader(data), pol, uint(p.ChunkMin), uint(p.ChunkMax))
	buf := make([]byte, p.ChunkMax)
	for {
		_, err := ch.Next(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// TestDecodeConfigRejectsUnusablePolynomial: Pol.Irreducible passes 0, 1
// and polynomials of the wrong degree, which the chunker refuses; a config
// with one must fail to open rather than fail every backup.
func TestDecodeConfigRejectsUnusablePolynomial(t *testing.T) {
	if err := chunks(testPol); err != nil {
		t.Fatalf("the chunker refuses the good polynomial: %v", err)
	}
	high := chunker.Pol(1<<60 | 1)
	for !high.Irreducible() {
		high += 2
	}
	for _, pol := range []chunker.Pol{0, 1, 3, high} {
		c, err := decodeConfig(configJSON(t, func(c *config) { c.Polynomial = pol }))
		if err != nil {
			continue // refused: fine
		}
		if err := chunks(c.Polynomial); err != nil {
			t.Errorf("decodeConfig accepted polynomial %v (degree %d), which the chunker refuses: %v", pol, pol.Deg(), err)
		}
	}
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add(configJSON(f, func(*config) {}))
	f.Add(configJSON(f, func(c *config) { c.Version = 2 }))
	f.Add(configJSON(f, func(c *config) { c.Polynomial = testPol ^ 1 }))
	f.Add(configJSON(f, func(c *config) { c.Params.Segment = 0 }))
	f.Add(configJSON(f, func(c *config) { c.Params.ZeroBlock = 0 }))
	f.Add([]byte(`{"version":1,"polynomial":"0","params":{}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeConfig(b)
		if err != nil {
			if !strings.Contains(err.Error(), "config") && !strings.Contains(err.Error(), "version") {
				t.Errorf("error %q does not say it is about the config", err)
			}
			return
		}
		if c.Version != storeVersion || !c.Polynomial.Irreducible() {
			t.Fatalf("decodeConfig(%s) accepted version %d, polynomial %v", b, c.Version, c.Polynomial)
		}
		if err := c.Params.Validate(); err != nil {
			t.Fatalf("decodeConfig(%s) accepted bad params: %v", b, err)
		}
		re, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		d, err := decodeConfig(re)
		if err != nil || *d != *c {
			t.Fatalf("re-encoded config %s decodes to %+v, %v; want %+v", re, d, err, c)
		}
	})
}
