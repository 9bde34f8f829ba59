package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// toolRun collects the measurements of one tool in one run of a comparison.
type toolRun struct {
	Tool       backupTool
	Full, Incr backupResult
	Restore    measurement
	// RestoreDurable is Restore followed by sync(2): the time until the
	// restored image is on disk. Bulwark syncs before it reports success;
	// restic and borg leave the writing to the kernel.
	RestoreDurable measurement
	RestoredSHA    string
	Size           storeSize
	Stats          *bulwarkStats // Bulwark only
}

// peakRSS is the largest peak RSS of the timed phases.
func (r *toolRun) peakRSS() int64 {
	return max(r.Full.MaxRSS, r.Incr.MaxRSS, r.Restore.MaxRSS)
}

// toolSpec makes fresh instances of a tool under test.
type toolSpec struct {
	Name string
	// New returns the tool with its repository and caches below dir.
	New func(dir string) backupTool
}

// toolResults are all runs of one tool.
type toolResults struct {
	Name, Version, Settings string
	IsBulwark               bool
	Runs                    []*toolRun
}

// last returns the last run, whose sizes and statistics the report shows.
func (t *toolResults) last() *toolRun { return t.Runs[len(t.Runs)-1] }

// wall returns the wall-clock times of one phase over all runs.
func (t *toolResults) wall(phase func(*toolRun) measurement) []time.Duration {
	var d []time.Duration
	for _, r := range t.Runs {
		d = append(d, phase(r).Wall)
	}
	return d
}

// peakRSS is the largest peak RSS over all runs.
func (t *toolResults) peakRSS() int64 {
	var m int64
	for _, r := range t.Runs {
		m = max(m, r.peakRSS())
	}
	return m
}

// unverified returns how many restores did not match want.
func (t *toolResults) unverified(want string) int {
	n := 0
	for _, r := range t.Runs {
		if r.RestoredSHA != want {
			n++
		}
	}
	return n
}

// comparison is the outcome of "bulwark-bench compare".
type comparison struct {
	Machine  machineInfo
	Image    *diskImage
	Change   *changeSet
	ImageSHA string // SHA-256 of the changed image
	Caches   *cacheDropper
	Runs     int
	Tools    []*toolResults
}

func runCompare(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	var cf commonFlags
	cf.register(fs, 4<<30, 3<<29)
	toolList := fs.String("tools", "bulwark,restic,borg", "comma-separated `tools` to measure")
	baseline := fs.String("baseline", "", "a second Bulwark `binary` (a build of an earlier commit, say) measured beside the first as \"Bulwark baseline\"")
	runs := fs.Int("runs", 3, "`number` of runs of the timed phases, each with fresh repositories; the tool order rotates from run to run")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bulwark-bench compare [flags]\n\nMeasure Bulwark, restic and borg on the same disk image.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("compare: unexpected arguments %q", fs.Args())
	}
	if *runs < 1 {
		return errors.New("compare: --runs must be at least 1")
	}
	opt, err := cf.imageOptions()
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	itools, err := findImageTools()
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	ws, err := newWorkspace(log, cf.Dir, 5*opt.Data+opt.Size, cf.Keep)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	defer ws.close(log)

	specs, err := toolSpecs(ctx, ws, cf.Bulwark, *toolList)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	if *baseline != "" {
		bin, err := filepath.Abs(*baseline)
		if err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		specs = append(specs, toolSpec{"Bulwark baseline", func(dir string) backupTool {
			return &bulwark{Bin: bin, Origin: "binary " + bin, Store: filepath.Join(dir, "bulwark-baseline-store"), Label: "Bulwark baseline"}
		}})
	}
	c, err := compare(ctx, log, ws, itools, opt, specs, *runs)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	if err := writeReport(stdout, cf.Out, c.markdown()); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	var bad []string
	for _, t := range c.Tools {
		if n := t.unverified(c.ImageSHA); n > 0 {
			bad = append(bad, fmt.Sprintf("%s (%d of %d runs)", t.Name, n, len(t.Runs)))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("compare: restore is NOT bit-exact for %s", strings.Join(bad, ", "))
	}
	return nil
}

