package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
)

// Tests of the lifecycle commands: prune, point pin|unpin|delete, gc,
// check, index rebuild, and how commands share a store with a writer.

// lcParams are chunk and pack sizes far below the defaults, so that a few
// MiB of image make many chunks and packs.
func lcParams() chunkstore.Params {
	p := chunkstore.DefaultParams()
	p.ChunkMin, p.ChunkAvg, p.ChunkMax = 64<<10, 128<<10, 256<<10
	p.PackSize = 1 << 20
	return p
}

// lcInitStore creates a store in dir/store with lcParams and the password
// that crashCommand gives its children, and sets $BULWARK_PASSWORD for
// in-process commands. The KDF is the cheapest there is: every command
// unwraps the key, and the default KDF costs a quarter second each time.
func lcInitStore(t *testing.T, dir string) string {
	t.Helper()
	store := filepath.Join(dir, "store")
	err := chunkstore.Init(context.Background(), backend.NewLocal(store), chunkstore.InitOptions{
		Password: []byte(crashPassword), Params: lcParams(),
		KDF: crypto.KDFParams{Time: 1, Memory: 64, Threads: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("BULWARK_PASSWORD", crashPassword)
	return store
}

// lcImage writes an image of size bytes of random data drawn from seed, a
// quarter of it compressible, and returns its SHA-256.
func lcImage(t *testing.T, path string, size int64, seed uint64) [32]byte {
	t.Helper()
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	src := rand.NewChaCha8(s)
	b := make([]byte, size)
	_, _ = src.Read(b)
	for i := len(b) / 4; i < len(b)/2; i++ {
		b[i] &= 0x0f
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return sha(t, path)
}

// lcPoint is a point the test made, with the hash of its image.
type lcPoint struct {
	id, source string
	hash       [32]byte
}

// lcBackup backs img up in-process as a point of source.
func lcBackup(t *testing.T, store, source, img string) lcPoint {
	t.Helper()
	var sum backupSummary
	out := cli(t, "image", "backup", "--store", store, "--source", source, "--json", img)
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("backup summary: %v\n%s", err, out)
	}
	return lcPoint{id: sum.Point, source: source, hash: sha(t, img)}
}

// lcPointIDs returns the IDs "points --json" lists, oldest first.
func lcPointIDs(t *testing.T, store string) []string {
	t.Helper()
	var rows []crashPointRow
	out := cli(t, "points", "--store", store, "--json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("points --json: %v\n%s", err, out)
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// lcWantPoints fails the test unless the store lists exactly want.
func lcWantPoints(t *testing.T, store string, want ...lcPoint) {
	t.Helper()
	got := lcPointIDs(t, store)
	var ids []string
	for _, p := range want {
		ids = append(ids, p.id)
	}
	slices.Sort(got)
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Fatalf("the store lists points %s, want %s", lcShortIDs(got), lcShortIDs(ids))
	}
}

func lcShortIDs(ids []string) string {
	var s []string
	for _, id := range ids {
		s = append(s, id[:12])
	}
	return "[" + strings.Join(s, " ") + "]"
}

// lcRestoreAll restores every point with "image restore" and compares it
// with its image, bit for bit by SHA-256.
func lcRestoreAll(t *testing.T, store, out string, points ...lcPoint) {
	t.Helper()
	for _, p := range points {
		if msg := lcRestore(t, store, out, p); msg != "" {
			t.Error(msg)
		}
	}
}

// lcRestore restores a point with "image restore" and fails the test
// unless it is bit-exact. A restore that fails is not a test failure: its
// error is returned.
func lcRestore(t *testing.T, store, out string, p lcPoint) string {
	t.Helper()
	defer os.Remove(out)
	if _, msg, code := crashCLI("image", "restore", "--store", store, p.id, out); code != 0 {
		return fmt.Sprintf("restore point %s (%s): exit %d: %s", p.id[:12], p.source, code, strings.TrimSpace(msg))
	}
	if got := sha(t, out); got != p.hash {
		t.Errorf("point %s (%s) restores to sha256 %x, its image was %x", p.id[:12], p.source, got[:8], p.hash[:8])
	}
	return ""
}

// lcCheck runs check with args; it returns the report and the exit status.
func lcCheck(t *testing.T, store string, args ...string) (chunkstore.CheckReport, string, int) {
	t.Helper()
	stdout, stderr, code := crashCLI(append([]string{"check", "--store", store, "--json"}, args...)...)
	var rep chunkstore.CheckReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("check %s: exit %d, no report: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, err, stdout, stderr)
	}
	return rep, stderr, code
}

// lcCheckClean fails the test unless check with args exits 0 and reports no
// damage.
func lcCheckClean(t *testing.T, store string, args ...string) chunkstore.CheckReport {
	t.Helper()
	rep, stderr, code := lcCheck(t, store, args...)
	if code != 0 || !rep.OK() || len(rep.DamagedPoints) > 0 || len(rep.DamagedPacks) > 0 || rep.Incomplete {
		t.Fatalf("check %s: exit %d, %d problems %+v, damaged points %+v, damaged packs %v, incomplete %v\n%s",
			strings.Join(args, " "), code, len(rep.Problems), rep.Problems, rep.DamagedPoints, rep.DamagedPacks, rep.Incomplete, stderr)
	}
	return rep
}

// lcGC runs "gc --json" with args in-process and returns its figures.
func lcGC(t *testing.T, store string, args ...string) chunkstore.GCStats {
	t.Helper()
	out := cli(t, append([]string{"gc", "--store", store, "--json"}, args...)...)
	var st chunkstore.GCStats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("gc --json: %v\n%s", err, out)
	}
	return st
}

type lcPruneRow struct {
	ID      string   `json:"id"`
	Source  string   `json:"source"`
	Time    string   `json:"time"`
	Keep    bool     `json:"keep"`
	Reasons []string `json:"reasons"`
}

type lcPruneReport struct {
	DryRun bool         `json:"dry_run"`
	Policy string       `json:"policy"`
	Points []lcPruneRow `json:"points"`
}

func lcPrune(t *testing.T, store string, args ...string) lcPruneReport {
	t.Helper()
	out := cli(t, append([]string{"prune", "--store", store, "--json"}, args...)...)
	var rep lcPruneReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("prune --json: %v\n%s", err, out)
	}
	return rep
}

// lcWantDecisions fails the test unless rep decides on exactly the points
// of want, each with the reasons given (none: removed).
func lcWantDecisions(t *testing.T, rep lcPruneReport, want map[string][]string) {
	t.Helper()
	if len(rep.Points) != len(want) {
		t.Errorf("prune lists %d points, want %d: %+v", len(rep.Points), len(want), rep.Points)
	}
	for _, r := range rep.Points {
		reasons, ok := want[r.ID]
		if !ok {
			t.Errorf("prune lists point %s, which it should not", r.ID[:12])
			continue
		}
		if r.Keep != (len(reasons) > 0) || !slices.Equal(r.Reasons, reasons) || r.Reasons == nil || r.Source == "" || r.Time == "" {
			t.Errorf("prune decided point %s (%s): keep %v for %q, want keep %v for %q",
				r.ID[:12], r.Source, r.Keep, r.Reasons, len(reasons) > 0, reasons)
		}
	}
}

func TestPrunePinDelete(t *testing.T) {
	dir := t.TempDir()
	store := lcInitStore(t, dir)
	out := filepath.Join(dir, "restored.img")
	var a, b []lcPoint
	for i := range 3 {
		img := filepath.Join(dir, fmt.Sprintf("a%d.img", i))
		lcImage(t, img, 2<<20, uint64(10+i))
		a = append(a, lcBackup(t, store, "vm-a", img))
	}
	for i := range 2 {
		img := filepath.Join(dir, fmt.Sprintf("b%d.img", i))
		lcImage(t, img, 2<<20, uint64(20+i))
		b = append(b, lcBackup(t, store, "vm-b", img))
	}
	all := append(slices.Clone(a), b...)

	// A dry run lists every point with its decision and deletes nothing.
	rep := lcPrune(t, store, "--keep-last", "1", "--dry-run")
	if !rep.DryRun || rep.Policy != "last 1" {
		t.Errorf("dry run reports dry_run %v, policy %q", rep.DryRun, rep.Policy)
	}
	lcWantDecisions(t, rep, map[string][]string{
		a[0].id: {}, a[1].id: {}, a[2].id: {"last"}, b[0].id: {}, b[1].id: {"last"},
	})
	lcWantPoints(t, store, all...)
	text := cli(t, "prune", "--store", store, "--keep-last", "1", "--dry-run")
	if !strings.Contains(text, "dry run: 3 of 5 points would be removed") || strings.Count(text, "remove") != 4 {
		t.Errorf("dry run table:\n%s", text)
	}
	lcWantPoints(t, store, all...)

	// A pinned point is kept, with the reason "pinned"; the others the
	// rules do not keep are removed.
	if msg := cli(t, "point", "pin", "--store", store, a[0].id[:10]); !strings.Contains(msg, "point "+a[0].id+" pinned") {
		t.Errorf("point pin: %q", msg)
	}
	rep = lcPrune(t, store, "--keep-last", "1")
	if rep.DryRun {
		t.Error("prune without --dry-run reports dry_run")
	}
	lcWantDecisions(t, rep, map[string][]string{
		a[0].id: {"pinned"}, a[1].id: {}, a[2].id: {"last"}, b[0].id: {}, b[1].id: {"last"},
	})
	lcWantPoints(t, store, a[0], a[2], b[1])

	// A pinned point cannot be deleted.
	msg := cliErr(t, "point", "delete", "--store", store, a[0].id)
	if !strings.Contains(msg, "pinned") || !strings.Contains(msg, "unpin it first") || !strings.Contains(msg, a[0].id[:8]) {
		t.Errorf("point delete of a pinned point: %q", msg)
	}
	lcWantPoints(t, store, a[0], a[2], b[1])

	// Unpinned, it goes at the next prune.
	if msg := cli(t, "point", "unpin", "--store", store, a[0].id); !strings.Contains(msg, "unpinned") {
		t.Errorf("point unpin: %q", msg)
	}
	if msg := cli(t, "point", "unpin", "--store", store, a[0].id); !strings.Contains(msg, "was not pinned") {
		t.Errorf("second point unpin: %q", msg)
	}
	rep = lcPrune(t, store, "--keep-last", "1")
	lcWantDecisions(t, rep, map[string][]string{a[0].id: {}, a[2].id: {"last"}, b[1].id: {"last"}})
	lcWantPoints(t, store, a[2], b[1])

	// Bad rules are errors, and delete nothing.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--keep-daily", "-2"}, []string{"keep daily -2", "at least 0, or -1"}},
		{[]string{"--keep-within", "5x"}, []string{"--keep-within", `"5x"`}},
		{[]string{"--keep-last", "1", "--time-zone", "Mars/Base"}, []string{"--time-zone", "Mars/Base"}},
		{nil, []string{"no keep rule"}},
		{[]string{"--keep-within", "0d"}, []string{"--keep-within"}},
	} {
		args := append([]string{"prune", "--store", store}, c.args...)
		msg := cliErr(t, args...)
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("bulwark %s: error %q does not mention %q", strings.Join(args, " "), strings.TrimSpace(msg), w)
			}
		}
		cliErr(t, append(args, "--dry-run")...)
	}
	lcWantPoints(t, store, a[2], b[1])

	// An unpinned point can be deleted; an unknown one cannot.
	if msg := cli(t, "point", "delete", "--store", store, b[1].id[:8]); !strings.Contains(msg, "point "+b[1].id+" deleted") {
		t.Errorf("point delete: %q", msg)
	}
	if msg := cliErr(t, "point", "delete", "--store", store, b[1].id); !strings.Contains(msg, "no such point") {
		t.Errorf("point delete of a deleted point: %q", msg)
	}
	if msg := cliErr(t, "point", "pin", "--store", store, "abcd0123"); !strings.Contains(msg, "no such point") {
		t.Errorf("point pin of no point: %q", msg)
	}
	lcWantPoints(t, store, a[2])
	lcRestoreAll(t, store, out, a[2])
}

