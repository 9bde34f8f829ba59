package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
)

func (a *app) storeCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "Create and manage stores"}
	p := chunkstore.DefaultParams()
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new encrypted store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := a.password(true)
			if err != nil {
				return err
			}
			be := backend.NewLocal(a.storeDir)
			if err := chunkstore.Init(cmd.Context(), be, chunkstore.InitOptions{Password: pw, Params: p}); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "created store %s\n", be.Location())
			return nil
		},
	}
	a.storeFlags(initCmd)
	// Chunk sizes are fixed for a store's life; these exist to measure
	// other choices (cmd/bulwark-bench chunksizes), not for daily use.
	initCmd.Flags().IntVar(&p.ChunkMin, "chunk-min", p.ChunkMin, "smallest chunk in bytes")
	initCmd.Flags().IntVar(&p.ChunkAvg, "chunk-avg", p.ChunkAvg, "average chunk in bytes (a power of two)")
	initCmd.Flags().IntVar(&p.ChunkMax, "chunk-max", p.ChunkMax, "largest chunk in bytes")
	initCmd.Flags().IntVar(&p.ZeroBlock, "zero-block", p.ZeroBlock, "zero-detection block in bytes")
	for _, f := range []string{"chunk-min", "chunk-avg", "chunk-max", "zero-block"} {
		_ = initCmd.Flags().MarkHidden(f)
	}
	cmd.AddCommand(initCmd)
	return cmd
}

// password reads the store password from --password-file, $BULWARK_PASSWORD
// or, on a terminal, a prompt.
func (a *app) password(confirm bool) ([]byte, error) {
	if a.passwordFile != "" {
		b, err := os.ReadFile(a.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("password file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return nil, fmt.Errorf("password file %s is empty", a.passwordFile)
		}
		return []byte(pw), nil
	}
	if pw := os.Getenv("BULWARK_PASSWORD"); pw != "" {
		return []byte(pw), nil
	}
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, errors.New("no password: give --password-file or set BULWARK_PASSWORD")
	}
	fmt.Fprint(a.stderr, "store password: ")
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if confirm {
		fmt.Fprint(a.stderr, "again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if string(again) != string(pw) {
			return nil, errors.New("the passwords differ")
		}
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	return pw, nil
}

// Ways to open a store.
const (
	forWriting = iota
	forReading // never waits for a writer, nor stops one from starting
	forRebuild // writing, with the index discarded first
)

// openStore opens the store named by --store for the given purpose.
func (a *app) openStore(ctx context.Context, purpose string, mode int) (*chunkstore.Store, error) {
	pw, err := a.password(false)
	if err != nil {
		return nil, err
	}
	return chunkstore.Open(ctx, backend.NewLocal(a.storeDir), chunkstore.Options{
		Password: pw, Logger: a.log, Purpose: purpose,
		ReadOnly: mode == forReading, RebuildIndex: mode == forRebuild,
	})
}
