package fstreetest

import (
	"bytes"
	"io"
	"testing"
)

func TestSparseRoundTrip(t *testing.T) {
	img := make([]byte, 10*sector+100)
	copy(img[3*sector+7:], "hello")
	copy(img[10*sector:], "tail")
	r, size := DecodeSparse(EncodeSparse(img))
	if size != int64(len(img)) {
		t.Fatalf("size %d, want %d", size, len(img))
	}
	got := make([]byte, size)
	if _, err := r.ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatal("decoded image differs")
	}
	if n := len(EncodeSparse(img)); n != 8+2*(4+sector) {
		t.Errorf("encoded %d bytes, want 2 sectors", n)
	}
}
