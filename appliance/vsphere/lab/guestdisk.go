package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

const (
	guestMiB      = 1 << 20
	gptSectorSize = 512

	// MinGuestDiskSize is the smallest disk MakeGuestDisk accepts; below it
	// the data partition gets too small for its database regions.
	MinGuestDiskSize = 64 * guestMiB

	defaultGuestFiles = 24

	// linuxFSTypeGUID is the GPT type GUID sgdisk uses for code 8300.
	linuxFSTypeGUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// GuestFile is one file written into a guest filesystem.
type GuestFile struct {
	Path   string // relative to the filesystem root, slash-separated
	Size   int64
	SHA256 string // lower-case hex
}

// Partition is one entry of a disk's GPT.
type Partition struct {
	Number   int // 1-based index in the partition entry array
	Name     string
	Start    int64 // bytes from the start of the disk
	Length   int64 // bytes
	TypeGUID string
}

// DiskRegion is a byte range of a disk image with known content.
type DiskRegion struct {
	Offset int64 // bytes from the start of the disk
	Length int64
	SHA256 string // lower-case hex
}

// GuestDisk describes a disk image made for a lab VM.
type GuestDisk struct {
	Path       string // raw image file, sparse, exactly Size bytes
	Size       int64
	Partitions []Partition // as read back from the on-disk GPT
	Files      []GuestFile // regular files in partition 1 (ext4), sorted by Path
	// DataRegions are the non-zero "database" ranges written into the
	// unformatted partition 2, sorted by Offset.
	DataRegions []DiskRegion
}

// GuestDiskSpec says what MakeGuestDisk builds.
type GuestDiskSpec struct {
	Size      int64  // bytes; at least MinGuestDiskSize and a multiple of 1 MiB
	Label     string // ext4 label of partition 1, at most 16 bytes
	Seed      int64  // equal seeds give equal file trees and data regions
	Files     int    // number of regular files; 0 means 24; at least 5
	FileBytes int64  // approximate total file data; 0 means Size/8
}

// fixedGuestFiles is how many files every tree has regardless of spec.Files.
const fixedGuestFiles = 5

// MakeGuestDisk creates a sparse raw disk image in dir with a GPT holding an
// ext4 partition ("root") filled with a tree generated from spec.Seed and an
// unformatted partition ("data") holding a few deterministic data regions.
// It needs sgdisk (Debian package gdisk) and mke2fs (e2fsprogs).
func MakeGuestDisk(ctx context.Context, dir string, spec GuestDiskSpec) (*GuestDisk, error) {
	if err := spec.normalize(); err != nil {
		return nil, err
	}
	sgdisk, err := lookGuestTool("sgdisk", "gdisk")
	if err != nil {
		return nil, err
	}
	mke2fs, err := lookGuestTool("mke2fs", "e2fsprogs")
	if err != nil {
		return nil, err
	}

	// One stream drives everything, so the order of draws below is part of
	// the output format: changing it changes every disk made from a seed.
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], uint64(spec.Seed))
	copy(key[8:], "bulwark-lab-guestdisk")
	src := rand.NewChaCha8(key)
	rng := rand.New(src)

	f, err := os.CreateTemp(dir, "guestdisk-*.img")
	if err != nil {
		return nil, fmt.Errorf("create guest disk image: %w", err)
	}
	img := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(img)
		}
	}()
	if err := f.Truncate(spec.Size); err != nil {
		f.Close()
		return nil, fmt.Errorf("size guest disk image %s: %w", img, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close guest disk image %s: %w", img, err)
	}

	// Both partitions start and end on 1 MiB boundaries, as partitioning
	// tools in real guests would lay them out; partition 2 stops before the
	// backup GPT (entries plus header occupy the last 33 sectors).
	sectors := spec.Size / gptSectorSize
	end1 := spec.Size*3/4/guestMiB*guestMiB/gptSectorSize - 1
	end2 := (sectors-33)/(guestMiB/gptSectorSize)*(guestMiB/gptSectorSize) - 1
	args := []string{
		"--clear",
		"--disk-guid=" + randomGUID(rng),
		"--new=1:" + strconv.FormatInt(guestMiB/gptSectorSize, 10) + ":" + strconv.FormatInt(end1, 10),
		"--typecode=1:8300",
		"--change-name=1:root",
		"--partition-guid=1:" + randomGUID(rng),
		"--new=2:" + strconv.FormatInt(end1+1, 10) + ":" + strconv.FormatInt(end2, 10),
		"--typecode=2:8300",
		"--change-name=2:data",
		"--partition-guid=2:" + randomGUID(rng),
		img,
	}
	if err := runGuestTool(ctx, sgdisk, args...); err != nil {
		return nil, err
	}
	parts, err := readGPTFile(img)
	if err != nil {
		return nil, err
	}
	if len(parts) != 2 || parts[0].TypeGUID != linuxFSTypeGUID || parts[1].TypeGUID != linuxFSTypeGUID {
		return nil, fmt.Errorf("read back GPT of %s: got %+v, want two Linux filesystem partitions", img, parts)
	}
	root, data := parts[0], parts[1]
	if spec.FileBytes > root.Length/2 {
		return nil, fmt.Errorf("guest disk: %d bytes of files do not fit a %d-byte root partition", spec.FileBytes, root.Length)
	}

	srcDir, err := os.MkdirTemp(dir, ".guestdisk-src-*")
	if err != nil {
		return nil, fmt.Errorf("create guest source tree: %w", err)
	}
	defer os.RemoveAll(srcDir)
	files, err := writeGuestTree(ctx, srcDir, spec, rng, src)
	if err != nil {
		return nil, err
	}

	// The image is a fresh sparse file, so the journal and inode tables
	// already read as zeros: lazy init keeps mke2fs from writing them out
	// and un-sparsing the image, and nodiscard keeps it from punching holes
	// it does not need to.
	fsUUID := randomGUID(rng)
	mkfsArgs := []string{
		"-t", "ext4", "-F", "-q", "-b", "4096",
		"-U", fsUUID,
		"-E", fmt.Sprintf("offset=%d,hash_seed=%s,lazy_itable_init=1,lazy_journal_init=1,nodiscard", root.Start, fsUUID),
		"-d", srcDir,
	}
	if spec.Label != "" {
		mkfsArgs = append(mkfsArgs, "-L", spec.Label)
	}
	// The "k" suffix pins the unit; a bare number would count -b blocks.
	mkfsArgs = append(mkfsArgs, img, strconv.FormatInt(root.Length/1024, 10)+"k")
	if err := runGuestTool(ctx, mke2fs, mkfsArgs...); err != nil {
		return nil, err
	}
	// mke2fs zaps sectors around the filesystem it makes; a wrong offset
	// would wipe the GPT without any error from mke2fs itself.
	if _, err := readGPTFile(img); err != nil {
		return nil, fmt.Errorf("after mke2fs: %w", err)
	}

	regions, err := writeDataRegions(img, data, rng, src)
	if err != nil {
		return nil, err
	}

	ok = true
	return &GuestDisk{
		Path:        img,
		Size:        spec.Size,
		Partitions:  parts,
		Files:       files,
		DataRegions: regions,
	}, nil
}

