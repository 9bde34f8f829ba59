package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bulwarkbackup/bulwark/restore/files"
)

func (a *app) restoreCommand() *cobra.Command {
	var to, mount, overwrite string
	var noOwner bool
	cmd := &cobra.Command{
		Use:   "restore POINT VOLUME PATH...",
		Short: "Restore files and folders to where they were, or to --to DIR",
		Long: `Restore files and folders, with everything below them, keeping their
modes, times and (as root) owners.

With --to DIR, each PATH goes into DIR under its last element: "etc/hosts"
becomes DIR/hosts. Without it, each goes back to its place: the PATH joined to
where the volume is mounted in this VM, given with --mount; "/" is assumed
for a volume that holds a root filesystem (/etc/fstab or /etc/os-release).
The Windows build restores to a directory only.

What is already there is kept or replaced as --overwrite says. A file is
written under a temporary name and renamed when complete: a restore cut
short leaves no partial file under its final name.`,
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := files.ParseOverwrite(overwrite)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			cn, err := a.connect(ctx)
			if err != nil {
				return err
			}
			p, err := cn.point(ctx, args[0])
			if err != nil {
				return err
			}
			volume := args[1]
			var paths []string
			for _, arg := range args[2:] {
				paths = append(paths, volumePath(arg))
			}
			fsys := newRemoteFS(ctx, cn.c, p.ID, volume)
			targets, err := a.targets(fsys, paths, to, mount, cmd.Flags().Changed("mount"))
			if err != nil {
				return err
			}
			o := files.Options{Overwrite: policy, Owner: !noOwner,
				Log: slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
			return a.restore(ctx, fsys, targets, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "restore into this directory instead of to the files' places")
	f.StringVar(&mount, "mount", "/", "where the volume is mounted in this VM, for a restore to the files' places")
	f.StringVar(&overwrite, "overwrite", "never", "what to do with a file already there: never (keep it), if-newer or always (replace it)")
	f.BoolVar(&noOwner, "no-owner", false, "do not restore owners (they are restored only when running as root)")
	return cmd
}

// targets groups the paths by the directory each is restored into.
func (a *app) targets(fsys fs.FS, paths []string, to, mount string, mountGiven bool) (map[string][]string, error) {
	out := map[string][]string{}
	if to != "" {
		out[to] = paths
		return out, nil
	}
	if runtime.GOOS == "windows" {
		return nil, errors.New("give --to DIR: on Windows files are restored to a directory")
	}
	if !mountGiven && !rootFilesystem(fsys) {
		return nil, errors.New("the volume holds no root filesystem: give --mount (where it is mounted in this VM) or --to DIR")
	}
	if !filepath.IsAbs(mount) {
		return nil, fmt.Errorf("--mount %q: want an absolute path", mount)
	}
	for _, p := range paths {
		dir := filepath.Join(mount, filepath.FromSlash(path.Dir(p)))
		out[dir] = append(out[dir], p)
	}
	return out, nil
}

// rootFilesystem reports whether a volume looks like a Linux root
// filesystem.
func rootFilesystem(fsys fs.FS) bool {
	for _, name := range []string{"etc/fstab", "etc/os-release"} {
		if _, err := fs.Lstat(fsys, name); err == nil {
			return true
		}
	}
	return false
}

func (a *app) restore(ctx context.Context, fsys fs.FS, targets map[string][]string, o files.Options) error {
	var total files.Summary
	var errs []error
	for dir, paths := range targets {
		bar := newProgress(a.stderr, "restoring into "+dir)
		o.Progress = bar.update
		sum, err := files.Restore(ctx, fsys, paths, dir, o)
		bar.finish()
		add(&total, sum)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
		}
	}
	fmt.Fprintf(a.stdout, "restored %d files (%s), %d directories, %d symlinks, %d hard links; %d skipped, %d failed\n",
		total.Files, formatBytes(total.Bytes), total.Dirs, total.Symlinks, total.HardLinks, total.Skipped, total.Failed)
	return errors.Join(errs...)
}

func add(total *files.Summary, s files.Summary) {
	total.Files += s.Files
	total.Dirs += s.Dirs
	total.Symlinks += s.Symlinks
	total.HardLinks += s.HardLinks
	total.Bytes += s.Bytes
	total.Skipped += s.Skipped
	total.Failed += s.Failed
}

// progress shows a restore's progress: a bar on a terminal, a line now
// and then elsewhere (a log, a script's pipe).
type progress struct {
	w    io.Writer
	msg  string
	tty  bool
	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	last time.Time
	at   files.Progress
}

// lineEvery is how often progress is printed as lines.
const lineEvery = 5 * time.Second

func newProgress(w io.Writer, msg string) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, msg: msg, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) update(at files.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.at = at
	if !p.tty {
		if now := time.Now(); now.Sub(p.last) >= lineEvery {
			p.last = now
			p.line()
		}
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(at.TotalBytes,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.msg),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}
	_ = p.bar.Set64(at.Bytes)
}

func (p *progress) line() {
	fmt.Fprintf(p.w, "%s: %d/%d files, %s of %s\n", p.msg, p.at.Files, p.at.TotalFiles,
		formatBytes(p.at.Bytes), formatBytes(p.at.TotalBytes))
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
	}
	if !p.tty && !p.last.IsZero() {
		p.line()
	}
}
