package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// area is a byte range of the disk image.
type area struct {
	Off, Len int64
}

// extent maps file blocks to file system blocks, as debugfs prints them.
type extent struct {
	Logical, Physical, Len int64 // in file system blocks
	Uninit                 bool
}

// changeSet is an in-place change of a deterministic selection of files
// of a disk image.
type changeSet struct {
	Files     int    // files changed
	Bytes     int64  // bytes changed
	Areas     []area // merged, sorted by offset
	AreasFile string // one "OFFSET LENGTH" line per area, the format of Bulwark's --changed
	SavedFile string // the original bytes of the areas, one after the other
	Seed      uint64 // seed of the replacement bytes
}

// planChange selects about pct percent of the image's file data, finds the
// file system blocks holding it and writes the areas file. It saves the
// original bytes of the areas so that the change can be reverted.
func planChange(ctx context.Context, log *slog.Logger, debugfs string, img *diskImage, pct float64, seed uint64) (*changeSet, error) {
	files := selectFiles(img.Files, pct)
	if len(files) == 0 {
		return nil, fmt.Errorf("plan change: no files selected for --change-pct %g", pct)
	}
	dir := filepath.Dir(img.Path)
	extents, withData, err := fileExtents(ctx, debugfs, img.fsDevice(), dir, files)
	if err != nil {
		return nil, fmt.Errorf("plan change: %w", err)
	}
	cs := &changeSet{
		Files:     withData,
		Areas:     mergeAreas(extentAreas(extents, img.BlockSize, img.PartOffset)),
		AreasFile: filepath.Join(dir, "changed.txt"),
		SavedFile: filepath.Join(dir, "changed-original.bin"),
		Seed:      seed,
	}
	for _, a := range cs.Areas {
		cs.Bytes += a.Len
	}
	if err := writeAreas(cs.AreasFile, cs.Areas); err != nil {
		return nil, fmt.Errorf("plan change: %w", err)
	}
	if err := copyAreas(img.Path, cs.SavedFile, cs.Areas); err != nil {
		return nil, fmt.Errorf("plan change: %w", err)
	}
	log.Info("planned in-place change", "files", cs.Files, "bytes", formatBytes(cs.Bytes), "areas", len(cs.Areas), "list", cs.AreasFile)
	return cs, nil
}

// apply overwrites the areas with pseudo-random bytes, the same every time,
// as a program rewriting the files in place would.
func (cs *changeSet) apply(img *diskImage) error {
	if err := overwriteAreas(img.Path, cs.Areas, cs.Seed); err != nil {
		return fmt.Errorf("change image: %w", err)
	}
	return nil
}

// revert writes the saved original bytes back.
func (cs *changeSet) revert(img *diskImage) error {
	saved, err := os.Open(cs.SavedFile)
	if err != nil {
		return fmt.Errorf("revert change: %w", err)
	}
	defer saved.Close()
	if err := writeAreasFrom(img.Path, cs.Areas, saved); err != nil {
		return fmt.Errorf("revert change: %w", err)
	}
	return nil
}

// selectFiles picks every Nth file, N being 100/pct, starting again one file
// further on while the picked files hold less than pct percent of all file
// data. Empty files, files larger than a quarter of the target (so that no
// single file dominates) and names debugfs cannot quote are skipped.
func selectFiles(files []sourceFile, pct float64) []sourceFile {
	var total int64
	for _, f := range files {
		total += f.Size
	}
	target := int64(float64(total) * pct / 100)
	if target <= 0 || pct <= 0 {
		return nil
	}
	stride := max(1, int(math.Round(100/pct)))
	largest := max(target/4, 1<<20)
	var picked []sourceFile
	var got int64
	for start := 0; start < stride && got < target; start++ {
		for i := start; i < len(files) && got < target; i += stride {
			f := files[i]
			if f.Size == 0 || f.Size > largest || !debugfsQuotable(f.Path) {
				continue
			}
			picked = append(picked, f)
			got += f.Size
		}
	}
	slices.SortFunc(picked, func(a, b sourceFile) int { return strings.Compare(a.Path, b.Path) })
	return picked
}

// debugfsQuotable reports whether p can be passed to debugfs in double
// quotes.
func debugfsQuotable(p string) bool {
	return !strings.ContainsAny(p, "\"\\\n\r\t")
}