func (s *GuestDiskSpec) normalize() error {
	switch {
	case s.Size < MinGuestDiskSize:
		return fmt.Errorf("guest disk size %d is below the minimum of %d bytes", s.Size, MinGuestDiskSize)
	case s.Size%guestMiB != 0:
		return fmt.Errorf("guest disk size %d is not a multiple of 1 MiB", s.Size)
	case len(s.Label) > 16:
		return fmt.Errorf("guest disk label %q is longer than ext4's 16 bytes", s.Label)
	case s.Files < 0:
		return fmt.Errorf("guest disk file count %d is negative", s.Files)
	case s.FileBytes < 0:
		return fmt.Errorf("guest disk file bytes %d is negative", s.FileBytes)
	}
	if s.Files == 0 {
		s.Files = defaultGuestFiles
	}
	if s.Files < fixedGuestFiles {
		return fmt.Errorf("guest disk file count %d is below the minimum of %d", s.Files, fixedGuestFiles)
	}
	if s.FileBytes == 0 {
		s.FileBytes = s.Size / 8
	}
	return nil
}

// lookGuestTool finds an administration tool that may live in an sbin directory
// missing from an unprivileged user's PATH.
func lookGuestTool(name, debianPkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH, /usr/sbin or /sbin: install the Debian package %s", name, debianPkg)
}

