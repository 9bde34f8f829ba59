package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

// stages shows a progress bar per stage of a long task.
type stages struct {
	a     *app
	name  string
	cur   *progress
	stage string
}

func (st *stages) update(stage string, done, total int64) {
	if stage != st.stage {
		st.finish()
		st.stage, st.cur = stage, newProgress(st.a.stderr, st.name+" "+stage)
	}
	st.cur.update(done, total)
}

func (st *stages) finish() {
	if st.cur != nil {
		st.cur.finish()
		st.cur = nil
	}
}

func (a *app) pruneCommand() *cobra.Command {
	var p retention.Policy
	var within, zone string
	var dryRun bool
	var job string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete the points that no retention rule keeps",
		Long: `Prune applies the retention rules to the points of each source and deletes
the points no rule keeps; pinned points are always kept. It lists every point
with the rules that keep it. The space is given back by "bulwark gc".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var err error
			if p.Location, err = time.LoadLocation(zone); err != nil {
				return fmt.Errorf("--time-zone: %w", err)
			}
			if within != "" {
				if p.Within, err = retention.ParseSpan(within); err != nil {
					return fmt.Errorf("--keep-within: %w", err)
				}
			}
			if err := p.Validate(); err != nil {
				return err
			}
			mode := forWriting
			if dryRun {
				mode = forReading
			}
			s, err := a.openStore(ctx, "prune", mode)
			if err != nil {
				return err
			}
			defer s.Close()
			decisions, err := s.Prune(ctx, p, chunkstore.PruneOptions{DryRun: dryRun, Job: job})
			if decisions == nil && err != nil {
				return err
			}
			type row struct {
				ID      string    `json:"id"`
				Source  string    `json:"source"`
				Time    time.Time `json:"time"`
				Keep    bool      `json:"keep"`
				Reasons []string  `json:"reasons"`
			}
			rows := make([]row, len(decisions))
			removed := 0
			for i, d := range decisions {
				rows[i] = row{ID: d.Point.ID.String(), Source: d.Point.Source.Name, Time: d.Point.Time, Keep: d.Keep, Reasons: d.Reasons}
				if rows[i].Reasons == nil {
					rows[i].Reasons = []string{}
				}
				if !d.Keep {
					removed++
				}
			}
			if a.jsonOut {
				if perr := printJSON(a.stdout, map[string]any{"dry_run": dryRun, "policy": p.String(), "points": rows}); perr != nil {
					return perr
				}
				return err
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tSOURCE\tTIME\tDECISION\tKEPT BY")
			for _, r := range rows {
				what := "keep"
				if !r.Keep {
					what = "remove"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID[:16], r.Source, r.Time.In(p.Location).Format(time.DateTime), what, strings.Join(r.Reasons, ", "))
			}
			if ferr := tw.Flush(); ferr != nil {
				return ferr
			}
			if dryRun {
				fmt.Fprintf(a.stdout, "dry run: %d of %d points would be removed\n", removed, len(rows))
			} else {
				fmt.Fprintf(a.stdout, "%d of %d points removed; run \"bulwark gc\" to give back their space\n", removed, len(rows))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&p.Last, "keep-last", 0, "keep the newest N points (-1: all)")
	f.IntVar(&p.Hourly, "keep-hourly", 0, "keep the newest point of each of the last N hours that have one (-1: all)")
	f.IntVar(&p.Daily, "keep-daily", 0, "keep the newest point of each of the last N days that have one (-1: all)")
	f.IntVar(&p.Weekly, "keep-weekly", 0, "keep the newest point of each of the last N ISO weeks that have one (-1: all)")
	f.IntVar(&p.Monthly, "keep-monthly", 0, "keep the newest point of each of the last N months that have one (-1: all)")
	f.IntVar(&p.Quarterly, "keep-quarterly", 0, "keep the newest point of each of the last N quarters that have one (-1: all)")
	f.IntVar(&p.Yearly, "keep-yearly", 0, "keep the newest point of each of the last N years that have one (-1: all)")
	f.StringVar(&within, "keep-within", "", "keep the points taken within SPAN (such as 30d, 1y6m, 36h) of a source's newest point")
	f.StringVar(&zone, "time-zone", "UTC", "time zone of the calendar that hours, days, weeks, months and years follow")
	f.BoolVar(&dryRun, "dry-run", false, "only show what would be removed")
	f.StringVar(&job, "job", "", "prune only the points this job made")
	a.storeFlags(cmd)
	a.jsonFlag(cmd, "print a JSON object")
	return cmd
}

func (a *app) pointCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "point", Short: "Pin, unpin or delete one restore point"}
	pin := func(use, short string, do func(context.Context, *chunkstore.Store, string) (string, error)) *cobra.Command {
		c := &cobra.Command{
			Use: use + " POINT", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx := cmd.Context()
				s, err := a.openStore(ctx, "point "+use, forWriting)
				if err != nil {
					return err
				}
				defer s.Close()
				msg, err := do(ctx, s, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, msg)
				return nil
			},
		}
		a.storeFlags(c)
		return c
	}
	cmd.AddCommand(
		pin("pin", "Keep a point whatever the retention rules say", func(ctx context.Context, s *chunkstore.Store, arg string) (string, error) {
			id, err := s.ResolvePoint(ctx, arg, "")
			if err != nil {
				return "", err
			}
			if err := s.Pin(ctx, id); err != nil {
				return "", err
			}
			return "point " + id.String() + " pinned", nil
		}),
		pin("unpin", "Let the retention rules prune a point again", func(ctx context.Context, s *chunkstore.Store, arg string) (string, error) {
			id, err := s.ResolvePoint(ctx, arg, "")
			if err != nil {
				return "", err
			}
			was, err := s.Unpin(ctx, id)
			if err != nil {
				return "", err
			}
			if !was {
				return "point " + id.String() + " was not pinned", nil
			}
			return "point " + id.String() + " unpinned", nil
		}),
		pin("delete", "Delete a point; its space is given back by gc", func(ctx context.Context, s *chunkstore.Store, arg string) (string, error) {
			id, err := s.ResolvePoint(ctx, arg, "")
			if err != nil {
				return "", err
			}
			if err := s.DeletePoint(ctx, id); err != nil {
				return "", err
			}
			return "point " + id.String() + " deleted", nil
		}),
	)
	return cmd
}

func (a *app) gcCommand() *cobra.Command {
	var below float64
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Give back the space of data that no point uses",
		Long: `GC deletes the packs that hold no chunk of any remaining point and rewrites
those whose live share is below --repack-below without their dead chunks.
Backups of this process may run meanwhile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := a.openStore(ctx, "gc", forWriting)
			if err != nil {
				return err
			}
			defer s.Close()
			bars := &stages{a: a, name: "gc"}
			st, err := s.GC(ctx, chunkstore.GCOptions{RepackBelow: below, Progress: bars.update})
			bars.finish()
			if err != nil {
				return err
			}
			if a.jsonOut {
				return printJSON(a.stdout, st)
			}
			tw := newTable(a.stdout)
			fmt.Fprintf(tw, "points\t%d\n", st.Points)
			fmt.Fprintf(tw, "live blobs\t%d\n", st.LiveBlobs)
			fmt.Fprintf(tw, "dead blobs dropped\t%d\n", st.DeadBlobs)
			fmt.Fprintf(tw, "packs deleted\t%d\n", st.PacksDeleted)
			fmt.Fprintf(tw, "packs repacked\t%d (into %d)\n", st.PacksRepacked, st.PacksWritten)
			if len(st.PacksDamaged) > 0 {
				fmt.Fprintf(tw, "packs left alone, damaged\t%s (run \"bulwark check\")\n", strings.Join(st.PacksDamaged, ", "))
			}
			fmt.Fprintf(tw, "space reclaimed\t%s (%s -> %s)\n", formatBytes(st.BytesReclaimed), formatBytes(st.BytesBefore), formatBytes(st.BytesAfter))
			fmt.Fprintf(tw, "time\t%.1f s\n", st.Seconds)
			return tw.Flush()
		},
	}
	cmd.Flags().Float64Var(&below, "repack-below", 50, "rewrite packs whose live share is below this `PERCENT` (0: only delete wholly dead packs)")
	a.storeFlags(cmd)
	a.jsonFlag(cmd, "print a JSON object")
	return cmd
}

