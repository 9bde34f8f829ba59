package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
)

// borg drives BorgBackup against one repository, backing the image up from
// stdin as a single file with borg's default chunker and compression (lz4).
type borg struct {
	Bin  string
	Repo string
	Home string // BORG_BASE_DIR: keys, cache and security data, kept out of the repository size

	archives int // archives created so far; names are a1, a2, ...
}

const borgPassphrase = "bulwark-bench-password"

func (b *borg) Name() string { return "borg" }

func (b *borg) Version(ctx context.Context) string { return firstLine(ctx, b.Bin, "--version") }

func (b *borg) Settings() string {
	return "repokey-blake2, compression lz4 (default), create from stdin, extract --stdout (not sparse)"
}

func (b *borg) command(args ...string) command {
	return command{
		Path: b.Bin,
		Args: args,
		Env: []string{
			"BORG_PASSPHRASE=" + borgPassphrase,
			"BORG_BASE_DIR=" + b.Home,
			"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes",
			"BORG_RELOCATED_REPO_ACCESS_IS_OK=yes",
		},
	}
}

func (b *borg) Init(ctx context.Context) error {
	if _, _, err := b.command("init", "--encryption=repokey-blake2", b.Repo).run(ctx); err != nil {
		return fmt.Errorf("borg init: %w", err)
	}
	return nil
}

// borgCreateJSON is the part of "borg create --json" output used here.
type borgCreateJSON struct {
	Archive struct {
		Name  string `json:"name"`
		Stats struct {
			OriginalSize     int64 `json:"original_size"`
			CompressedSize   int64 `json:"compressed_size"`
			DeduplicatedSize int64 `json:"deduplicated_size"`
		} `json:"stats"`
	} `json:"archive"`
}

func (b *borg) Backup(ctx context.Context, req backupRequest) (backupResult, error) {
	name := fmt.Sprintf("a%d", b.archives+1)
	c := b.command("create", "--json", "--stdin-name", stdinName, b.Repo+"::"+name, "-")
	c.Stdin = req.Image
	m, out, err := c.run(ctx)
	if err != nil {
		return backupResult{}, fmt.Errorf("borg create: %w", err)
	}
	b.archives++
	var j borgCreateJSON
	if err := json.Unmarshal(out, &j); err != nil {
		return backupResult{}, fmt.Errorf("borg create: decode output: %w", err)
	}
	return backupResult{
		Point: name, measurement: m,
		BytesRead: j.Archive.Stats.OriginalSize, BytesNew: unknown, BytesStored: j.Archive.Stats.DeduplicatedSize,
	}, nil
}

func (b *borg) Restore(ctx context.Context, point, dir string) (string, measurement, error) {
	out := filepath.Join(dir, "borg.img")
	c := b.command("extract", "--stdout", b.Repo+"::"+point)
	c.Stdout = out
	m, _, err := c.run(ctx)
	if err != nil {
		return "", m, fmt.Errorf("borg extract: %w", err)
	}
	return out, m, nil
}

func (b *borg) StoreSize() (storeSize, error) {
	total, _, err := dirSize(b.Repo, "")
	return storeSize{Total: total, WithoutIndex: unknown}, err
}
