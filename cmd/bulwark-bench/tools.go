package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// backupTool is a backup program under test.
type backupTool interface {
	Name() string
	// Version names the program version for the report.
	Version(ctx context.Context) string
	// Settings describes notable settings for the report.
	Settings() string
	// Init creates an empty repository.
	Init(ctx context.Context) error
	// Backup backs the image up and returns the point (snapshot, archive)
	// it created.
	Backup(ctx context.Context, req backupRequest) (backupResult, error)
	// Restore restores a point of the image into a new file in dir and
	// returns the file's path.
	Restore(ctx context.Context, point, dir string) (string, measurement, error)
	// StoreSize returns the bytes the repository occupies.
	StoreSize() (storeSize, error)
}

// backupRequest is one backup of the disk image.
type backupRequest struct {
	Image   string
	Parent  string // point of the previous backup; empty for the first
	Changed string // file listing the areas changed since Parent; may be empty
}

// unknown marks a byte count that a tool does not report.
const unknown = -1

// backupResult is what one backup cost and what the tool said it did.
type backupResult struct {
	Point string
	measurement
	BytesRead   int64  // bytes of the image read, or unknown
	BytesNew    int64  // bytes of new (not deduplicated) data, or unknown
	BytesStored int64  // bytes added to the repository, or unknown
	Note        string // anything else the tool said, such as why it read everything
}

// storeSize is the apparent size of a repository's files, like du -sb.
type storeSize struct {
	Total        int64
	WithoutIndex int64 // Bulwark only: without the index subdirectory; else unknown
}

// dirSize sums the sizes of the regular files below root. Files below the
// top-level directory named skip are summed separately into skipped.
func dirSize(root, skip string) (total, skipped int64, err error) {
	skipDir := filepath.Join(root, skip)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		if skip != "" && strings.HasPrefix(p, skipDir+string(filepath.Separator)) {
			skipped += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("size of %s: %w", root, err)
	}
	return total, skipped, nil
}

// sha256File returns the hex SHA-256 of the file at path.
func sha256File(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 4<<20)); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops reading once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
