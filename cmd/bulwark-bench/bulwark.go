package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
)

// chunkParams are Bulwark's content-defined chunking limits in bytes.
type chunkParams struct {
	Min, Avg, Max int64
}

func (p chunkParams) String() string {
	return formatChunkSize(p.Min) + "/" + formatChunkSize(p.Avg) + "/" + formatChunkSize(p.Max)
}

// bulwark drives the Bulwark CLI against one store.
type bulwark struct {
	Bin    string
	Origin string // where Bin came from, for the report
	Store  string
	Chunks *chunkParams // non-nil: pass the hidden --chunk-* flags to store init
	// Label names a second Bulwark measured beside the first (a build of
	// an earlier commit, say); empty for the Bulwark under test.
	Label string
}

const bulwarkPassword = "bulwark-bench-password"

func (b *bulwark) Name() string {
	if b.Label != "" {
		return b.Label
	}
	return "Bulwark"
}

func (b *bulwark) Version(ctx context.Context) string {
	if v := firstLine(ctx, b.Bin, "version"); v != "unknown" {
		return v
	}
	if v := firstLine(ctx, b.Bin, "--version"); v != "unknown" {
		return v
	}
	return "no version command; " + b.Origin
}

func (b *bulwark) Settings() string {
	if b.Chunks != nil {
		return "chunks " + b.Chunks.String()
	}
	return "default settings"
}

func (b *bulwark) command(args ...string) command {
	return command{Path: b.Bin, Args: args, Env: []string{"BULWARK_PASSWORD=" + bulwarkPassword}}
}

func (b *bulwark) Init(ctx context.Context) error {
	args := []string{"store", "init", "--store", b.Store}
	if p := b.Chunks; p != nil {
		args = append(args,
			"--chunk-min", strconv.FormatInt(p.Min, 10),
			"--chunk-avg", strconv.FormatInt(p.Avg, 10),
			"--chunk-max", strconv.FormatInt(p.Max, 10))
	}
	if _, _, err := b.command(args...).run(ctx); err != nil {
		return fmt.Errorf("bulwark init: %w", err)
	}
	return nil
}

// bulwarkBackupJSON is the output of "bulwark image backup --json".
type bulwarkBackupJSON struct {
	Point       string  `json:"point"`
	BytesRead   int64   `json:"bytes_read"`
	BytesNew    int64   `json:"bytes_new"`
	BytesStored int64   `json:"bytes_stored"`
	Seconds     float64 `json:"seconds"`
	FullRead    string  `json:"full_read"` // why the whole image was read, if it was
}

func (b *bulwark) Backup(ctx context.Context, req backupRequest) (backupResult, error) {
	args := []string{"image", "backup", "--store", b.Store, "--source", "bench", "--json"}
	if req.Parent != "" {
		args = append(args, "--parent", req.Parent)
		if req.Changed != "" {
			args = append(args, "--changed", req.Changed)
		}
	}
	args = append(args, req.Image)
	m, out, err := b.command(args...).run(ctx)
	if err != nil {
		return backupResult{}, fmt.Errorf("bulwark backup: %w", err)
	}
	var j bulwarkBackupJSON
	if err := decodeLastJSON(out, &j); err != nil {
		return backupResult{}, fmt.Errorf("bulwark backup: %w", err)
	}
	if j.Point == "" {
		return backupResult{}, fmt.Errorf("bulwark backup: no point in output %q", lastLines(string(out), 3))
	}
	return backupResult{
		Point: j.Point, measurement: m,
		BytesRead: j.BytesRead, BytesNew: j.BytesNew, BytesStored: j.BytesStored, Note: j.FullRead,
	}, nil
}

func (b *bulwark) Restore(ctx context.Context, point, dir string) (string, measurement, error) {
	out := filepath.Join(dir, "bulwark.img")
	m, _, err := b.command("image", "restore", "--store", b.Store, point, out).run(ctx)
	if err != nil {
		return "", m, fmt.Errorf("bulwark restore: %w", err)
	}
	return out, m, nil
}

func (b *bulwark) StoreSize() (storeSize, error) {
	total, index, err := dirSize(b.Store, "index")
	if err != nil {
		return storeSize{}, err
	}
	return storeSize{Total: total, WithoutIndex: total - index}, nil
}

// bulwarkStats is the output of "bulwark stats --json".
type bulwarkStats struct {
	StoredBytes  int64 `json:"stored_bytes"`
	Chunks       int64 `json:"chunks"`
	Packs        int64 `json:"packs"`
	LogicalBytes int64 `json:"logical_bytes"`
}

// Stats returns the store's own account of its contents.
func (b *bulwark) Stats(ctx context.Context) (bulwarkStats, error) {
	_, out, err := b.command("stats", "--store", b.Store, "--json").run(ctx)
	if err != nil {
		return bulwarkStats{}, fmt.Errorf("bulwark stats: %w", err)
	}
	var s bulwarkStats
	if err := decodeLastJSON(out, &s); err != nil {
		return bulwarkStats{}, fmt.Errorf("bulwark stats: %w", err)
	}
	return s, nil
}

// decodeLastJSON decodes the last JSON object in out into v. Text before
// the first object and between objects (progress lines, say) is ignored.
func decodeLastJSON(out []byte, v any) error {
	var last json.RawMessage
	for rest := out; ; {
		i := bytes.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		dec := json.NewDecoder(bytes.NewReader(rest[i:]))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			rest = rest[i+1:] // not an object after all; look further on
			continue
		}
		last = raw
		rest = rest[i+int(dec.InputOffset()):]
	}
	if last == nil {
		return errors.New("no JSON object in output")
	}
	if err := json.Unmarshal(last, v); err != nil {
		return fmt.Errorf("decode %s: %w", last, err)
	}
	return nil
}
