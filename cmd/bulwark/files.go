package main

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/restore"
	"github.com/bulwarkbackup/bulwark/restore/files"
	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/volume"
)

func (a *app) filesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "files", Short: "Browse the filesystems in a point and restore files from them"}
	cmd.AddCommand(a.filesVolumesCommand(), a.filesLsCommand(), a.filesGetCommand())
	return cmd
}

// openVolumes opens the store for reading and finds the volumes of a point.
func (a *app) openVolumes(ctx context.Context, point string) (*chunkstore.Store, blob.ID, []volume.Volume, error) {
	s, err := a.openStore(ctx, "file-level restore", forReading)
	if err != nil {
		return nil, blob.ID{}, nil, err
	}
	pid, err := s.ResolvePoint(ctx, point, "")
	if err == nil {
		var vols []volume.Volume
		if vols, err = restore.Volumes(ctx, s, pid); err == nil {
			return s, pid, vols, nil
		}
	}
	s.Close()
	return nil, blob.ID{}, nil, err
}

// openFS opens one volume's filesystem in a point.
func (a *app) openFS(ctx context.Context, point, id string) (*chunkstore.Store, *fstree.FS, error) {
	s, _, vols, err := a.openVolumes(ctx, point)
	if err != nil {
		return nil, nil, err
	}
	v, err := restore.FindVolume(vols, id)
	if err == nil {
		var fsys *fstree.FS
		if fsys, err = v.Open(); err == nil {
			return s, fsys, nil
		}
	}
	s.Close()
	return nil, nil, err
}