func TestGCReclaims(t *testing.T) {
	dir := t.TempDir()
	store := lcInitStore(t, dir)
	out := filepath.Join(dir, "restored.img")
	shared := filepath.Join(dir, "shared.img")
	lcImage(t, shared, 3<<20, 1)
	var points []lcPoint
	for i := range 4 {
		img := filepath.Join(dir, fmt.Sprintf("%d.img", i))
		lcImage(t, img, 3<<20, uint64(100+i))
		points = append(points, lcBackup(t, store, "vm", img))
		points = append(points, lcBackup(t, store, "shared", shared))
	}
	var before chunkstore.Stats
	if err := json.Unmarshal([]byte(cli(t, "stats", "--store", store, "--json")), &before); err != nil {
		t.Fatal(err)
	}
	rep := lcPrune(t, store, "--keep-last", "1")
	var kept []lcPoint
	for _, p := range points {
		if slices.ContainsFunc(rep.Points, func(r lcPruneRow) bool { return r.ID == p.id && r.Keep }) {
			kept = append(kept, p)
		}
	}
	if len(kept) != 2 {
		t.Fatalf("prune kept %d points, want 2", len(kept))
	}

	st := lcGC(t, store)
	t.Logf("first gc: %+v", st)
	if st.BytesReclaimed <= 0 || st.PacksDeleted+st.PacksRepacked == 0 || st.DeadBlobs == 0 || st.Points != 2 {
		t.Errorf("gc after a prune reclaimed nothing: %+v", st)
	}
	if st.BytesBefore-st.BytesAfter != st.BytesReclaimed {
		t.Errorf("gc: %d bytes before, %d after, but %d reclaimed", st.BytesBefore, st.BytesAfter, st.BytesReclaimed)
	}
	var after chunkstore.Stats
	if err := json.Unmarshal([]byte(cli(t, "stats", "--store", store, "--json")), &after); err != nil {
		t.Fatal(err)
	}
	if after.StoredBytes >= before.StoredBytes || after.Points != 2 {
		t.Errorf("stats before gc: %d points, %d bytes stored; after: %d points, %d bytes", before.Points, before.StoredBytes, after.Points, after.StoredBytes)
	}
	again := lcGC(t, store)
	t.Logf("second gc: %+v", again)
	if again.PacksDeleted != 0 || again.PacksRepacked != 0 || again.DeadBlobs != 0 || again.BytesReclaimed != 0 {
		t.Errorf("second gc still found garbage: %+v", again)
	}
	text := cli(t, "gc", "--store", store)
	if !strings.Contains(text, "packs deleted") || !strings.Contains(text, "space reclaimed") {
		t.Errorf("gc table:\n%s", text)
	}
	for _, bad := range []string{"-1", "101"} {
		if msg := cliErr(t, "gc", "--store", store, "--repack-below", bad); !strings.Contains(msg, "between 0 and 100") {
			t.Errorf("gc --repack-below %s: %q", bad, msg)
		}
	}
	lcCheckClean(t, store, "--read-data")
	lcRestoreAll(t, store, out, kept...)
}