func runGuestTool(ctx context.Context, path string, args ...string) error {
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(path), strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// randomGUID returns a version 4 GUID in the textual form sgdisk and mke2fs
// accept, drawn from rng so that images made from one seed match.
func randomGUID(rng *rand.Rand) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rng.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rng.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// guestWords feeds the compressible half of generated content.
var guestWords = strings.Fields(`lorem ipsum backup restore snapshot vmdk
	datastore changed block tracking quiesce appliance bulwark retention policy
	chunk index repository encrypt verify replica journal checkpoint tenant
	über naïve café résumé`)

func guestText(rng *rand.Rand, n int64) []byte {
	var b bytes.Buffer
	b.Grow(int(n) + 64)
	for line := 1; int64(b.Len()) < n; line++ {
		fmt.Fprintf(&b, "%06d", line)
		for range 4 + rng.IntN(10) {
			b.WriteByte(' ')
			b.WriteString(guestWords[rng.IntN(len(guestWords))])
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

func guestRandom(src *rand.ChaCha8, n int64) []byte {
	b := make([]byte, n)
	src.Read(b) // never fails
	return b
}

// guestMixed alternates text and random chunks, like real binaries and
// databases, so that compression and deduplication both have work to do.
func guestMixed(rng *rand.Rand, src *rand.ChaCha8, n int64) []byte {
	b := make([]byte, 0, n)
	for int64(len(b)) < n {
		chunk := min(int64(16<<10+rng.IntN(112<<10)), n-int64(len(b)))
		if rng.IntN(2) == 0 {
			b = append(b, guestText(rng, chunk)...)
		} else {
			b = append(b, guestRandom(src, chunk)...)
		}
	}
	return b
}

// writeGuestTree writes the files of spec into dir and returns them sorted.
func writeGuestTree(ctx context.Context, dir string, spec GuestDiskSpec, rng *rand.Rand, src *rand.ChaCha8) ([]GuestFile, error) {
	// The root directory's mode becomes that of the filesystem root.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("guest source tree: %w", err)
	}
	textBytes := func(n int64) int64 { return min(n, max(spec.FileBytes/64, 512)) }
	big := spec.FileBytes / 4
	fixed := []struct {
		path string
		data []byte
	}{
		{"etc/hostname", fmt.Appendf(nil, "lab-%016x\n", rng.Uint64())},
		{"Über/naïve.txt", guestText(rng, textBytes(8<<10))},
		{"My Documents/quarterly report.txt", guestText(rng, textBytes(32<<10))},
		{"var/log/empty.log", nil},
		{"var/lib/app/blob.bin", guestMixed(rng, src, big)},
	}
	dirs := []string{"etc/app", "home/operator", "home/operator/projects/alpha", "srv/www/static", "var/lib/app/data", "Über", "My Documents"}
	exts := []string{".txt", ".bin", ".dat"}

	var used int64
	for _, f := range fixed {
		used += int64(len(f.data))
	}
	n := spec.Files - fixedGuestFiles
	weights := make([]float64, n)
	var sum float64
	for i := range weights {
		weights[i] = 0.25 + rng.Float64()
		sum += weights[i]
	}
	rest := max(spec.FileBytes-used, 0)

	var files []GuestFile
	write := func(rel string, data []byte, mtime time.Time) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("guest source tree: %w", err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("guest source tree: %w", err)
		}
		// mke2fs -d copies mtimes; fixing them keeps inodes reproducible.
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			return fmt.Errorf("guest source tree: %w", err)
		}
		sum := sha256.Sum256(data)
		files = append(files, GuestFile{Path: rel, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
		return nil
	}
	epoch := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	mtime := func() time.Time {
		return epoch.Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour)))).Truncate(time.Second)
	}

	for _, f := range fixed {
		if err := write(f.path, f.data, mtime()); err != nil {
			return nil, err
		}
	}
	for i, w := range weights {
		size := int64(float64(rest) * w / sum)
		ext := exts[rng.IntN(len(exts))]
		rel := fmt.Sprintf("%s/file-%03d%s", dirs[rng.IntN(len(dirs))], i, ext)
		var data []byte
		switch ext {
		case ".txt":
			data = guestText(rng, size)
		case ".bin":
			data = guestRandom(src, size)
		default:
			data = guestMixed(rng, src, size)
		}
		if err := write(rel, data, mtime()); err != nil {
			return nil, err
		}
	}
	if err := os.Symlink("blob.bin", filepath.Join(dir, "var", "lib", "app", "latest")); err != nil {
		return nil, fmt.Errorf("guest source tree: %w", err)
	}

	slices.SortFunc(files, func(a, b GuestFile) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// writeDataRegions fills two ranges of the unformatted partition with
// page-structured data that later tests overwrite to simulate a database
// changing between backups; the rest of the partition stays a hole.
func writeDataRegions(img string, part Partition, rng *rand.Rand, src *rand.ChaCha8) ([]DiskRegion, error) {
	const regionLen = 2 * guestMiB
	const pageSize = 8 << 10
	offsets := []int64{part.Start + guestMiB, part.Start + part.Length/2/guestMiB*guestMiB}
	for _, off := range offsets {
		if off+regionLen > part.Start+part.Length {
			return nil, fmt.Errorf("guest disk data partition of %d bytes is too small for its data regions", part.Length)
		}
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("write guest data regions: %w", err)
	}
	defer f.Close()
	var regions []DiskRegion
	for _, off := range offsets {
		buf := guestRandom(src, regionLen)
		for p := 0; p < regionLen; p += pageSize {
			copy(buf[p:], fmt.Sprintf("LABDB page=%08d lsn=%016x\x00", (off-part.Start+int64(p))/pageSize, rng.Uint64()))
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return nil, fmt.Errorf("write guest data region at %d: %w", off, err)
		}
		sum := sha256.Sum256(buf)
		regions = append(regions, DiskRegion{Offset: off, Length: regionLen, SHA256: hex.EncodeToString(sum[:])})
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write guest data regions: %w", err)
	}
	return regions, nil
}

func readGPTFile(img string) ([]Partition, error) {
	f, err := os.Open(img)
	if err != nil {
		return nil, fmt.Errorf("read GPT: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read GPT: %w", err)
	}
	parts, err := readGPT(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("read GPT of %s: %w", img, err)
	}
	return parts, nil
}

var errNoGPT = errors.New("no valid GPT header")

// gptHeader holds the GPT header fields readGPT uses.
type gptHeader struct {
	myLBA, altLBA           uint64
	firstUsable, lastUsable uint64
	entriesLBA              uint64
	count, entrySize        uint32
	entriesCRC              uint32
}

// readGPTHeader reads and checks the GPT header in sector lba.
func readGPTHeader(r io.ReaderAt, lba uint64) (gptHeader, error) {
	var h gptHeader
	buf := make([]byte, gptSectorSize)
	if _, err := r.ReadAt(buf, int64(lba)*gptSectorSize); err != nil {
		return h, fmt.Errorf("read GPT header at LBA %d: %w", lba, err)
	}
	if string(buf[:8]) != "EFI PART" {
		return h, fmt.Errorf("%w at LBA %d: bad signature %q", errNoGPT, lba, buf[:8])
	}
	le := binary.LittleEndian
	size := le.Uint32(buf[12:])
	if size < 92 || size > gptSectorSize {
		return h, fmt.Errorf("%w at LBA %d: header size %d", errNoGPT, lba, size)
	}
	want := le.Uint32(buf[16:])
	clear(buf[16:20])
	if got := crc32.ChecksumIEEE(buf[:size]); got != want {
		return h, fmt.Errorf("%w at LBA %d: header CRC %08x, want %08x", errNoGPT, lba, got, want)
	}
	h = gptHeader{
		myLBA:       le.Uint64(buf[24:]),
		altLBA:      le.Uint64(buf[32:]),
		firstUsable: le.Uint64(buf[40:]),
		lastUsable:  le.Uint64(buf[48:]),
		entriesLBA:  le.Uint64(buf[72:]),
		count:       le.Uint32(buf[80:]),
		entrySize:   le.Uint32(buf[84:]),
		entriesCRC:  le.Uint32(buf[88:]),
	}
	if h.myLBA != lba {
		return h, fmt.Errorf("%w at LBA %d: header claims LBA %d", errNoGPT, lba, h.myLBA)
	}
	if h.entrySize < 128 || h.entrySize%8 != 0 || h.count == 0 || uint64(h.count)*uint64(h.entrySize) > 1<<20 {
		return h, fmt.Errorf("%w at LBA %d: %d entries of %d bytes", errNoGPT, lba, h.count, h.entrySize)
	}
	return h, nil
}

// readGPT parses the GPT of a disk with 512-byte sectors and returns its used
// entries. It checks both headers' CRCs and the primary entry array's CRC,
// so that a table damaged by a later write to the image (such as a
// misplaced mke2fs offset) is caught rather than misread.
func readGPT(r io.ReaderAt, size int64) ([]Partition, error) {
	lastLBA := uint64(size/gptSectorSize - 1)
	h, err := readGPTHeader(r, 1)
	if err != nil {
		return nil, err
	}
	if h.altLBA != lastLBA {
		return nil, fmt.Errorf("%w: backup header at LBA %d, want %d", errNoGPT, h.altLBA, lastLBA)
	}
	if _, err := readGPTHeader(r, lastLBA); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	entries := make([]byte, int(h.count)*int(h.entrySize))
	if _, err := r.ReadAt(entries, int64(h.entriesLBA)*gptSectorSize); err != nil {
		return nil, fmt.Errorf("read GPT entries: %w", err)
	}
	if got := crc32.ChecksumIEEE(entries); got != h.entriesCRC {
		return nil, fmt.Errorf("%w: entry array CRC %08x, want %08x", errNoGPT, got, h.entriesCRC)
	}

	le := binary.LittleEndian
	var parts []Partition
	for i := range int(h.count) {
		e := entries[i*int(h.entrySize):][:h.entrySize]
		if !slices.ContainsFunc(e[:16], func(b byte) bool { return b != 0 }) {
			continue // unused entry
		}
		first, last := le.Uint64(e[32:]), le.Uint64(e[40:])
		if first < h.firstUsable || last > h.lastUsable || last < first {
			return nil, fmt.Errorf("GPT entry %d spans LBA %d-%d outside usable %d-%d", i+1, first, last, h.firstUsable, h.lastUsable)
		}
		name := make([]uint16, 36)
		for j := range name {
			name[j] = le.Uint16(e[56+2*j:])
		}
		if k := slices.Index(name, 0); k >= 0 {
			name = name[:k]
		}
		parts = append(parts, Partition{
			Number:   i + 1,
			Name:     string(utf16.Decode(name)),
			Start:    int64(first) * gptSectorSize,
			Length:   int64(last-first+1) * gptSectorSize,
			TypeGUID: formatMixedEndianGUID(e[:16]),
		})
	}
	return parts, nil
}

// formatMixedEndianGUID formats a GUID stored as GPT and UEFI do, with the
// first three fields little-endian.
func formatMixedEndianGUID(b []byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}
