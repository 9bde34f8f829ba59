package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) pointsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "points",
		Short: "List restore points",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := a.openStore(ctx, "points", forReading)
			if err != nil {
				return err
			}
			defer s.Close()
			points, err := s.Points(ctx)
			if err != nil {
				return err
			}
			type row struct {
				ID       string    `json:"id"`
				Source   string    `json:"source"`
				VM       string    `json:"vm,omitempty"`
				Job      string    `json:"job,omitempty"`
				Time     time.Time `json:"time"`
				Parent   string    `json:"parent,omitempty"`
				Disks    int       `json:"disks"`
				Size     int64     `json:"size"`
				Data     int64     `json:"data_bytes"`
				Stored   int64     `json:"bytes_stored"`
				FullRead bool      `json:"full_read"`
			}
			rows := make([]row, 0, len(points))
			for _, p := range points {
				r := row{ID: p.ID.String(), Source: p.Source.Name, VM: p.Source.VMName, Job: p.Job, Time: p.Time, Disks: len(p.Disks), Stored: p.Stats.BytesStored}
				if p.Parent != nil {
					r.Parent = p.Parent.String()
				}
				for _, d := range p.Disks {
					r.Size += d.Capacity
					r.Data += d.DataBytes
					r.FullRead = r.FullRead || d.FullRead != ""
				}
				rows = append(rows, r)
			}
			if a.jsonOut {
				return printJSON(a.stdout, rows)
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tSOURCE\tTIME\tSIZE\tDATA\tSTORED\tKIND")
			for _, r := range rows {
				kind := "incremental"
				if r.FullRead {
					kind = "full"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID[:16], sourceLabel(r.Source, r.VM), r.Time.Local().Format(time.DateTime),
					formatBytes(r.Size), formatBytes(r.Data), formatBytes(r.Stored), kind)
			}
			return tw.Flush()
		},
	}
	a.storeFlags(cmd)
	a.jsonFlag(cmd, "print a JSON array")
	return cmd
}

func (a *app) statsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show what a store holds and how well it deduplicates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := a.openStore(ctx, "stats", forReading)
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.Stats(ctx)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return printJSON(a.stdout, st)
			}
			tw := newTable(a.stdout)
			fmt.Fprintf(tw, "points\t%d\n", st.Points)
			fmt.Fprintf(tw, "logical bytes\t%s\n", formatBytes(st.LogicalBytes))
			fmt.Fprintf(tw, "data bytes (not zero)\t%s\n", formatBytes(st.DataBytes))
			fmt.Fprintf(tw, "unique bytes\t%s\n", formatBytes(st.UniqueBytes))
			fmt.Fprintf(tw, "stored bytes\t%s\n", formatBytes(st.StoredBytes))
			fmt.Fprintf(tw, "dedup ratio\t%.2f\n", st.DedupRatio)
			fmt.Fprintf(tw, "compression ratio\t%.2f\n", st.CompressionRatio)
			fmt.Fprintf(tw, "chunks\t%d\n", st.Chunks)
			fmt.Fprintf(tw, "map pages\t%d\n", st.MapPages)
			fmt.Fprintf(tw, "packs\t%d\n", st.Packs)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			tw = newTable(a.stdout)
			fmt.Fprintln(tw, "SOURCE\tPOINTS\tDATA\tUNIQUE\tDEDUP")
			for _, src := range st.Sources {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.2f\n", src.Name, src.Points, formatBytes(src.DataBytes), formatBytes(src.UniqueBytes), src.DedupRatio)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			tw = newTable(a.stdout)
			fmt.Fprintln(tw, "POINT\tSOURCE\tTIME\tDATA\tDELETING IT FREES")
			for _, p := range st.PointsSpace {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID[:16], p.Source, p.Time.Local().Format(time.DateTime), formatBytes(p.DataBytes), formatBytes(p.FreesBytes))
			}
			return tw.Flush()
		},
	}
	a.storeFlags(cmd)
	a.jsonFlag(cmd, "print a JSON object")
	return cmd
}

// sourceLabel names a point's source for people: a VM by its name, since its
// source is a pair of UUIDs that survives renames.
func sourceLabel(source, vm string) string {
	if vm != "" {
		return "VM " + vm
	}
	return source
}