// toolSpecs finds or builds the tools named in list.
func toolSpecs(ctx context.Context, ws *workspace, bulwarkBin, list string) ([]toolSpec, error) {
	var specs []toolSpec
	for _, name := range strings.Split(list, ",") {
		switch strings.TrimSpace(name) {
		case "bulwark":
			bin, origin, err := bulwarkBinary(ctx, ws, bulwarkBin)
			if err != nil {
				return nil, err
			}
			specs = append(specs, toolSpec{"Bulwark", func(dir string) backupTool {
				return &bulwark{Bin: bin, Origin: origin, Store: filepath.Join(dir, "bulwark-store")}
			}})
		case "restic":
			bin, err := findTool("restic", goBinDirs(ctx)...)
			if err != nil {
				return nil, err
			}
			specs = append(specs, toolSpec{"restic", func(dir string) backupTool {
				return &restic{Bin: bin, Repo: filepath.Join(dir, "restic-repo"), Cache: filepath.Join(dir, "restic-cache")}
			}})
		case "borg":
			bin, err := findTool("borg")
			if err != nil {
				return nil, err
			}
			specs = append(specs, toolSpec{"borg", func(dir string) backupTool {
				return &borg{Bin: bin, Repo: filepath.Join(dir, "borg-repo"), Home: filepath.Join(dir, "borg-home")}
			}})
		case "":
		default:
			return nil, fmt.Errorf("unknown tool %q (want bulwark, restic or borg)", name)
		}
	}
	if len(specs) == 0 {
		return nil, errors.New("no tools selected")
	}
	return specs, nil
}

// bulwarkBinary returns bin if set, or builds the Bulwark CLI into the
// workspace. It also describes where the binary came from.
func bulwarkBinary(ctx context.Context, ws *workspace, bin string) (path, origin string, err error) {
	if bin != "" {
		path, err := filepath.Abs(bin)
		return path, "binary " + path, err
	}
	dir, err := ws.mkdir("bin")
	if err != nil {
		return "", "", fmt.Errorf("build bulwark: %w", err)
	}
	return buildBulwark(ctx, dir)
}

// compare builds the image and measures every tool on it runs times, each
// time with fresh repositories and the tool order rotated by one.
func compare(ctx context.Context, log *slog.Logger, ws *workspace, itools imageTools, opt imageOptions, specs []toolSpec, runs int) (*comparison, error) {
	c := &comparison{Machine: readMachineInfo(), Caches: &cacheDropper{}, Runs: runs}
	img, err := buildImage(ctx, log, itools, ws.Dir, opt)
	if err != nil {
		return nil, err
	}
	c.Image = img
	if c.Change, err = planChange(ctx, log, itools.Debugfs, img, opt.ChangePct, opt.Seed); err != nil {
		return nil, err
	}
	for _, s := range specs {
		t := s.New(ws.Dir)
		b, isBulwark := t.(*bulwark)
		isBulwark = isBulwark && b.Label == "" // a baseline is compared with, like the others
		c.Tools = append(c.Tools, &toolResults{Name: s.Name, Version: t.Version(ctx), Settings: t.Settings(), IsBulwark: isBulwark})
	}
	for run := range runs {
		dir, err := ws.mkdir(fmt.Sprintf("run%d", run+1))
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", run+1, err)
		}
		order := make([]int, len(specs))
		tools := make([]backupTool, len(specs))
		for i := range specs {
			order[i] = (i + run) % len(specs)
			tools[i] = specs[order[i]].New(dir)
		}
		log.Info("run", "n", run+1, "of", runs)
		results, err := measureRun(ctx, log, c, ws, tools)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", run+1, err)
		}
		for i, r := range results {
			c.Tools[order[i]].Runs = append(c.Tools[order[i]].Runs, r)
		}
		if !ws.Keep {
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("run %d: %w", run+1, err)
			}
		}
	}
	return c, nil
}

