// Command bulwark-bench measures Bulwark against restic and borg on the same
// disk image in the same run and prints the results as Markdown.
//
// Usage:
//
//	go run ./cmd/bulwark-bench compare [flags]
//	go run ./cmd/bulwark-bench chunksizes [flags]
//
// Both commands build a sparse GPT disk image with one ext4 partition that
// holds real files copied from this machine (--sources, up to --data bytes),
// back it up, overwrite about --change-pct percent of the file data in place
// and back it up again. The changed areas are written to a file in exactly the
// form a changed-block-tracking driver reports them, and Bulwark's incremental
// backup is given that file.
//
// compare runs Bulwark, restic and borg through the same phases (full backup,
// incremental backup, restore verified bit-exact against the changed image,
// store size) and prints wall-clock times, throughput, store sizes, peak RSS
// and the ratios between the tools. The phases are repeated --runs times with
// fresh repositories and the tool order rotated; times are medians. With
// --baseline, a second Bulwark binary (a build of an earlier commit) runs
// through the same phases in the same runs, so that a change is measured
// against what it replaces under the same load.
//
// chunksizes backs the same image up into one fresh Bulwark store per
// chunk-size parameter set (--sets) and prints chunk counts, stored bytes and
// times, to help choose the default chunk sizes.
//
// The Bulwark CLI is built from ./cmd/bulwark unless --bulwark names a binary,
// so run the command from the repository root. restic is looked up on PATH and
// in $(go env GOPATH)/bin; sgdisk, mke2fs and debugfs also in /usr/sbin and
// /sbin. The page cache is dropped before every timed phase when the process
// may write /proc/sys/vm/drop_caches (usually only as root); the report says
// whether that worked. Run "bulwark-bench <command> -h" for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := run(ctx, os.Args[1:], os.Stdout, log)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bulwark-bench:", err)
		os.Exit(1)
	}
}

const usage = `usage: bulwark-bench <command> [flags]

Commands:
  compare     measure Bulwark, restic and borg on the same disk image
  chunksizes  survey Bulwark chunk-size parameters on the same disk image

Run "bulwark-bench <command> -h" for the flags of a command.
`

// run dispatches to the subcommand named by args[0]. Reports go to stdout,
// progress logs to log.
func run(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "compare":
		return runCompare(ctx, args[1:], stdout, log)
	case "chunksizes":
		return runChunkSizes(ctx, args[1:], stdout, log)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
