package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// TestRingWrap reads a metadata text that wraps around the end of its
// area's ring to the start, as LVM writes one when the ring fills. Making
// LVM fill a ring takes hundreds of commands: the area is built here.
func TestRingWrap(t *testing.T) {
	const off, size = 4096, 4096
	text := []byte(`vg { id = "x" seqno = 7 extent_size = 8 physical_volumes { } }` + "\n")
	img := make([]byte, off+size)
	h := img[off:]
	copy(h[4:], mdaMagic)
	le := binary.LittleEndian
	le.PutUint32(h[20:], 1)
	le.PutUint64(h[24:], off)
	le.PutUint64(h[32:], size)
	at := uint64(size - 20) // the last 20 bytes of the ring, then its start
	le.PutUint64(h[40:], at)
	le.PutUint64(h[48:], uint64(len(text)))
	le.PutUint32(h[56:], lvmCRC(text))
	le.PutUint32(h, lvmCRC(h[4:mdaHeader]))
	copy(img[off+at:], text[:20])
	copy(img[off+mdaHeader:], text[20:])
	got, err := readArea(bytes.NewReader(img), Area{off, size})
	if err != nil || !bytes.Equal(got, text) {
		t.Fatalf("readArea: %q, %v", got, err)
	}
	vg, err := vgHeader(got)
	if err != nil || vg.name != "vg" || vg.seqno != 7 {
		t.Errorf("vgHeader: %+v, %v", vg, err)
	}
	le.PutUint64(h[48:], size) // longer than the ring
	le.PutUint32(h, lvmCRC(h[4:mdaHeader]))
	if _, err := readArea(bytes.NewReader(img), Area{off, size}); !errors.Is(err, fstree.ErrCorrupt) {
		t.Errorf("text longer than its ring: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	s, err := parseConfig([]byte(`# comment
a = "q\"uo\\te" # trailing
n = -12
f = 1.5
l = ["x", 3,
 "y"]
e = []
sec {
	inner { k = 1 }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.str("a"); v != `q"uo\te` {
		t.Errorf("a = %q", v)
	}
	if v, _ := s.int("n"); v != -12 {
		t.Errorf("n = %d", v)
	}
	if l, _ := s.list("l"); len(l) != 3 || l[1] != int64(3) {
		t.Errorf("l = %v", l)
	}
	if l, ok := s.list("e"); !ok || len(l) != 0 {
		t.Errorf("e = %v", l)
	}
	if k, _ := s.sub("sec").sub("inner").int("k"); k != 1 {
		t.Errorf("sec/inner/k = %d", k)
	}
	for _, bad := range []string{
		`a = `, `a = "x`, `a = [1, 2`, `a = [[1]]`, `a { `, `}`, `a = 1 a = 2`, `a {} a {}`,
		`a = 99999999999999999999`, `a = x`, `= 1`, `a`,
	} {
		if _, err := parseConfig([]byte(bad)); !errors.Is(err, fstree.ErrCorrupt) {
			t.Errorf("%q: %v, want ErrCorrupt", bad, err)
		}
	}
}