// errDamage makes check exit non-zero after printing its report.
var errDamage = errors.New("the store is damaged")

func (a *app) checkCommand() *cobra.Command {
	var readData string
	var resume bool
	var maxTime time.Duration
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the store's structure and, with --read-data, its data",
		Long: `Check verifies that every manifest decodes, every pack is present and
well-formed, every index entry matches its pack, and every chunk of every point
is indexed. --read-data also reads packs whole (all of them, or PERCENT chosen
at random) and decrypts, decompresses and hashes every chunk again. It names
each damaged point and the packs at fault, and exits non-zero on damage.

A data check stopped by --max-time or an interrupt can be continued later with
--resume, so that a large store is verified over several nightly windows.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o := chunkstore.CheckOptions{Resume: resume}
			if readData != "" {
				v, err := strconv.ParseFloat(strings.TrimSuffix(readData, "%"), 64)
				if err != nil || v <= 0 || v > 100 {
					return fmt.Errorf("--read-data=%s: give a percentage above 0 and at most 100", readData)
				}
				o.ReadData = v
			}
			// With the writer's lock, the writer's index is checked too; a
			// store in use is checked from a private index rather than
			// waited for.
			s, err := a.openStore(ctx, "check", forWriting)
			if backend.IsLocked(err) {
				fmt.Fprintf(a.stderr, "bulwark: %v: checking from a private index; the writer's own index is not checked\n", err)
				s, err = a.openStore(ctx, "check", forReading)
			}
			if err != nil {
				return err
			}
			defer s.Close()
			runCtx := ctx
			if maxTime > 0 {
				var cancel context.CancelFunc
				runCtx, cancel = context.WithTimeout(ctx, maxTime)
				defer cancel()
			}
			bars := &stages{a: a, name: "check"}
			o.Progress = bars.update
			rep, err := s.Check(runCtx, o)
			bars.finish()
			if err != nil {
				return err
			}
			if a.jsonOut {
				if err := printJSON(a.stdout, rep); err != nil {
					return err
				}
			} else {
				a.printCheck(rep)
			}
			if !rep.OK() {
				return fmt.Errorf("%w: %d problems, %d damaged points", errDamage, len(rep.Problems), len(rep.DamagedPoints))
			}
			if rep.Incomplete && ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&readData, "read-data", "", "also read and verify all the data, or `PERCENT` of the packs")
	cmd.Flags().Lookup("read-data").NoOptDefVal = "100"
	cmd.Flags().BoolVar(&resume, "resume", false, "continue the last data check that was stopped before its end")
	cmd.Flags().DurationVar(&maxTime, "max-time", 0, "stop the data check after this long, to be resumed later")
	a.storeFlags(cmd)
	a.jsonFlag(cmd, "print a JSON object")
	return cmd
}

func (a *app) printCheck(rep *chunkstore.CheckReport) {
	w := a.stdout
	fmt.Fprintf(w, "%d points, %d packs, %d blobs checked", rep.Points, rep.Packs, rep.Blobs)
	if rep.DataPacksTotal > 0 || rep.DataPacks > 0 {
		fmt.Fprintf(w, "; data read of %d of %d packs", rep.DataPacks, rep.DataPacksTotal)
		if rep.Resumed {
			fmt.Fprint(w, " (resumed)")
		}
	}
	fmt.Fprintf(w, " in %.1f s\n", rep.Seconds)
	if rep.Incomplete {
		fmt.Fprintln(w, "the data check stopped before its end: run again with --resume to continue it")
	}
	if rep.OK() {
		fmt.Fprintln(w, "no damage found")
		return
	}
	fmt.Fprintf(w, "\n%d problems:\n", len(rep.Problems))
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  %s %s: %s\n", p.Kind, p.Object, p.Detail)
	}
	if len(rep.DamagedPacks) > 0 {
		fmt.Fprintf(w, "\ndamaged packs:\n")
		for _, p := range rep.DamagedPacks {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	fmt.Fprintf(w, "\n%d damaged points:\n", len(rep.DamagedPoints))
	for _, d := range rep.DamagedPoints {
		fmt.Fprintf(w, "  %s  %s  %s\n", d.ID, d.Source, d.Time.Local().Format(time.DateTime))
		for _, p := range d.Problems {
			fmt.Fprintf(w, "    %s\n", p)
		}
	}
}

func (a *app) indexCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "index", Short: "Manage the store's index"}
	rebuild := &cobra.Command{
		Use:   "rebuild",
		Short: "Rebuild the index from the packs and manifests alone",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			start := time.Now()
			s, err := a.openStore(ctx, "index rebuild", forRebuild)
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.Stats(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "index rebuilt in %.1f s: %d packs, %d chunks, %d map pages, %d points\n",
				time.Since(start).Seconds(), st.Packs, st.Chunks, st.MapPages, st.Points)
			return nil
		},
	}
	a.storeFlags(rebuild)
	cmd.AddCommand(rebuild)
	return cmd
}
