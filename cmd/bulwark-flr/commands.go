package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
)

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func (a *app) pointsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "points",
		Short: "List this VM's restore points, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			points, err := cn.c.Points(cmd.Context(), cn.vm.Source.Name)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "VM %s (BIOS UUID %s)\n", cn.vm.Source.VMName, cn.vm.BIOSUUID)
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "POINT\tTIME\tCONSISTENCY\tDISKS")
			for _, p := range points {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", p.ID, p.Time.Local().Format(time.DateTime), p.Consistency, len(p.Disks))
			}
			return tw.Flush()
		},
	}
}

func (a *app) volumesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "volumes POINT",
		Short: "List a point's volumes: disks, partitions and LVs, with their filesystems",
		Long:  "POINT is a point's ID, a prefix of it, or \"latest\".",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			p, err := cn.point(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			vols, err := cn.c.Volumes(cmd.Context(), p.ID)
			if err != nil {
				return err
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "VOLUME\tKIND\tFILESYSTEM\tLABEL\tSIZE\tNOTE")
			for _, v := range vols {
				note := v.Error
				if note == "" {
					note = v.Warning
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Kind, v.FSType, v.Label, formatBytes(v.Size), note)
			}
			return tw.Flush()
		},
	}
}

func (a *app) lsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ls POINT VOLUME [PATH]",
		Short: "List a directory of a volume, or show a file",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			cn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			p, err := cn.point(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			name := "."
			if len(args) == 3 {
				name = volumePath(args[2])
			}
			// A symlink to a directory is listed as the directory, as ls does.
			file, entries, problems, err := cn.c.ListAll(cmd.Context(), p.ID, args[1], name, false)
			if err == nil && file.Type == "symlink" {
				var target fileapi.FileView
				if target, err = cn.c.Stat(cmd.Context(), p.ID, args[1], name, true); err == nil && target.Type == "dir" {
					file, entries, problems, err = cn.c.ListAll(cmd.Context(), p.ID, args[1], name, true)
				}
			}
			if err != nil {
				return err
			}
			if file.Type != "dir" {
				entries = []fileapi.FileView{file}
			}
			tw := newTable(a.stdout)
			for _, e := range entries {
				fmt.Fprintln(tw, lsLine(e))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, pr := range problems {
				fmt.Fprintf(a.stderr, "bulwark-flr: %s\n", pr)
			}
			return nil
		},
	}
}

// lsLine shows a file as ls -l does.
func lsLine(e fileapi.FileView) string {
	if e.Error != "" {
		return fmt.Sprintf("?\t\t\t\t%s\t(%s)", e.Name, e.Error)
	}
	owner := "-\t-"
	if e.UID != nil && e.GID != nil {
		owner = fmt.Sprintf("%d\t%d", *e.UID, *e.GID)
	}
	name := e.Name
	if e.Target != "" {
		name += " -> " + e.Target
	}
	return fmt.Sprintf("%s\t%s\t%d\t%s\t%s", fileapi.FileModeOf(e.Mode), owner, e.Size, e.Mtime.Local().Format(time.DateTime), name)
}

func (a *app) findCommand() *cobra.Command {
	var under string
	var limit int
	cmd := &cobra.Command{
		Use:   "find POINT VOLUME PATTERN",
		Short: "Find files by name: a glob (*, ?, [...]) or a substring, case aside",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			cn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			p, err := cn.point(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			res, err := cn.c.Search(cmd.Context(), p.ID, args[1], volumePath(under), args[2], limit)
			if err != nil {
				return err
			}
			for _, m := range res.Matches {
				suffix := ""
				if m.Type == "dir" {
					suffix = "/"
				}
				fmt.Fprintf(a.stdout, "/%s%s\n", m.Path, suffix)
			}
			for _, e := range res.Errors {
				fmt.Fprintf(a.stderr, "bulwark-flr: %s\n", e)
			}
			if !res.Complete {
				fmt.Fprintf(a.stderr, "bulwark-flr: the search stopped early; there may be more matches\n")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&under, "path", "/", "search below this directory of the volume")
	cmd.Flags().IntVar(&limit, "limit", 1000, "the most matches to show")
	return cmd
}

// volumePath turns a path as a user gives it ("/etc/hosts", "etc/") into
// a path of the volume as the API takes it. ".." elements stop at the
// root, as they do there.
func volumePath(p string) string {
	var elems []string
	if runtime.GOOS == "windows" {
		p = strings.ReplaceAll(p, "\\", "/")
	}
	for e := range strings.SplitSeq(p, "/") {
		switch e {
		case "", ".":
		case "..":
			if len(elems) > 0 {
				elems = elems[:len(elems)-1]
			}
		default:
			elems = append(elems, e)
		}
	}
	if len(elems) == 0 {
		return "."
	}
	return strings.Join(elems, "/")
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