type volumeOut struct {
	ID     string `json:"id"`
	Disk   int    `json:"disk"`
	Kind   string `json:"kind"`
	FSType string `json:"fs_type,omitempty"`
	Label  string `json:"label,omitempty"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	Error  string `json:"error,omitempty"`
}

func (a *app) filesVolumesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volumes POINT",
		Short: "List the disks, partitions and logical volumes of a point and their filesystems",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, vols, err := a.openVolumes(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer s.Close()
			var out []volumeOut
			for _, v := range vols {
				o := volumeOut{ID: v.ID, Disk: v.Disk, Kind: v.Kind, FSType: v.FSType, Label: v.Label, Offset: v.Offset, Size: v.Size}
				if v.Err != nil {
					o.Error = v.Err.Error()
				}
				out = append(out, o)
			}
			if a.jsonOut {
				return printJSON(a.stdout, out)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tFILESYSTEM\tLABEL\tSIZE\tNOTE")
			for _, o := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.Kind, o.FSType, o.Label, formatBytes(o.Size), o.Error)
			}
			return tw.Flush()
		},
	}
	a.storeFlags(cmd)
	a.jsonFlag(cmd, "print the volumes as JSON")
	return cmd
}

type fileOut struct {
	Name   string      `json:"name"`
	Mode   string      `json:"mode"`
	Size   int64       `json:"size"`
	Mtime  time.Time   `json:"mtime"`
	Target string      `json:"target,omitempty"`
	Meta   fstree.Meta `json:"meta"`
}

func (a *app) filesLsCommand() *cobra.Command {
	var vol string
	cmd := &cobra.Command{
		Use:   "ls POINT [PATH]",
		Short: "List a directory of a volume in a point",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, fsys, err := a.openFS(cmd.Context(), args[0], vol)
			if err != nil {
				return err
			}
			defer s.Close()
			name := "."
			if len(args) == 2 {
				name = cleanPath(args[1])
			}
			info, err := fsys.Lstat(name)
			if err != nil {
				return err
			}
			var list []fileOut
			var listErr error
			if info.IsDir() {
				entries, err := fsys.ReadDir(name)
				listErr = err
				for _, e := range entries {
					i, err := e.Info()
					if err != nil {
						listErr = err
						continue
					}
					list = append(list, describe(fsys, path.Join(name, e.Name()), i))
				}
			} else {
				list = append(list, describe(fsys, name, info))
			}
			if a.jsonOut {
				if err := printJSON(a.stdout, list); err != nil {
					return err
				}
				return listErr
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 1, ' ', tabwriter.AlignRight)
			for _, f := range list {
				owner := ""
				if f.Meta.HasOwner {
					owner = fmt.Sprintf("%d:%d", f.Meta.UID, f.Meta.GID)
				}
				name := f.Name
				if f.Target != "" {
					name += " -> " + f.Target
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t %s\t\n", f.Mode, owner, f.Size, f.Mtime.Format("2006-01-02 15:04"), name)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return listErr
		},
	}
	a.storeFlags(cmd)
	a.jsonFlag(cmd, "print the entries as JSON")
	cmd.Flags().StringVar(&vol, "volume", "", "volume ID, as files volumes lists them (required)")
	_ = cmd.MarkFlagRequired("volume")
	return cmd
}

func describe(fsys *fstree.FS, name string, info fs.FileInfo) fileOut {
	f := fileOut{Name: path.Base(name), Mode: info.Mode().String(), Size: info.Size(), Mtime: info.ModTime()}
	if m, ok := fstree.MetaOf(info); ok {
		f.Meta = *m
	}
	if info.Mode().Type() == fs.ModeSymlink {
		f.Target, _ = fsys.ReadLink(name)
	}
	return f
}

// cleanPath turns a path a user typed ("/etc/hosts", "etc/", ".") into an
// io/fs name.
func cleanPath(p string) string {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

func (a *app) filesGetCommand() *cobra.Command {
	var vol, to, overwrite string
	var owner bool
	cmd := &cobra.Command{
		Use:   "get POINT PATH...",
		Short: "Restore files and folders of a volume in a point to a local directory",
		Long: `Restore files and whole folders of a volume in a point under --to, keeping
their names, modes, times, symlinks and hard links (and owners with --owner,
as root). Each file is written under a temporary name and renamed when
complete; nothing is ever written outside --to, whatever the point holds.
Only the chunks the files live in are read from the store.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := files.ParseOverwrite(overwrite)
			if err != nil {
				return fmt.Errorf("--overwrite: %w", err)
			}
			s, fsys, err := a.openFS(cmd.Context(), args[0], vol)
			if err != nil {
				return err
			}
			defer s.Close()
			var paths []string
			for _, p := range args[1:] {
				paths = append(paths, cleanPath(p))
			}
			bar := newProgress(a.stderr, "restore")
			sum, err := files.Restore(cmd.Context(), fsys, paths, to, files.Options{
				Overwrite: policy, Owner: owner, Log: a.log,
				Progress: func(p files.Progress) { bar.update(p.Bytes, p.TotalBytes) },
			})
			bar.finish()
			for _, e := range sum.Errors {
				fmt.Fprintf(a.stderr, "error: %v\n", e)
			}
			if a.jsonOut {
				if perr := printJSON(a.stdout, sum); perr != nil {
					return perr
				}
			} else {
				fmt.Fprintf(a.stdout, "restored %d files, %d folders, %d symlinks, %d hard links (%s) to %s; %d skipped, %d failed\n",
					sum.Files, sum.Dirs, sum.Symlinks, sum.HardLinks, formatBytes(sum.Bytes), to, sum.Skipped, sum.Failed)
			}
			return err
		},
	}
	a.storeFlags(cmd)
	a.jsonFlag(cmd, "print the summary as JSON")
	fl := cmd.Flags()
	fl.StringVar(&vol, "volume", "", "volume ID, as files volumes lists them (required)")
	fl.StringVar(&to, "to", "", "directory to restore into (required)")
	fl.StringVar(&overwrite, "overwrite", "never", "existing files: never, if-newer or always")
	fl.BoolVar(&owner, "owner", false, "restore owners and setuid/setgid bits (needs root)")
	_ = cmd.MarkFlagRequired("volume")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}
