package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// needGuestTools skips tests on hosts without the disk tools rather than
// failing them, since they are system packages, not Go dependencies.
func needGuestTools(t *testing.T) map[string]string {
	t.Helper()
	tools := map[string]string{}
	for _, name := range []string{"sgdisk", "mke2fs", "e2fsck", "debugfs", "dumpe2fs"} {
		pkg := "e2fsprogs"
		if name == "sgdisk" {
			pkg = "gdisk"
		}
		p, err := lookGuestTool(name, pkg)
		if err != nil {
			t.Fatal(err) // .ci/run installs the tools: a missing one is a failure, not a skip
		}
		tools[name] = p
	}
	return tools
}

func makeTestGuestDisk(t *testing.T, spec GuestDiskSpec) *GuestDisk {
	t.Helper()
	d, err := MakeGuestDisk(context.Background(), t.TempDir(), spec)
	if err != nil {
		t.Fatalf("MakeGuestDisk(%+v): %v", spec, err)
	}
	return d
}

// copyOutGuestPartition copies a byte range of img into a new file, skipping zero
// blocks, because e2fsck and debugfs cannot be given a partition offset.
func copyOutGuestPartition(t *testing.T, img string, start, length int64) string {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	outPath := filepath.Join(t.TempDir(), "part.img")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	sr := io.NewSectionReader(in, start, length)
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < length; {
		n, err := sr.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				t.Fatal(werr)
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Truncate(length); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return outPath
}

func guestSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestGuestDisk(t *testing.T) {
	tools := needGuestTools(t)
	const size = 256 << 20
	d := makeTestGuestDisk(t, GuestDiskSpec{Size: size, Label: "labroot", Seed: 42})

	fi, err := os.Stat(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size || d.Size != size {
		t.Errorf("image size %d, GuestDisk.Size %d, want %d", fi.Size(), d.Size, size)
	}
	st := fi.Sys().(*syscall.Stat_t)
	allocated := st.Blocks * 512
	t.Logf("image %d bytes, %d allocated (%.1f%%)", size, allocated, 100*float64(allocated)/size)
	var fileBytes int64
	for _, f := range d.Files {
		fileBytes += f.Size
	}
	// Files plus data regions plus a few MiB of filesystem metadata; a
	// zeroed journal or inode table would add tens of MiB.
	if limit := fileBytes + 4<<20 + 8<<20; allocated > limit || allocated > size/4 {
		t.Errorf("image not sparse: %d bytes allocated, want at most %d", allocated, min(limit, size/4))
	}

	if len(d.Partitions) != 2 {
		t.Fatalf("got %d partitions, want 2: %+v", len(d.Partitions), d.Partitions)
	}
	for i, want := range []string{"root", "data"} {
		p := d.Partitions[i]
		if p.Number != i+1 || p.Name != want || p.TypeGUID != linuxFSTypeGUID {
			t.Errorf("partition %d = %+v, want number %d, name %q, type %s", i, p, i+1, want, linuxFSTypeGUID)
		}
		if p.Start%(1<<20) != 0 || p.Length <= 0 || p.Start+p.Length > size-33*512 {
			t.Errorf("partition %d = %+v: not 1 MiB aligned or outside the usable area", i, p)
		}
	}
	root, data := d.Partitions[0], d.Partitions[1]
	if root.Start != 1<<20 || root.Start+root.Length > data.Start {
		t.Errorf("root %+v, data %+v: want root at 1 MiB and before data", root, data)
	}
	if frac := float64(root.Start+root.Length) / size; frac < 0.7 || frac > 0.8 {
		t.Errorf("root partition ends at %.2f of the disk, want about 0.75", frac)
	}

	out, err := exec.Command(tools["sgdisk"], "-v", d.Path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") || strings.Contains(string(out), "Caution") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}

	part := copyOutGuestPartition(t, d.Path, root.Start, root.Length)
	if out, err := exec.Command(tools["e2fsck"], "-fn", part).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	if out, err := exec.Command(tools["debugfs"], "-R", "stat /var/lib/app/latest", part).Output(); err != nil || !strings.Contains(string(out), "Type: symlink") {
		t.Errorf("debugfs stat of symlink: %v\n%s", err, out)
	}
	if out, err := exec.Command(tools["dumpe2fs"], "-h", part).Output(); err != nil || !strings.Contains(string(out), "volume name:   labroot") {
		t.Errorf("dumpe2fs -h: %v, want volume name labroot:\n%s", err, out)
	}

	byPath := map[string]GuestFile{}
	for _, f := range d.Files {
		byPath[f.Path] = f
	}
	if len(d.Files) != defaultGuestFiles || len(byPath) != len(d.Files) {
		t.Errorf("got %d files (%d distinct), want %d", len(d.Files), len(byPath), defaultGuestFiles)
	}
	if !slices.IsSortedFunc(d.Files, func(a, b GuestFile) int { return strings.Compare(a.Path, b.Path) }) {
		t.Error("Files not sorted by path")
	}
	if e, ok := byPath["var/log/empty.log"]; !ok || e.Size != 0 {
		t.Errorf("empty file = %+v, %v", e, ok)
	}
	if b := byPath["var/lib/app/blob.bin"]; b.Size < 4<<20 {
		t.Errorf("large file = %+v, want a few MiB", b)
	}
	if fileBytes < size/8*9/10 || fileBytes > size/8*11/10 {
		t.Errorf("files total %d bytes, want about %d", fileBytes, size/8)
	}
	check := []string{"Über/naïve.txt", "My Documents/quarterly report.txt", "var/lib/app/blob.bin", "etc/hostname", "var/log/empty.log"}
	for _, f := range d.Files {
		if strings.Contains(f.Path, "file-") {
			check = append(check, f.Path)
			break
		}
	}
	for _, p := range check {
		want, ok := byPath[p]
		if !ok {
			t.Errorf("no file %q in %+v", p, d.Files)
			continue
		}
		got, err := exec.Command(tools["debugfs"], "-R", `cat "/`+p+`"`, part).Output()
		if err != nil {
			t.Errorf("debugfs cat %q: %v", p, err)
			continue
		}
		if int64(len(got)) != want.Size || guestSHA256(got) != want.SHA256 {
			t.Errorf("debugfs cat %q: %d bytes sha256 %s, want %d bytes %s", p, len(got), guestSHA256(got), want.Size, want.SHA256)
		}
	}

	raw, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.DataRegions) != 2 {
		t.Fatalf("got %d data regions, want 2", len(d.DataRegions))
	}
	for _, r := range d.DataRegions {
		if r.Offset < data.Start || r.Offset+r.Length > data.Start+data.Length {
			t.Errorf("data region %+v outside data partition %+v", r, data)
			continue
		}
		if got := guestSHA256(raw[r.Offset : r.Offset+r.Length]); got != r.SHA256 {
			t.Errorf("data region %+v has sha256 %s", r, got)
		}
	}
}

func TestGuestDiskDeterministic(t *testing.T) {
	needGuestTools(t)
	spec := GuestDiskSpec{Size: 64 << 20, Seed: 7, Files: 10, FileBytes: 4 << 20}
	a := makeTestGuestDisk(t, spec)
	b := makeTestGuestDisk(t, spec)
	if !slices.Equal(a.Files, b.Files) {
		t.Errorf("same seed, different files:\n%+v\n%+v", a.Files, b.Files)
	}
	if !slices.Equal(a.DataRegions, b.DataRegions) || !slices.Equal(a.Partitions, b.Partitions) {
		t.Errorf("same seed, different regions or partitions:\n%+v %+v\n%+v %+v", a.DataRegions, a.Partitions, b.DataRegions, b.Partitions)
	}
	if len(a.Files) != 10 {
		t.Errorf("got %d files, want 10", len(a.Files))
	}

	spec.Seed = 8
	c := makeTestGuestDisk(t, spec)
	same := 0
	for i := range min(len(a.Files), len(c.Files)) {
		if a.Files[i].SHA256 == c.Files[i].SHA256 && a.Files[i].Size > 0 {
			same++
		}
	}
	if same > 0 || slices.Equal(a.DataRegions, c.DataRegions) {
		t.Errorf("different seeds share %d file hashes or data regions:\n%+v\n%+v", same, a.Files, c.Files)
	}
}

func TestGuestDiskBadSpec(t *testing.T) {
	for _, spec := range []GuestDiskSpec{
		{Size: 256<<20 + 4096},
		{Size: 32 << 20},
		{Size: 0},
		{Size: 64 << 20, Files: 3},
		{Size: 64 << 20, Label: "a-label-that-is-too-long"},
		{Size: 64 << 20, FileBytes: 60 << 20},
	} {
		dir := t.TempDir()
		if d, err := MakeGuestDisk(context.Background(), dir, spec); err == nil {
			t.Errorf("MakeGuestDisk(%+v) = %+v, want error", spec, d)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("MakeGuestDisk(%+v) left %v behind", spec, ents)
		}
	}
}

func TestGuestDiskReadGPTRejectsCorruption(t *testing.T) {
	needGuestTools(t)
	d := makeTestGuestDisk(t, GuestDiskSpec{Size: 64 << 20, Seed: 1, FileBytes: 1 << 20})
	raw, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readGPT(bytes.NewReader(raw), int64(len(raw))); err != nil {
		t.Fatalf("readGPT on intact image: %v", err)
	}
	raw[2*512+56] ^= 1 // a byte of partition 1's name
	if _, err := readGPT(bytes.NewReader(raw), int64(len(raw))); err == nil {
		t.Error("readGPT accepted a corrupted entry array")
	}
}
