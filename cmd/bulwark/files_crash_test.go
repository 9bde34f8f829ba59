package main

import (
	"context"
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
)

// TestCrashFilesGet SIGKILLs `files get --overwrite always` at random
// moments, at least 15 times, into one directory: every run replaces what the last
// left. After every kill, each file under its final name is whole: a
// killed restore leaves at most temporary files, never a partial file
// where the user looks, nor a file it was replacing cut short. A last,
// uninterrupted run completes the tree bit-exact.
func TestCrashFilesGet(t *testing.T) {
	seed := crashSeed(t)
	t.Logf("seed %d (BULWARK_CRASH_SEED=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x51ed27))
	t.Setenv("BULWARK_PASSWORD", crashPassword)
	ctx := context.Background()
	scratch := crashScratchDir(t)

	// A tree of files big enough that a restore takes a while.
	src := filepath.Join(scratch, "src")
	want := map[string][32]byte{}
	for i := range 24 {
		name := filepath.Join("tree", string(rune('a'+i%6)), "file"+string(rune('A'+i))+".bin")
		data := make([]byte, 1<<20+rng.IntN(3<<20))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		want[filepath.ToSlash(name)] = sha(t, p)
	}
	img := filepath.Join(scratch, "fs.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 160<<20); err != nil {
		t.Fatal(err)
	}
	mke2fs := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", src, img)
	mke2fs.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	if out, err := mke2fs.CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}

	store := filepath.Join(t.TempDir(), "store")
	if err := chunkstore.Init(ctx, backend.NewLocal(store), chunkstore.InitOptions{Password: []byte(crashPassword),
		KDF: crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := crashCLI("image", "backup", "--store", store, "--source", "fs", "--json", img)
	if code != 0 {
		t.Fatalf("backup: %s", errOut)
	}
	var sum backupSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}

	to := filepath.Join(scratch, "restored")
	get := []string{"files", "get", "--store", store, sum.Point, "--volume", "d0", "tree", "--to", to, "--overwrite", "always"}
	calib := runCrashChild(t, -1, get...)
	if err := os.RemoveAll(to); err != nil {
		t.Fatal(err)
	}
	t.Logf("uninterrupted restore of %d files: %.2fs", len(want), calib.elapsed.Seconds())

	// Delays are stratified over the span an uninterrupted restore takes;
	// a busy machine may make restores quicker or slower than measured,
	// so runs go on until enough of them were killed.
	const runs, minKilled, maxRuns = 20, 15, 40
	strata := rng.Perm(runs)
	span := crashKillSpan * float64(calib.elapsed)
	killed, i := 0, 0
	for ; i < runs || killed < minKilled && i < maxRuns; i++ {
		frac := rng.Float64()
		if i < runs {
			frac = (float64(strata[i]) + frac) / runs
		}
		res := runCrashChild(t, time.Duration(frac*span), get...)
		if res.killed {
			killed++
		}
		checkWholeFiles(t, to, want, i+1)
		if t.Failed() {
			t.FailNow()
		}
	}
	if killed < minKilled {
		t.Errorf("only %d of %d restores were killed: the kills missed", killed, i)
	}
	runCrashChild(t, -1, get...)
	found := checkWholeFiles(t, to, want, i+1)
	if found != len(want) {
		t.Errorf("after the last run, %d of %d files restored", found, len(want))
	}
	temps, _ := filepath.Glob(filepath.Join(to, "tree", "*", ".bulwark-tmp-*"))
	t.Logf("%d of %d runs killed; every file under its final name was whole after each; %d temporary files left by the kills", killed, i, len(temps))
}

// checkWholeFiles checks that every file under its final name in to holds
// its source's bytes, and returns how many there are. Temporary files of a
// killed restore are left out.
func checkWholeFiles(t *testing.T, to string, want map[string][32]byte, run int) int {
	t.Helper()
	found := 0
	_ = filepath.WalkDir(to, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".bulwark-tmp-") {
			return nil
		}
		rel, _ := filepath.Rel(filepath.Dir(to), p)
		rel = strings.TrimPrefix(filepath.ToSlash(rel), "restored/")
		w, ok := want[rel]
		switch {
		case !ok:
			t.Errorf("run %d: %s is not in the source", run, rel)
		case sha(t, p) != w:
			t.Errorf("run %d: %s is under its final name but not whole", run, rel)
		default:
			found++
		}
		return nil
	})
	return found
}
