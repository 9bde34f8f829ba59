package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

func (a *app) imageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Back up and restore raw disk images and block devices"}
	cmd.AddCommand(a.imageBackupCommand(), a.imageRestoreCommand())
	return cmd
}

// backupSummary is what "image backup --json" prints.
type backupSummary struct {
	Point       string  `json:"point"`
	Source      string  `json:"source"`
	Parent      string  `json:"parent,omitempty"`
	FullRead    string  `json:"full_read,omitempty"`
	Size        int64   `json:"size"`
	BytesRead   int64   `json:"bytes_read"`
	BytesNew    int64   `json:"bytes_new"`
	BytesStored int64   `json:"bytes_stored"`
	Chunks      int64   `json:"chunks"`
	NewChunks   int64   `json:"new_chunks"`
	Seconds     float64 `json:"seconds"`
}

func (a *app) imageBackupCommand() *cobra.Command {
	var source, parent, changed string
	cmd := &cobra.Command{
		Use:   "backup IMAGE",
		Short: "Back up a raw image file or block device as a new point",
		Long: `Back up IMAGE as a new restore point of --source.

With --parent and --changed, only the areas listed in FILE (one "OFFSET LENGTH"
per line, decimal bytes) are read, widened to the parent's chunk boundaries;
the rest of the parent is kept. With --parent alone, the whole image is read
and deduplicated against the parent. Prints the new point's ID last.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			start := time.Now()
			if changed != "" && parent == "" {
				return errors.New("--changed needs --parent: changed areas are relative to a parent point")
			}
			if source == "" {
				return errors.New("--source is required: it names what the image is a backup of")
			}
			img, err := openImage(args[0])
			if err != nil {
				return err
			}
			defer img.Close()
			s, err := a.openStore(ctx, "image backup", forWriting)
			if err != nil {
				return err
			}
			defer s.Close()

			opts := chunkstore.BackupOptions{Source: chunkstore.Source{Name: source}, Consistency: "image"}
			spec := chunkstore.DiskSpec{Label: img.name, Reader: img, Size: img.size}
			if parent != "" {
				pid, err := s.ResolvePoint(ctx, parent, source)
				if err != nil {
					return fmt.Errorf("--parent: %w", err)
				}
				opts.Parent = &pid
			}
			if changed != "" {
				f, err := os.Open(changed)
				if err != nil {
					return fmt.Errorf("--changed: %w", err)
				}
				spec.Changed, err = diskmap.ParseAreas(f, img.size)
				f.Close()
				if err != nil {
					return fmt.Errorf("--changed %s: %w", changed, err)
				}
			}
			// Holes read as zero: whatever else is read, they need not be.
			if spec.Allocated, err = img.allocated(); err != nil {
				return err
			}
			bar := newProgress(a.stderr, "backup")
			spec.Progress = bar.update
			b, err := s.NewBackup(ctx, opts)
			if err != nil {
				return err
			}
			defer b.Close()
			dst, err := b.AddDisk(ctx, spec)
			bar.finish()
			if err != nil {
				return err
			}
			pt, err := b.Commit(ctx)
			if err != nil {
				return err
			}
			sum := backupSummary{
				Point: pt.ID.String(), Source: source, FullRead: pt.Disks[0].FullRead, Size: img.size,
				BytesRead: dst.BytesRead, BytesNew: dst.BytesNew, BytesStored: pt.Stats.BytesStored,
				Chunks: dst.Chunks, NewChunks: dst.NewChunks, Seconds: time.Since(start).Seconds(),
			}
			if opts.Parent != nil {
				sum.Parent = opts.Parent.String()
			}
			if a.jsonOut {
				return printJSON(a.stdout, sum)
			}
			fmt.Fprintf(a.stdout, "read %s, new %s, stored %s in %.1fs\n",
				formatBytes(sum.BytesRead), formatBytes(sum.BytesNew), formatBytes(sum.BytesStored), sum.Seconds)
			fmt.Fprintln(a.stdout, sum.Point)
			return nil
		},
	}
	a.storeFlags(cmd)
	a.jsonFlag(cmd, "print a JSON summary instead of the point ID")
	cmd.Flags().StringVar(&source, "source", "", "name of what is backed up; points are grouped by it (required)")
	cmd.Flags().StringVar(&parent, "parent", "", "point this backup is an incremental of (ID, prefix, or \"latest\" of --source)")
	cmd.Flags().StringVar(&changed, "changed", "", "file listing the areas changed since --parent")
	return cmd
}

func (a *app) imageRestoreCommand() *cobra.Command {
	var disk int
	cmd := &cobra.Command{
		Use:   "restore POINT OUTPUT",
		Short: "Restore a disk of a point to an image file or block device",
		Long: `Restore disk --disk of POINT to OUTPUT, bit-exact. A regular file is created
(or truncated) and written sparse, with holes where the disk is zero; a block
device is written whole.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := a.openStore(ctx, "image restore", forReading)
			if err != nil {
				return err
			}
			defer s.Close()
			pid, err := s.ResolvePoint(ctx, args[0], "")
			if err != nil {
				return err
			}
			p, err := s.LoadPoint(ctx, pid)
			if err != nil {
				return err
			}
			d, err := p.Disk(disk)
			if err != nil {
				return err
			}
			out, sparse, err := createOutput(args[1], d.Capacity)
			if err != nil {
				return err
			}
			bar := newProgress(a.stderr, "restore")
			stopFlush := flushBehind(out)
			err = s.RestoreDisk(ctx, pid, disk, out, chunkstore.RestoreOptions{Sparse: sparse, Progress: bar.update})
			stopFlush()
			bar.finish()
			if err == nil {
				err = out.Sync()
			}
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("restore to %s: %w", args[1], err)
			}
			fmt.Fprintf(a.stdout, "restored point %s disk %d (%s) to %s\n", pid.Short(), disk, formatBytes(d.Capacity), args[1])
			return nil
		},
	}
	a.storeFlags(cmd)
	cmd.Flags().IntVar(&disk, "disk", 0, "index of the disk to restore")
	return cmd
}

// flushBehind starts the kernel writing f's dirty pages every tenth of a
// second until stop is called, so that the disk writes while the restore
// still decodes and the final fsync finds little left. It runs apart from
// the writers because starting writeback can block on a busy disk.
func flushBehind(f *os.File) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// createOutput opens a restore target: a regular file is truncated to size
// (so untouched ranges are holes) or a block device of at least size bytes.
func createOutput(path string, size int64) (*os.File, bool, error) {
	fi, err := os.Stat(path)
	if err == nil && fi.Mode()&os.ModeDevice != 0 {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, false, fmt.Errorf("open %s: %w", path, err)
		}
		devSize, err := f.Seek(0, 2)
		if err != nil || devSize < size {
			f.Close()
			return nil, false, fmt.Errorf("device %s holds %d bytes, the disk needs %d", path, devSize, size)
		}
		return f, false, nil
	}
	if err == nil && !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("%s is neither a regular file nor a block device", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("size %s: %w", path, err)
	}
	return f, true, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
