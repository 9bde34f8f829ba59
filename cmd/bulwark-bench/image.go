package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Fixed identifiers and a fixed file system creation time keep images of
// different runs alike; inode times still come from the copied files.
const (
	diskGUID   = "5EC0B7E2-0000-4000-8000-00000000B001"
	partGUID   = "5EC0B7E2-0000-4000-8000-00000000B002"
	fsUUID     = "5ec0b7e2-0000-4000-8000-00000000b003"
	fsFakeTime = "1700000000" // E2FSPROGS_FAKE_TIME, seconds since the epoch
	fsBlock    = 4096
)

// imageOptions says what disk image to build and how to change it.
type imageOptions struct {
	Size      int64    // apparent size of the disk image
	Data      int64    // bytes of file data to put into the file system
	Sources   []string // directories of this machine to copy files from
	ChangePct float64  // percent of the file data to overwrite in place
	Seed      uint64   // seed of the bytes written over changed files
	Keep      bool     // keep the assembled source tree
}

// imageTools are the system tools needed to build and inspect an image.
type imageTools struct {
	Sgdisk, Mke2fs, Debugfs string
}

func findImageTools() (imageTools, error) {
	var t imageTools
	var err error
	if t.Sgdisk, err = findSbinTool("sgdisk"); err != nil {
		return t, err
	}
	if t.Mke2fs, err = findSbinTool("mke2fs"); err != nil {
		return t, err
	}
	if t.Debugfs, err = findSbinTool("debugfs"); err != nil {
		return t, err
	}
	return t, nil
}

// diskImage is a sparse GPT disk image whose partition 1 holds an ext4 file
// system.
type diskImage struct {
	Path       string
	Size       int64
	PartOffset int64 // byte offset of partition 1 in the image
	PartSize   int64
	BlockSize  int64 // ext4 block size
	Files      []sourceFile
	DataBytes  int64 // sum of the file sizes
	Sources    []string
	BuildTime  time.Duration
}

// fsDevice names the ext4 file system inside the image for e2fsprogs, which
// accept an io option after "?".
func (img *diskImage) fsDevice() string {
	return fmt.Sprintf("%s?offset=%d", img.Path, img.PartOffset)
}

// buildImage assembles a source tree of real files in workDir, creates a
// sparse GPT image with one Linux partition starting at sector 2048 and
// makes an ext4 file system populated from the tree in that partition.
func buildImage(ctx context.Context, log *slog.Logger, tools imageTools, workDir string, opt imageOptions) (*diskImage, error) {
	start := time.Now()
	img := &diskImage{Path: filepath.Join(workDir, "disk.img"), Size: opt.Size, BlockSize: fsBlock, Sources: opt.Sources}
	if err := createSparse(img.Path, img.Size); err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	if err := partition(ctx, tools.Sgdisk, img); err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	if opt.Data > img.PartSize*8/10 {
		return nil, fmt.Errorf("build image: --data %s does not fit a %s partition with room for ext4 metadata; raise --size",
			formatBytes(opt.Data), formatBytes(img.PartSize))
	}

	src := filepath.Join(workDir, "src")
	files, err := assembleSource(ctx, log, opt.Sources, opt.Data, src)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	img.Files = files
	for _, f := range files {
		img.DataBytes += f.Size
	}

	log.Info("making ext4 file system", "offset", img.PartOffset, "size", formatBytes(img.PartSize))
	mkfs := command{
		Path: tools.Mke2fs,
		Args: []string{
			"-F", "-q", "-t", "ext4", "-b", strconv.Itoa(fsBlock), "-L", "bench", "-U", fsUUID,
			"-E", fmt.Sprintf("offset=%d,hash_seed=%s", img.PartOffset, fsUUID),
			"-d", src, img.Path, strconv.FormatInt(img.PartSize/fsBlock, 10),
		},
		Env: []string{"E2FSPROGS_FAKE_TIME=" + fsFakeTime},
	}
	if _, _, err := mkfs.run(ctx); err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	if !opt.Keep {
		if err := os.RemoveAll(src); err != nil {
			return nil, fmt.Errorf("build image: remove source tree: %w", err)
		}
	}
	img.BuildTime = time.Since(start)
	log.Info("image built", "path", img.Path, "files", len(img.Files), "data", formatBytes(img.DataBytes), "took", img.BuildTime.Round(time.Millisecond))
	return img, nil
}

// createSparse creates path as a sparse file of size bytes, like truncate -s.
func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// assembleSource copies up to budget bytes of regular files from roots into
// dst and returns them.
func assembleSource(ctx context.Context, log *slog.Logger, roots []string, budget int64, dst string) ([]sourceFile, error) {
	if err := os.RemoveAll(dst); err != nil {
		return nil, fmt.Errorf("assemble source: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("assemble source: %w", err)
	}
	var scanned []sourceRoot
	for _, dir := range roots {
		r, err := scanRoot(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("assemble source: %w", err)
		}
		scanned = append(scanned, r)
	}
	plan := planCopy(scanned, budget)
	log.Info("copying source files", "roots", strings.Join(roots, ","), "files", len(plan), "budget", formatBytes(budget))
	files, err := copyTree(ctx, plan, dst)
	if err != nil {
		return nil, fmt.Errorf("assemble source: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("assemble source: no readable files below %s", strings.Join(roots, ", "))
	}
	return files, nil
}

// partition writes a GPT with one Linux partition from sector 2048 to the
// end of the disk and records where sgdisk put it.
func partition(ctx context.Context, sgdisk string, img *diskImage) error {
	create := command{Path: sgdisk, Args: []string{
		"-n", "1:2048:0", "-t", "1:8300", "-U", diskGUID, "-u", "1:" + partGUID, img.Path,
	}}
	if _, _, err := create.run(ctx); err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	info := command{Path: sgdisk, Args: []string{"-p", "-i", "1", img.Path}}
	_, out, err := info.run(ctx)
	if err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	layout, err := parseSgdiskLayout(string(out))
	if err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	img.PartOffset = layout.First * layout.SectorSize
	img.PartSize = (layout.Last - layout.First + 1) * layout.SectorSize
	return nil
}

// gptLayout is where a partition lies, in sectors.
type gptLayout struct {
	SectorSize  int64
	First, Last int64
}

// parseSgdiskLayout reads the output of "sgdisk -p -i N": the logical sector
// size and the first and last sector of partition N.
func parseSgdiskLayout(out string) (gptLayout, error) {
	var l gptLayout
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		var dst *int64
		switch strings.TrimSpace(key) {
		case "Sector size (logical)":
			dst = &l.SectorSize
		case "First sector":
			dst = &l.First
		case "Last sector":
			dst = &l.Last
		default:
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return l, fmt.Errorf("parse sgdisk output line %q: %w", sc.Text(), err)
		}
		*dst = n
	}
	if l.SectorSize <= 0 || l.First <= 0 || l.Last < l.First {
		return l, fmt.Errorf("no partition layout in sgdisk output: %q", out)
	}
	return l, nil
}