// measureRun takes the image from its original to its changed state and runs
// the tools, in the given order, through the same phases: full backup of the
// original image, incremental backup of the changed image, restore of the
// second point verified against the changed image, store size. Each timed
// phase starts with a dropped page cache.
func measureRun(ctx context.Context, log *slog.Logger, c *comparison, ws *workspace, tools []backupTool) ([]*toolRun, error) {
	if err := c.Change.revert(c.Image); err != nil {
		return nil, err
	}
	runs := make([]*toolRun, len(tools))
	for i, t := range tools {
		runs[i] = &toolRun{Tool: t}
		if err := t.Init(ctx); err != nil {
			return nil, err
		}
	}
	var err error
	for _, r := range runs {
		c.Caches.drop(log)
		if r.Full, err = r.Tool.Backup(ctx, backupRequest{Image: c.Image.Path}); err != nil {
			return nil, err
		}
		logBackup(log, "full backup", r.Tool, r.Full)
	}

	if err := c.Change.apply(c.Image); err != nil {
		return nil, err
	}
	if c.ImageSHA == "" {
		if c.ImageSHA, err = sha256File(ctx, c.Image.Path); err != nil {
			return nil, err
		}
	}
	for _, r := range runs {
		c.Caches.drop(log)
		req := backupRequest{Image: c.Image.Path, Parent: r.Full.Point, Changed: c.Change.AreasFile}
		if r.Incr, err = r.Tool.Backup(ctx, req); err != nil {
			return nil, err
		}
		logBackup(log, "incremental backup", r.Tool, r.Incr)
	}

	for _, r := range runs {
		if err := restoreAndHash(ctx, log, ws, c.Caches, r); err != nil {
			return nil, err
		}
		if r.RestoredSHA != c.ImageSHA {
			log.Error("RESTORE IS NOT BIT-EXACT", "tool", r.Tool.Name(), "sha256", r.RestoredSHA, "want", c.ImageSHA)
		}
	}

	for _, r := range runs {
		if r.Size, err = r.Tool.StoreSize(); err != nil {
			return nil, err
		}
		if b, ok := r.Tool.(*bulwark); ok {
			s, err := b.Stats(ctx)
			if err != nil {
				return nil, err
			}
			r.Stats = &s
		}
	}
	return runs, nil
}

// restoreAndHash restores the incremental point of r into a scratch
// directory, hashes the restored image and removes it.
func restoreAndHash(ctx context.Context, log *slog.Logger, ws *workspace, caches *cacheDropper, r *toolRun) error {
	dir, err := ws.mkdir("restore")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(dir)
	caches.drop(log)
	out, m, err := r.Tool.Restore(ctx, r.Incr.Point, dir)
	if err != nil {
		return err
	}
	r.Restore = m
	start := time.Now()
	syscall.Sync()
	r.RestoreDurable = measurement{Wall: m.Wall + time.Since(start), MaxRSS: m.MaxRSS}
	log.Info("restore", "tool", r.Tool.Name(), "took", m.Wall, "on_disk", r.RestoreDurable.Wall, "maxrss", formatBytes(m.MaxRSS))
	if r.RestoredSHA, err = sha256File(ctx, out); err != nil {
		return fmt.Errorf("verify %s restore: %w", r.Tool.Name(), err)
	}
	return nil
}

func logBackup(log *slog.Logger, what string, t backupTool, r backupResult) {
	log.Info(what, "tool", t.Name(), "point", r.Point, "took", r.Wall, "maxrss", formatBytes(r.MaxRSS),
		"read", bytesOrNone(r.BytesRead), "new", bytesOrNone(r.BytesNew), "stored", bytesOrNone(r.BytesStored), "note", r.Note)
}