func TestCheckFindsDamage(t *testing.T) {
	dir := t.TempDir()
	store := lcInitStore(t, dir)
	out := filepath.Join(dir, "restored.img")
	packsDir := filepath.Join(store, "packs")

	imgA, imgB := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	lcImage(t, imgA, 4<<20, 1)
	lcImage(t, imgB, 4<<20, 2)
	a := lcBackup(t, store, "vm-a", imgA)
	packsA := crashStoreFiles(t, packsDir)
	b := lcBackup(t, store, "vm-b", imgB)

	rep := lcCheckClean(t, store)
	if rep.Points != 2 || rep.Packs < 6 || rep.Blobs == 0 || rep.DataPacksTotal != 0 {
		t.Errorf("check of a clean store: %+v", rep)
	}
	if text := cli(t, "check", "--store", store); !strings.Contains(text, "no damage found") {
		t.Errorf("check of a clean store:\n%s", text)
	}
	rep = lcCheckClean(t, store, "--read-data")
	if rep.DataPacks != rep.Packs || rep.DataPacksTotal != rep.Packs {
		t.Errorf("check --read-data read %d of %d packs, the store has %d", rep.DataPacks, rep.DataPacksTotal, rep.Packs)
	}
	// Each data check picks its half of the packs at random: of a few,
	// some read fewer than all and some read any.
	var some, notAll bool
	for range 4 {
		rep = lcCheckClean(t, store, "--read-data=50%")
		if rep.DataPacks != rep.DataPacksTotal || rep.DataPacksTotal > rep.Packs {
			t.Errorf("check --read-data=50%% read %d of %d packs, the store has %d", rep.DataPacks, rep.DataPacksTotal, rep.Packs)
		}
		some, notAll = some || rep.DataPacks > 0, notAll || rep.DataPacks < rep.Packs
		t.Logf("--read-data=50%%: %d of %d packs", rep.DataPacksTotal, rep.Packs)
	}
	if !some || !notAll {
		t.Errorf("four checks with --read-data=50%% read no pack (%v) or every pack (%v)", !some, !notAll)
	}
	for _, bad := range []string{"0", "abc", "0%", "101", "-5"} {
		msg := cliErr(t, "check", "--store", store, "--read-data="+bad)
		if !strings.Contains(msg, "--read-data="+bad) || !strings.Contains(msg, "percentage") {
			t.Errorf("check --read-data=%s: %q", bad, msg)
		}
	}

	// One byte flipped in the first blob of a full pack of point a only,
	// which is a chunk of data (a map page goes last).
	var victim string
	var data []byte
	for _, p := range packsA {
		b, err := os.ReadFile(filepath.Join(packsDir, p[:2], p))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > len(data) {
			victim, data = p, b
		}
	}
	victimPath := filepath.Join(packsDir, victim[:2], victim)
	data[100] ^= 0x40
	if err := os.Chmod(victimPath, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victimPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	rep, stderr, code := lcCheck(t, store, "--read-data")
	if code == 0 {
		t.Errorf("check --read-data of a damaged store exited 0")
	}
	if !strings.Contains(stderr, "damaged") {
		t.Errorf("check --read-data: error %q", stderr)
	}
	if !slices.Equal(rep.DamagedPacks, []string{victim}) {
		t.Errorf("check names damaged packs %v, want [%s]", rep.DamagedPacks, victim)
	}
	if len(rep.DamagedPoints) != 1 || rep.DamagedPoints[0].ID != a.id || rep.DamagedPoints[0].Source != "vm-a" ||
		!slices.Equal(rep.DamagedPoints[0].Packs, []string{victim}) || len(rep.DamagedPoints[0].Problems) == 0 {
		t.Errorf("check names damaged points %+v, want point %s of vm-a, in pack %s", rep.DamagedPoints, a.id, victim)
	}
	var chunk bool
	for _, p := range rep.Problems {
		chunk = chunk || p.Kind == "chunk" && p.Pack == victim
	}
	if !chunk {
		t.Errorf("no problem names a chunk of pack %s: %+v", victim, rep.Problems)
	}
	text, _, code := crashCLI("check", "--store", store, "--read-data")
	if code == 0 || !strings.Contains(text, victim) || !strings.Contains(text, a.id) || strings.Contains(text, b.id) {
		t.Errorf("check --read-data exit %d, report:\n%s", code, text)
	}

	// GC leaves the damaged pack, which a point uses; the undamaged point
	// still restores, the damaged one fails to, naming the pack.
	lcGC(t, store, "--repack-below", "90")
	if _, err := os.Stat(victimPath); err != nil {
		t.Errorf("gc removed the damaged pack: %v", err)
	}
	lcRestoreAll(t, store, out, b)
	if msg := cliErr(t, "image", "restore", "--store", store, a.id, out); !strings.Contains(msg, victim[:8]) {
		t.Errorf("restore of the damaged point: %q", msg)
	}
}

func TestIndexRebuild(t *testing.T) {
	dir := t.TempDir()
	store := lcInitStore(t, dir)
	out := filepath.Join(dir, "restored.img")
	img := filepath.Join(dir, "disk.img")
	var points []lcPoint
	for i := range 3 {
		lcImage(t, img, 3<<20, uint64(i))
		points = append(points, lcBackup(t, store, "vm", img))
	}
	lcImage(t, img, 3<<20, 0)
	points = append(points, lcBackup(t, store, "vm2", img)) // the same as the first
	lcPrune(t, store, "--keep-last", "2")                   // the first point goes; its data stays
	points = slices.Delete(points, 0, 1)
	lcGC(t, store)
	var before chunkstore.Stats
	if err := json.Unmarshal([]byte(cli(t, "stats", "--store", store, "--json")), &before); err != nil {
		t.Fatal(err)
	}

	if err := os.RemoveAll(filepath.Join(store, "index")); err != nil {
		t.Fatal(err)
	}
	msg := cli(t, "index", "rebuild", "--store", store)
	if !strings.Contains(msg, "index rebuilt") || !strings.Contains(msg, fmt.Sprintf("%d points", len(points))) ||
		!strings.Contains(msg, fmt.Sprintf("%d packs", before.Packs)) {
		t.Errorf("index rebuild: %q; before it the store had %d packs", msg, before.Packs)
	}
	lcWantPoints(t, store, points...)
	lcRestoreAll(t, store, out, points...)
	// The rebuilt index is the writer's; restore goes through a reader's,
	// which is also built anew once it is gone.
	if err := os.RemoveAll(filepath.Join(store, "index-read")); err != nil {
		t.Fatal(err)
	}
	lcRestoreAll(t, store, out, points...)
	lcRestoreWriter(t, store, out, points...)
	rep := lcCheckClean(t, store, "--read-data")
	if rep.Points != len(points) || int64(rep.Packs) != before.Packs {
		t.Errorf("check after rebuild: %d points, %d packs; want %d, %d", rep.Points, rep.Packs, len(points), before.Packs)
	}

	// A rebuild of an index that is there gives the same index.
	cli(t, "index", "rebuild", "--store", store)
	lcRestoreWriter(t, store, out, points...)
	if st := lcGC(t, store); st.PacksDeleted != 0 || st.DeadBlobs != 0 {
		t.Errorf("gc after rebuild found garbage: %+v", st)
	}
}

// lcRestoreWriter restores points through the writer's index, which "image
// restore" does not use, and compares them with their images.
func lcRestoreWriter(t *testing.T, store, out string, points ...lcPoint) {
	t.Helper()
	ctx := context.Background()
	s, err := chunkstore.Open(ctx, backend.NewLocal(store), chunkstore.Options{Password: []byte(crashPassword), Purpose: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range points {
		id, err := blob.ParseID(p.id)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		err = s.RestoreDisk(ctx, id, 0, f, chunkstore.RestoreOptions{})
		f.Close()
		if err != nil {
			t.Errorf("restore point %s through the writer's index: %v", p.id[:12], err)
			continue
		}
		if got := sha(t, out); got != p.hash {
			t.Errorf("point %s restores through the writer's index to sha256 %x, its image was %x", p.id[:12], got[:8], p.hash[:8])
		}
	}
}

// TestReadersDoNotWaitForWriter holds the store's write lock and checks that
// read-only commands go ahead while writers fail at once, naming the holder.
func TestReadersDoNotWaitForWriter(t *testing.T) {
	dir := t.TempDir()
	store := lcInitStore(t, dir)
	out := filepath.Join(dir, "restored.img")
	img := filepath.Join(dir, "disk.img")
	lcImage(t, img, 3<<20, 1)
	p1 := lcBackup(t, store, "vm", img)
	lcImage(t, img, 3<<20, 2)
	p2 := lcBackup(t, store, "vm", img)

	// The flock is on an open file, so a second open conflicts with it in
	// this process too.
	ctx := context.Background()
	holder, err := chunkstore.Open(ctx, backend.NewLocal(store), chunkstore.Options{Password: []byte(crashPassword), Purpose: "test holder"})
	if err != nil {
		t.Fatal(err)
	}
	held := true
	defer func() {
		if held {
			holder.Close()
		}
	}()

	// Readers.
	lcWantPoints(t, store, p1, p2)
	var st chunkstore.Stats
	if err := json.Unmarshal([]byte(cli(t, "stats", "--store", store, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Points != 2 || st.Packs == 0 {
		t.Errorf("stats while the store is held: %+v", st)
	}
	lcRestoreAll(t, store, out, p1, p2)
	rep, stderr, code := lcCheck(t, store, "--read-data")
	if code != 0 || !rep.OK() || rep.Points != 2 {
		t.Errorf("check while the store is held: exit %d, %+v\n%s", code, rep, stderr)
	}
	t.Logf("check while the store is held: %s", strings.TrimSpace(stderr))
	if !strings.Contains(stderr, "checking from a private index") || !strings.Contains(stderr, "test holder") {
		t.Errorf("check while the store is held says %q", stderr)
	}
	if text, stderr, code := crashCLI("check", "--store", store); code != 0 || !strings.Contains(text, "no damage found") {
		t.Errorf("check (text) while the store is held: exit %d\n%s\n%s", code, text, stderr)
	}
	rep2 := lcPrune(t, store, "--keep-last", "1", "--dry-run")
	if len(rep2.Points) != 2 {
		t.Errorf("prune --dry-run while the store is held: %+v", rep2)
	}

	// Writers.
	host, _ := os.Hostname()
	for _, args := range [][]string{
		{"image", "backup", "--store", store, "--source", "vm", img},
		{"gc", "--store", store},
		{"prune", "--store", store, "--keep-last", "1"},
		{"point", "pin", "--store", store, p1.id},
		{"point", "delete", "--store", store, p1.id},
		{"index", "rebuild", "--store", store},
	} {
		start := time.Now()
		msg := cliErr(t, args...)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("bulwark %s took %v to fail", strings.Join(args, " "), d)
		}
		t.Logf("bulwark %s: %s", args[0], strings.TrimSpace(msg))
		for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), "on " + host, "since ", "test holder"} {
			if !strings.Contains(msg, want) {
				t.Errorf("bulwark %s: error %q does not contain %q", strings.Join(args, " "), strings.TrimSpace(msg), want)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(store, "index")); err != nil {
		t.Errorf("index rebuild refused, but the index is gone: %v", err)
	}
	held = false
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	lcWantPoints(t, store, p1, p2)
	lcRestoreAll(t, store, out, p1, p2)

	// Let go, the store takes writers again.
	lcPrune(t, store, "--keep-last", "1")
	lcGC(t, store)
	lcWantPoints(t, store, p2)
	lcRestoreAll(t, store, out, p2)
}

// TestStaleLockTakenOver kills a writer that holds the store and checks that
// the next writer opens it, and that readers went ahead meanwhile.
func TestStaleLockTakenOver(t *testing.T) {
	dir := t.TempDir()
	store := lcInitStore(t, dir)
	out := filepath.Join(dir, "restored.img")
	small := filepath.Join(dir, "small.img")
	lcImage(t, small, 2<<20, 1)
	p1 := lcBackup(t, store, "vm", small)

	rng := rand.New(rand.NewPCG(3, 4))
	img := newCrashImage(t, filepath.Join(crashScratchDir(t), "big.img"), 256<<20, rng)
	for off := int64(0); off < img.size; off += 4 << 20 {
		img.writeRandom(t, off, 2<<20)
	}
	cmd := crashCommand("image", "backup", "--store", store, "--source", "big", img.path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	pid := cmd.Process.Pid
	lockFile := filepath.Join(store, "lock")
	holder := func() int {
		b, _ := os.ReadFile(lockFile)
		var h struct {
			PID int `json:"pid"`
		}
		_ = json.Unmarshal(b, &h)
		return h.PID
	}
	// Killed once it holds the store and has saved packs, it leaves
	// garbage for the next writer's gc as well as a stale lock.
	packsDir := filepath.Join(store, "packs")
	packsBefore := len(crashStoreFiles(t, packsDir))
	deadline := time.Now().Add(30 * time.Second)
	for holder() != pid || len(crashStoreFiles(t, packsDir)) < packsBefore+3 {
		select {
		case <-exited:
			t.Fatalf("the backup ended before it was seen holding the store:\n%s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the backup did not take the lock and save 3 packs within 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}

	// Meanwhile readers go ahead and a writer is turned away.
	ids := lcPointIDs(t, store)
	restored := lcRestore(t, store, out, p1)
	rep, checkLog, code := lcCheck(t, store)
	msg := cliErr(t, "gc", "--store", store)
	select {
	case <-exited:
		t.Fatalf("the backup ended while the store was held:\n%s", stderr.String())
	default:
	}
	if !slices.Equal(ids, []string{p1.id}) {
		t.Errorf("points while a backup runs: %s", lcShortIDs(ids))
	}
	if restored != "" {
		t.Errorf("while a backup runs: %s", restored)
	}
	if code != 0 || !rep.OK() || !strings.Contains(checkLog, "checking from a private index") {
		t.Errorf("check while a backup runs: exit %d, %+v\n%s", code, rep, checkLog)
	}
	host, _ := os.Hostname()
	for _, want := range []string{fmt.Sprintf("pid %d", pid), "on " + host, "since ", "image backup"} {
		if !strings.Contains(msg, want) {
			t.Errorf("gc while a backup runs: error %q does not name %q", msg, want)
		}
	}

	_ = cmd.Process.Kill()
	<-exited
	if got := holder(); got != pid {
		t.Fatalf("the lock file of the killed writer names pid %d, want %d: the test needs a stale lock", got, pid)
	}
	start := time.Now()
	gcOut, gcLog, code := crashCLI("gc", "--store", store, "--json", "--log-level", "info")
	if code != 0 {
		t.Fatalf("gc after the writer was killed: exit %d\n%s", code, gcLog)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gc after the writer was killed took %v", d)
	}
	if !strings.Contains(gcLog, "took over the lock of a writer that died") || !strings.Contains(gcLog, fmt.Sprintf("pid=%d", pid)) {
		t.Errorf("gc does not say it took over pid %d's lock:\n%s", pid, gcLog)
	}
	var st chunkstore.GCStats
	if err := json.Unmarshal([]byte(gcOut), &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("gc after the kill: %+v", st)
	if st.PacksDeleted < 3 || st.BytesReclaimed <= 0 {
		t.Errorf("gc did not delete the packs of the killed backup: %+v", st)
	}
	if holder() != 0 {
		t.Errorf("the lock file still names a holder after gc ended")
	}
	if n := len(crashStoreFiles(t, filepath.Join(store, "tmp"))); n > 0 {
		t.Errorf("%d temporary files of the killed writer are left", n)
	}
	lcImage(t, small, 2<<20, 2)
	p2 := lcBackup(t, store, "vm", small)
	lcWantPoints(t, store, p1, p2)
	lcCheckClean(t, store, "--read-data")
	lcRestoreAll(t, store, out, p1, p2)
}
