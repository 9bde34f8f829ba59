package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
)

// restic drives restic against one repository, backing the image up from
// stdin as a single file.
type restic struct {
	Bin   string
	Repo  string
	Cache string // RESTIC_CACHE_DIR, kept out of the repository size
}

const (
	resticPassword = "bulwark-bench-password"
	stdinName      = "disk.img"
)

func (r *restic) Name() string { return "restic" }

func (r *restic) Version(ctx context.Context) string { return firstLine(ctx, r.Bin, "version") }

func (r *restic) Settings() string {
	return "repository v2, compression auto (default), backup --stdin, restore --sparse"
}

func (r *restic) command(args ...string) command {
	return command{
		Path: r.Bin,
		Args: append([]string{"--repo", r.Repo}, args...),
		Env:  []string{"RESTIC_PASSWORD=" + resticPassword, "RESTIC_CACHE_DIR=" + r.Cache},
	}
}

func (r *restic) Init(ctx context.Context) error {
	if _, _, err := r.command("init").run(ctx); err != nil {
		return fmt.Errorf("restic init: %w", err)
	}
	return nil
}

// resticSummary is the summary message of "restic backup --json".
type resticSummary struct {
	MessageType     string `json:"message_type"`
	SnapshotID      string `json:"snapshot_id"`
	DataAdded       int64  `json:"data_added"`
	DataAddedPacked int64  `json:"data_added_packed"`
	BytesProcessed  int64  `json:"total_bytes_processed"`
}

func (r *restic) Backup(ctx context.Context, req backupRequest) (backupResult, error) {
	c := r.command("backup", "--json", "--quiet", "--host", "bench", "--stdin", "--stdin-filename", stdinName)
	c.Stdin = req.Image
	m, out, err := c.run(ctx)
	if err != nil {
		return backupResult{}, fmt.Errorf("restic backup: %w", err)
	}
	s, err := parseResticSummary(out)
	if err != nil {
		return backupResult{}, fmt.Errorf("restic backup: %w", err)
	}
	return backupResult{
		Point: s.SnapshotID, measurement: m,
		BytesRead: s.BytesProcessed, BytesNew: s.DataAdded, BytesStored: s.DataAddedPacked,
	}, nil
}

// parseResticSummary finds the summary among restic's JSON lines.
func parseResticSummary(out []byte) (resticSummary, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var s resticSummary
		if json.Unmarshal(sc.Bytes(), &s) == nil && s.MessageType == "summary" && s.SnapshotID != "" {
			return s, nil
		}
	}
	if err := sc.Err(); err != nil {
		return resticSummary{}, err
	}
	return resticSummary{}, fmt.Errorf("no summary with a snapshot ID in output %q", lastLines(string(out), 3))
}

func (r *restic) Restore(ctx context.Context, point, dir string) (string, measurement, error) {
	target := filepath.Join(dir, "restic")
	m, _, err := r.command("restore", point, "--target", target, "--sparse").run(ctx)
	if err != nil {
		return "", m, fmt.Errorf("restic restore: %w", err)
	}
	return filepath.Join(target, stdinName), m, nil
}

func (r *restic) StoreSize() (storeSize, error) {
	total, _, err := dirSize(r.Repo, "")
	return storeSize{Total: total, WithoutIndex: unknown}, err
}
