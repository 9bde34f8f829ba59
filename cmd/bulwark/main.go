// Command bulwark is the Bulwark backup appliance and its admin command line.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bulwarkbackup/bulwark/chunkstore/index"
)

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(index.SoftMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := app.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted: nothing was committed")
		}
		fmt.Fprintf(stderr, "bulwark: %v\n", err)
		return 1
	}
	return 0
}

// app holds what every command shares: its streams and global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	storeDir     string
	passwordFile string
	jsonOut      bool
	logLevel     string
	log          *slog.Logger
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "bulwark",
		Short:         "Bulwark: deduplicating backups of VMware vSphere VMs and disk images",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	root.AddCommand(a.storeCommand(), a.imageCommand(), a.pointsCommand(), a.statsCommand(),
		a.pruneCommand(), a.pointCommand(), a.gcCommand(), a.checkCommand(), a.indexCommand(),
		a.labCommand(), a.backupCommand())
	root.AddCommand(a.vcenterCommand(), a.jobCommand())
	root.AddCommand(a.restoreCommand(), a.filesCommand())
	root.AddCommand(a.serveCommand(), a.demoCommand(), a.versionCommand())
	return root
}

// storeFlags adds the flags of every command that opens a store.
func (a *app) storeFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.storeDir, "store", "", "directory of the store (required)")
	cmd.Flags().StringVar(&a.passwordFile, "password-file", "", "file holding the store password (default: $BULWARK_PASSWORD)")
	_ = cmd.MarkFlagRequired("store")
}

func (a *app) jsonFlag(cmd *cobra.Command, what string) {
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, what)
}
