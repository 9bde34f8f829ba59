package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

const defaultChunkSets = "64K/256K/1M,128K/512K/2M,256K/1M/4M,512K/2M/8M,1M/4M/16M"

// parseChunkSets parses a comma-separated list of MIN/AVG/MAX chunk sizes.
// AVG must be a power of two and MIN ≤ AVG ≤ MAX.
func parseChunkSets(s string) ([]chunkParams, error) {
	var sets []chunkParams
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, "/")
		if len(parts) != 3 {
			return nil, fmt.Errorf("chunk set %q: want MIN/AVG/MAX", item)
		}
		var n [3]int64
		for i, p := range parts {
			v, err := parseBytes(p)
			if err != nil {
				return nil, fmt.Errorf("chunk set %q: %w", item, err)
			}
			n[i] = v
		}
		p := chunkParams{Min: n[0], Avg: n[1], Max: n[2]}
		switch {
		case p.Avg <= 0 || p.Avg&(p.Avg-1) != 0:
			return nil, fmt.Errorf("chunk set %q: average %d is not a power of two", item, p.Avg)
		case p.Min <= 0 || p.Min > p.Avg || p.Avg > p.Max:
			return nil, fmt.Errorf("chunk set %q: want 0 < MIN ≤ AVG ≤ MAX", item)
		}
		sets = append(sets, p)
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("no chunk sets in %q", s)
	}
	return sets, nil
}

// chunkRun collects the measurements of one chunk-size parameter set.
type chunkRun struct {
	Params             chunkParams
	Full, Incr, Reread backupResult
	AfterTwo           bulwarkStats // after the full and the incremental backup
	AfterThree         bulwarkStats // after the re-read as well
	Size               storeSize    // after the full and the incremental backup
}

// chunkSurvey is the outcome of "bulwark-bench chunksizes".
type chunkSurvey struct {
	Machine machineInfo
	Image   *diskImage
	Change  *changeSet
	Caches  *cacheDropper
	Version string
	Runs    []*chunkRun
}

func runChunkSizes(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("chunksizes", flag.ContinueOnError)
	var cf commonFlags
	cf.register(fs, 2<<30, 800<<20)
	setsFlag := fs.String("sets", defaultChunkSets, "comma-separated chunk-size `sets` MIN/AVG/MAX; AVG must be a power of two")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bulwark-bench chunksizes [flags]\n\nSurvey Bulwark chunk-size parameters on the same disk image.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("chunksizes: unexpected arguments %q", fs.Args())
	}
	sets, err := parseChunkSets(*setsFlag)
	if err != nil {
		return fmt.Errorf("chunksizes: %w", err)
	}
	opt, err := cf.imageOptions()
	if err != nil {
		return fmt.Errorf("chunksizes: %w", err)
	}
	itools, err := findImageTools()
	if err != nil {
		return fmt.Errorf("chunksizes: %w", err)
	}
	ws, err := newWorkspace(log, cf.Dir, 3*opt.Data, cf.Keep)
	if err != nil {
		return fmt.Errorf("chunksizes: %w", err)
	}
	defer ws.close(log)
	bin, origin, err := bulwarkBinary(ctx, ws, cf.Bulwark)
	if err != nil {
		return fmt.Errorf("chunksizes: %w", err)
	}
	s, err := surveyChunkSizes(ctx, log, ws, itools, opt, bulwark{Bin: bin, Origin: origin}, sets)
	if err != nil {
		return fmt.Errorf("chunksizes: %w", err)
	}
	return writeReport(stdout, cf.Out, s.markdown())
}

// surveyChunkSizes backs the image up into a fresh store per parameter set:
// a full backup of the original image, an incremental backup of the changed
// image with the changed-areas list, and a re-read of the whole changed image
// with the incremental as parent but without the list.
func surveyChunkSizes(ctx context.Context, log *slog.Logger, ws *workspace, itools imageTools, opt imageOptions, proto bulwark, sets []chunkParams) (*chunkSurvey, error) {
	s := &chunkSurvey{Machine: readMachineInfo(), Caches: &cacheDropper{}}
	img, err := buildImage(ctx, log, itools, ws.Dir, opt)
	if err != nil {
		return nil, err
	}
	s.Image = img
	if s.Change, err = planChange(ctx, log, itools.Debugfs, img, opt.ChangePct, opt.Seed); err != nil {
		return nil, err
	}
	for i, p := range sets {
		b := &bulwark{Bin: proto.Bin, Origin: proto.Origin, Store: ws.path(fmt.Sprintf("bulwark-store-%d", i+1)), Chunks: &p}
		if i == 0 {
			s.Version = b.Version(ctx)
		}
		log.Info("chunk-size set", "set", p.String())
		r, err := surveyOne(ctx, log, s.Caches, img, s.Change, b)
		if err != nil {
			return nil, fmt.Errorf("chunk set %s: %w", p, err)
		}
		s.Runs = append(s.Runs, r)
		if !opt.Keep {
			if err := os.RemoveAll(b.Store); err != nil {
				return nil, fmt.Errorf("remove store: %w", err)
			}
		}
	}
	return s, nil
}