// fileExtents asks debugfs for the leaf extents of files, all in one run
// with a command script written to dir. It also returns how many of the files
// have data blocks: mke2fs leaves blocks of zeros out, so a file of zeros
// has none.
func fileExtents(ctx context.Context, debugfs, device, dir string, files []sourceFile) (extents []extent, withData int, err error) {
	script, err := os.CreateTemp(dir, "debugfs-*.cmd")
	if err != nil {
		return nil, 0, fmt.Errorf("debugfs script: %w", err)
	}
	defer os.Remove(script.Name())
	w := bufio.NewWriter(script)
	for _, f := range files {
		fmt.Fprintf(w, "ex -l \"/%s\"\n", f.Path)
	}
	if err := w.Flush(); err != nil {
		script.Close()
		return nil, 0, fmt.Errorf("debugfs script: %w", err)
	}
	if err := script.Close(); err != nil {
		return nil, 0, fmt.Errorf("debugfs script: %w", err)
	}
	c := command{Path: debugfs, Args: []string{"-f", script.Name(), device}}
	_, out, err := c.run(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("debugfs: %w", err)
	}
	groups, err := parseExtents(bytes.NewReader(out))
	if err != nil {
		return nil, 0, fmt.Errorf("debugfs: %w", err)
	}
	if len(groups) != len(files) {
		return nil, 0, fmt.Errorf("debugfs answered %d of %d commands", len(groups), len(files))
	}
	for _, g := range groups {
		if len(g) > 0 {
			withData++
		}
		extents = append(extents, g...)
	}
	if len(extents) == 0 {
		return nil, 0, fmt.Errorf("debugfs reported no extents for %d files", len(files))
	}
	return extents, withData, nil
}

// extentLine matches a line of debugfs "ex" output such as
//
//	1/ 1   2/  8   235 -   958   8962 -   9685    724 Uninit
var extentLine = regexp.MustCompile(`^\s*\d+/\s*\d+\s+\d+/\s*\d+\s+(\d+)\s*-\s*(\d+)\s+(\d+)\s*-\s*(\d+)\s+(\d+)\s*(.*)$`)

// parseExtents reads the extent lines of debugfs "ex -l" output, grouped by
// command: every "debugfs: " command echo starts a group. Headers and other
// lines are skipped; a line that looks like an extent but is inconsistent is
// an error.
func parseExtents(r io.Reader) ([][]extent, error) {
	var groups [][]extent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "debugfs: ") {
			groups = append(groups, nil)
			continue
		}
		m := extentLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var n [5]int64
		for i := range n {
			v, err := strconv.ParseInt(m[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse extent %q: %w", sc.Text(), err)
			}
			n[i] = v
		}
		e := extent{Logical: n[0], Physical: n[2], Len: n[4], Uninit: strings.Contains(m[6], "Uninit")}
		if n[1]-n[0]+1 != e.Len || n[3]-n[2]+1 != e.Len {
			return nil, fmt.Errorf("parse extent %q: ranges disagree with length", sc.Text())
		}
		if len(groups) == 0 {
			groups = append(groups, nil) // output of debugfs -R has no echo
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], e)
	}
	return groups, sc.Err()
}

// extentAreas converts initialised extents of a file system that starts at
// byte offset base into byte areas of the image.
func extentAreas(extents []extent, blockSize, base int64) []area {
	areas := make([]area, 0, len(extents))
	for _, e := range extents {
		if e.Uninit || e.Len <= 0 {
			continue
		}
		areas = append(areas, area{Off: base + e.Physical*blockSize, Len: e.Len * blockSize})
	}
	return areas
}

// mergeAreas sorts areas and joins those that overlap or touch.
func mergeAreas(areas []area) []area {
	sorted := slices.Clone(areas)
	slices.SortFunc(sorted, func(a, b area) int { return cmp.Compare(a.Off, b.Off) })
	var out []area
	for _, a := range sorted {
		if a.Len <= 0 {
			continue
		}
		if n := len(out); n > 0 && a.Off <= out[n-1].Off+out[n-1].Len {
			last := &out[n-1]
			last.Len = max(last.Off+last.Len, a.Off+a.Len) - last.Off
			continue
		}
		out = append(out, a)
	}
	return out
}

// overwriteAreas fills areas of the file at path with bytes from a ChaCha8
// stream seeded with seed.
func overwriteAreas(path string, areas []area, seed uint64) error {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return writeAreasFrom(path, areas, rand.NewChaCha8(key))
}

// writeAreasFrom fills areas of the file at path, in order, with bytes read
// from r and syncs the file.
func writeAreasFrom(path string, areas []area, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, a := range areas {
		for done := int64(0); done < a.Len; {
			b := buf[:min(int64(len(buf)), a.Len-done)]
			if _, err := io.ReadFull(r, b); err != nil {
				f.Close()
				return fmt.Errorf("fill %s at %d: %w", path, a.Off+done, err)
			}
			if _, err := f.WriteAt(b, a.Off+done); err != nil {
				f.Close()
				return err
			}
			done += int64(len(b))
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copyAreas copies areas of the file at src, in order, into a new file dst.
func copyAreas(src, dst string, areas []area) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	for _, a := range areas {
		if _, err := io.CopyN(out, io.NewSectionReader(in, a.Off, a.Len), a.Len); err != nil {
			out.Close()
			return fmt.Errorf("save %s: %w", dst, err)
		}
	}
	return out.Close()
}

// writeAreas writes one "OFFSET LENGTH" line per area.
func writeAreas(path string, areas []area) error {
	var b strings.Builder
	for _, a := range areas {
		fmt.Fprintf(&b, "%d %d\n", a.Off, a.Len)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write changed areas: %w", err)
	}
	return nil
}