// surveyOne measures one parameter set in a fresh store. It leaves the
// image changed.
func surveyOne(ctx context.Context, log *slog.Logger, caches *cacheDropper, img *diskImage, cs *changeSet, b *bulwark) (*chunkRun, error) {
	r := &chunkRun{Params: *b.Chunks}
	if err := cs.revert(img); err != nil {
		return nil, err
	}
	if err := b.Init(ctx); err != nil {
		return nil, err
	}
	var err error
	caches.drop(log)
	if r.Full, err = b.Backup(ctx, backupRequest{Image: img.Path}); err != nil {
		return nil, err
	}
	logBackup(log, "full backup", b, r.Full)
	if err := cs.apply(img); err != nil {
		return nil, err
	}
	caches.drop(log)
	if r.Incr, err = b.Backup(ctx, backupRequest{Image: img.Path, Parent: r.Full.Point, Changed: cs.AreasFile}); err != nil {
		return nil, err
	}
	logBackup(log, "incremental backup", b, r.Incr)
	if r.AfterTwo, err = b.Stats(ctx); err != nil {
		return nil, err
	}
	if r.Size, err = b.StoreSize(); err != nil {
		return nil, err
	}
	caches.drop(log)
	if r.Reread, err = b.Backup(ctx, backupRequest{Image: img.Path, Parent: r.Incr.Point}); err != nil {
		return nil, err
	}
	logBackup(log, "re-read backup", b, r.Reread)
	if r.AfterThree, err = b.Stats(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// markdown renders the survey.
func (s *chunkSurvey) markdown() string {
	var b strings.Builder
	b.WriteString("## Bulwark chunk-size survey\n\n")
	fmt.Fprintf(&b, "Machine: %s.\n", s.Machine)
	b.WriteString(describeImage(s.Image, s.Change))
	fmt.Fprintf(&b, "Page cache: %s.\n", s.Caches)
	fmt.Fprintf(&b, "Bulwark: %s.\n\n", s.Version)

	t := table{Header: []string{"min/avg/max", "Chunks", "Packs", "Stored after 2 points", "Store dir (without index/)",
		"Full: time", "Full: stored", "Incr: time", "Incr: read", "Incr: new", "Incr: stored",
		"Re-read: time", "Re-read: new", "Re-read: stored"}}
	for _, r := range s.Runs {
		t.add(r.Params.String(),
			fmt.Sprint(r.AfterTwo.Chunks), fmt.Sprint(r.AfterTwo.Packs), formatBytes(r.AfterTwo.StoredBytes),
			fmt.Sprintf("%s (%s)", formatBytes(r.Size.Total), formatBytes(r.Size.WithoutIndex)),
			seconds(r.Full.Wall), formatBytes(r.Full.BytesStored),
			seconds(r.Incr.Wall), formatBytes(r.Incr.BytesRead), formatBytes(r.Incr.BytesNew), formatBytes(r.Incr.BytesStored),
			seconds(r.Reread.Wall), formatBytes(r.Reread.BytesNew), formatBytes(r.Reread.BytesStored))
	}
	t.write(&b)
	fmt.Fprintf(&b, "\nChunks, packs and stored bytes are from `bulwark stats --json` after the full and the incremental backup. "+
		"Incr is the backup of the changed image with --parent and --changed (%s changed); its new bytes over the changed bytes is the "+
		"deduplication cost of the chunk size. Re-read backs the whole changed image up again with the incremental as --parent "+
		"and no --changed list, so every byte is read and chunked.\n\n", formatBytes(s.Change.Bytes))

	u := table{Header: []string{"min/avg/max", "Incr new ÷ changed", "Full: peak RSS", "Incr: peak RSS", "Re-read: peak RSS",
		"Chunks after re-read", "Stored after re-read"}}
	for _, r := range s.Runs {
		u.add(r.Params.String(), ratio(float64(r.Incr.BytesNew), float64(s.Change.Bytes)),
			formatBytes(r.Full.MaxRSS), formatBytes(r.Incr.MaxRSS), formatBytes(r.Reread.MaxRSS),
			fmt.Sprint(r.AfterThree.Chunks), formatBytes(r.AfterThree.StoredBytes))
	}
	u.write(&b)
	return b.String()
}
