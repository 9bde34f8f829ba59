package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
)

// The GC crash test: "A GC killed with SIGKILL at random moments (at least
// 20 runs) leaves a store that opens, checks clean, and restores every live
// point bit-exact."
//
// Every run first makes garbage: new backups of two sources that share
// much of their content, then a prune or point deletes. Then "gc
// --repack-below 90" runs in a child process that is killed: half the runs
// after a random delay, the delays spread over the time a whole GC takes,
// the others once the GC is seen holding the store, saving its n-th
// repacked pack or deleting its first pack, so that kills land in each of
// its stages; some GCs finish. Afterwards the store must open, check
// --read-data must find no damage, the store must list the points it had,
// every one of them must restore bit-exact, and a GC must then complete and
// leave nothing for the next one. Each run logs what the kill interrupted,
// judged from what the GC left behind.
//
// A store whose index does not open, or whose readers' index has lost
// chunks, fails the test, but the runs go on (from a second open, or a
// readers' index built anew) to find what else may fail.
//
// Set BULWARK_CRASH_SEED to repeat a run with the seed it logged.

const (
	gcCrashRuns      = 24  // the requirement asks for at least 20
	gcCrashMinKilled = 12  // runs whose GC must die before its end
	gcCrashKillSpan  = 1.3 // kills land in [0, gcCrashKillSpan × a whole GC's duration)
	gcCrashImageSize = 16 << 20
)

// gcCrashSource is one source and its image, changed between backups.
type gcCrashSource struct {
	name string
	img  *crashImage
	live []lcPoint // oldest first
}

// change writes random data at a few random places of the image; a small
// image with small chunks makes each write dirty a few chunks and packs.
func (s *gcCrashSource) change(t *testing.T) {
	t.Helper()
	img := s.img
	for range 3 + img.rng.IntN(4) {
		n := 16<<10 + img.rng.Int64N(768<<10)
		img.writeRandom(t, img.rng.Int64N(img.size-n+1), n)
	}
}

// copyFrom copies a random range of other's image into s's at the same
// place, so that the sources keep sharing chunks.
func (s *gcCrashSource) copyFrom(t *testing.T, other *gcCrashSource) {
	t.Helper()
	n := 256<<10 + s.img.rng.Int64N(2<<20)
	off := s.img.rng.Int64N(s.img.size - n + 1)
	b := make([]byte, n)
	if _, err := other.img.f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	if _, err := s.img.f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// backup backs the image up in-process as a new point, half the time with
// the source's newest point as parent.
func (s *gcCrashSource) backup(t *testing.T, store string) lcPoint {
	t.Helper()
	args := []string{"image", "backup", "--store", store, "--source", s.name, "--json"}
	if len(s.live) > 0 && s.img.rng.IntN(2) == 0 {
		args = append(args, "--parent", "latest")
	}
	out := cli(t, append(args, s.img.path)...)
	var sum backupSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("backup summary: %v\n%s", err, out)
	}
	p := lcPoint{id: sum.Point, source: s.name, hash: s.img.hash(t)}
	s.live = append(s.live, p)
	return p
}

// gcCrashPhase says what a killed GC had done, from what it left.
func gcCrashPhase(before, after []string, tmp int, openLog string) string {
	var added, removed int
	for _, p := range after {
		if !slices.Contains(before, p) {
			added++
		}
	}
	for _, p := range before {
		if !slices.Contains(after, p) {
			removed++
		}
	}
	// Packs that the index lacked when check opened the store: new ones
	// saved but not indexed, or old ones the GC forgot but did not delete.
	var foundNew, foundOld int
	for _, line := range strings.Split(openLog, "\n") {
		if !strings.Contains(line, "indexed pack found on open") {
			continue
		}
		_, short, _ := strings.Cut(line, "pack=")
		short, _, _ = strings.Cut(short, " ")
		if slices.ContainsFunc(before, func(p string) bool { return strings.HasPrefix(p, short) }) {
			foundOld++
		} else {
			foundNew++
		}
	}
	// The GCs are the only writers that die: others release the lock.
	held := strings.Contains(openLog, "took over the lock of a writer that died")
	switch {
	case !held && added+removed > 0:
		return "after it let go of the store, before it exited"
	case !held:
		return "before it held the store"
	case removed > 0:
		return "deleting packs"
	case foundOld > 0:
		return "after the index forgot the old packs, before deleting them"
	case tmp > 0:
		return "writing a repacked pack"
	case foundNew > 0:
		return "between saving a repacked pack and indexing it"
	case added > 0:
		return "repacking, after saving and indexing a pack"
	default:
		return "marking, or repacking before its first pack was saved"
	}
}

// gcKill says when to kill a child: once event reports true and extra has
// passed, or else after delay, or never if delay < 0.
type gcKill struct {
	what  string
	delay time.Duration
	event func(pid int) bool
	extra time.Duration
}

// gcRunChild runs bulwark as a child process and kills it as k says. A
// child that exits on its own must succeed.
func gcRunChild(t *testing.T, k gcKill, args ...string) crashChild {
	t.Helper()
	cmd := crashCommand(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	kill := make(chan struct{})
	stop := make(chan struct{})
	var polling sync.WaitGroup
	switch {
	case k.event != nil:
		pid := cmd.Process.Pid
		polling.Add(1)
		go func() {
			defer polling.Done()
			tick := time.NewTicker(500 * time.Microsecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if k.event(pid) {
					time.Sleep(k.extra)
					close(kill)
					return
				}
			}
		}()
	case k.delay >= 0:
		timer := time.AfterFunc(k.delay, func() { close(kill) })
		defer timer.Stop()
	}
	var err error
	select {
	case err = <-done:
	case <-kill:
		_ = cmd.Process.Kill()
		err = <-done
	}
	close(stop)
	polling.Wait()
	res := crashChild{elapsed: time.Since(start), stdout: stdout.String(), stderr: stderr.String()}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	res.killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
	if !res.killed && err != nil {
		t.Fatalf("bulwark %s: %v\nstderr:\n%s", strings.Join(args, " "), err, res.stderr)
	}
	return res
}

// gcPackNames lists the packs of a store; it may run beside the test.
func gcPackNames(store string) map[string]bool {
	names := map[string]bool{}
	shards, _ := os.ReadDir(filepath.Join(store, "packs"))
	for _, sh := range shards {
		files, _ := os.ReadDir(filepath.Join(store, "packs", sh.Name()))
		for _, f := range files {
			names[f.Name()] = true
		}
	}
	return names
}

// gcLockHolder returns the pid the store's lock file names, or 0.
func gcLockHolder(store string) int {
	b, _ := os.ReadFile(filepath.Join(store, "lock"))
	var h struct {
		PID int `json:"pid"`
	}
	_ = json.Unmarshal(b, &h)
	return h.PID
}

// gcPhaseGroup is the stage of GC a phase belongs to.
func gcPhaseGroup(phase string) string {
	switch {
	case strings.HasPrefix(phase, "completed"):
		return "completed"
	case strings.HasPrefix(phase, "marking"):
		return "mark"
	case strings.HasPrefix(phase, "after it let go"):
		return "exit"
	case strings.Contains(phase, "repack"):
		return "repack"
	case strings.Contains(phase, "delet"):
		return "delete"
	}
	return "start"
}

func TestCrashGC(t *testing.T) {
	start := time.Now()
	seed := crashSeed(t)
	t.Logf("seed %d (BULWARK_CRASH_SEED=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc908))

	dir := t.TempDir()
	store := lcInitStore(t, dir)
	packsDir, tmpDir := filepath.Join(store, "packs"), filepath.Join(store, "tmp")
	scratch := crashScratchDir(t)
	restoreOut := filepath.Join(scratch, "restored.img")

	// Source b starts as a copy of a with a quarter rewritten; afterwards
	// ranges of a are copied into b now and then.
	a := &gcCrashSource{name: "vm-a", img: newCrashImage(t, filepath.Join(scratch, "a.img"), gcCrashImageSize, rng)}
	b := &gcCrashSource{name: "vm-b", img: newCrashImage(t, filepath.Join(scratch, "b.img"), gcCrashImageSize, rng)}
	a.img.writeRandom(t, 0, a.img.size)
	bAll := make([]byte, b.img.size)
	if _, err := a.img.f.ReadAt(bAll, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.img.f.WriteAt(bAll, 0); err != nil {
		t.Fatal(err)
	}
	b.img.writeRandom(t, b.img.size/2, b.img.size/4)
	sources := []*gcCrashSource{a, b}
	for _, s := range sources {
		s.backup(t, store)
	}

	live := func() []lcPoint {
		var all []lcPoint
		for _, s := range sources {
			all = append(all, s.live...)
		}
		return all
	}
	forget := func(id string) {
		for _, s := range sources {
			s.live = slices.DeleteFunc(s.live, func(p lcPoint) bool { return p.id == id })
		}
	}

	// makeGarbage backs up both sources twice, changed each time, and
	// removes points so that the next GC has packs to delete and repack.
	makeGarbage := func(run int) string {
		for range 2 {
			for _, s := range sources {
				s.change(t)
				if s == b && rng.IntN(2) == 0 {
					b.copyFrom(t, a)
				}
				s.backup(t, store)
			}
		}
		switch run % 3 {
		case 0, 1: // prune, once with a point pinned
			keep := 1 + run%3
			var pinned string
			if run%3 == 1 {
				pinned = b.live[0].id
				cli(t, "point", "pin", "--store", store, pinned)
			}
			rep := lcPrune(t, store, "--keep-last", fmt.Sprint(keep))
			for _, r := range rep.Points {
				if !r.Keep {
					forget(r.ID)
				}
			}
			if pinned != "" {
				cli(t, "point", "unpin", "--store", store, pinned)
			}
			return fmt.Sprintf("prune --keep-last %d", keep)
		default: // point delete of random points, the newest of each source kept
			var deleted []string
			for _, s := range sources {
				for len(s.live) > 1 && (len(deleted) == 0 || rng.IntN(3) > 0) {
					p := s.live[rng.IntN(len(s.live)-1)]
					cli(t, "point", "delete", "--store", store, p.id)
					forget(p.id)
					deleted = append(deleted, p.id[:8])
				}
			}
			return "point delete " + strings.Join(deleted, " ")
		}
	}
	gcArgs := []string{"gc", "--store", store, "--repack-below", "90", "--json"}

	// Most kills come at a time drawn from [0, gcCrashKillSpan × how long
	// a whole GC takes): the time slices are stratified, each run draws from
	// its own, so that the kills cover the span whatever the seed. Process
	// start and opening the store take about half of a GC's time here, so
	// other kills come on what the GC is seen to do: once it holds the
	// store (while it marks), once it saved its n-th repacked pack, or once
	// it deleted its first pack.
	var packsBefore []string
	before := map[string]bool{}
	lockHeld := func(extra time.Duration) gcKill {
		return gcKill{what: fmt.Sprintf("%.1fms after it took the lock", extra.Seconds()*1000), extra: extra,
			event: func(pid int) bool { return gcLockHolder(store) == pid }}
	}
	packSaved := func(n int, extra time.Duration) gcKill {
		return gcKill{what: fmt.Sprintf("%.1fms after it saved %d packs", extra.Seconds()*1000, n), extra: extra,
			event: func(int) bool {
				fresh := 0
				for p := range gcPackNames(store) {
					if !before[p] {
						fresh++
					}
				}
				return fresh >= n
			}}
	}
	packDeleted := func(extra time.Duration) gcKill {
		return gcKill{what: fmt.Sprintf("%.1fms after it deleted a pack", extra.Seconds()*1000), extra: extra,
			event: func(int) bool { return gcAnyGone(before, gcPackNames(store)) }}
	}
	ms := func(max float64) time.Duration { return time.Duration(rng.Float64() * max * float64(time.Millisecond)) }
	var duration time.Duration
	const timed = gcCrashRuns / 2
	strata := rng.Perm(timed)
	plan := make([]func() gcKill, 0, gcCrashRuns)
	for i := range timed {
		plan = append(plan, func() gcKill {
			frac := (float64(strata[i]) + rng.Float64()) / timed * gcCrashKillSpan
			d := time.Duration(frac * float64(duration))
			return gcKill{what: fmt.Sprintf("at %.3fs (%.2f of a GC)", d.Seconds(), frac), delay: d}
		})
	}
	for i := timed; i < gcCrashRuns; i++ {
		switch i % 3 {
		case 0:
			plan = append(plan, func() gcKill { return lockHeld(ms(8)) })
		case 1:
			plan = append(plan, func() gcKill { return packSaved(1+rng.IntN(4), ms(2)) })
		default:
			plan = append(plan, func() gcKill { return packDeleted(ms(2)) })
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	// A stage no kill landed in gets more runs, a few at most.
	const extraRuns = 8
	more := map[string]func() gcKill{
		"mark":   func() gcKill { return lockHeld(ms(4)) },
		"repack": func() gcKill { return packSaved(1+rng.IntN(2), ms(1)) },
		"delete": func() gcKill { return packDeleted(ms(1)) },
	}

	var killed, completed, repacks, garbage int
	// Failures that the runs recover from, reported at the end so that
	// the runs go on: an index that does not open, and a readers' index
	// that lacks chunks.
	var indexLost, readerLost []string
	var prev string // how the run before ended
	phases := map[string]int{}
	groups := map[string]int{}
	// restoreAll restores every point through the readers' index
	// ("index-read"), and if some do not restore, through one built anew:
	// that tells a stale index from lost data.
	restoreAll := func(what, how string, want []lcPoint) {
		t.Helper()
		var failed []string
		for _, p := range want {
			if msg := lcRestore(t, store, restoreOut, p); msg != "" {
				failed = append(failed, msg)
			}
		}
		if len(failed) == 0 {
			return
		}
		if err := os.RemoveAll(filepath.Join(store, "index-read")); err != nil {
			t.Fatal(err)
		}
		lcRestoreAll(t, store, restoreOut, want...)
		if t.Failed() {
			t.Fatalf("%s: %s: points do not restore, even through a new readers' index:\n%s", what, how, strings.Join(failed, "\n"))
		}
		msg := fmt.Sprintf("%s: %s: %d of %d points do not restore through the readers' index, but do through one built anew (the run before: GC killed %s); the readers' index lacks chunks:\n%s",
			what, how, len(failed), len(want), prev, strings.Join(failed, "\n"))
		t.Log(msg)
		readerLost = append(readerLost, msg)
	}
	var tGarbage, tGC, tCheck, tRestore, tAfter time.Duration
	lap := time.Now()
	took := func(d *time.Duration) {
		now := time.Now()
		*d += now.Sub(lap)
		lap = now
	}
	for run := -1; run < len(plan); run++ {
		what := "calibration"
		if run >= 0 {
			what = fmt.Sprintf("run %d", run+1)
		}
		lap = time.Now()
		removal := makeGarbage(run + 1)
		took(&tGarbage)
		want := live()
		packsBefore = crashStoreFiles(t, packsDir)
		clear(before)
		for _, p := range packsBefore {
			before[p] = true
		}

		k := gcKill{what: "not killed", delay: -1}
		if run >= 0 {
			k = plan[run]()
		}
		res := gcRunChild(t, k, gcArgs...)
		if k.event == nil && (!res.killed || res.elapsed > duration) {
			duration = res.elapsed // a whole GC, or at least this long
		}
		took(&tGC)
		packsAfterKill := crashStoreFiles(t, packsDir)
		tmp := len(crashStoreFiles(t, tmpDir))

		// The store opens, as a writer, and checks clean, all the data read.
		checkArgs := []string{"check", "--store", store, "--json", "--read-data", "--log-level", "info"}
		stdout, openLog, code := crashCLI(checkArgs...)
		firstLog := openLog
		var phase string
		if res.killed {
			killed++
			phase = gcCrashPhase(packsBefore, packsAfterKill, tmp, openLog)
		}
		if code != 0 && strings.Contains(openLog, "open index") {
			// The index is a cache of the packs and manifests: a store
			// whose index does not open still holds every point. The run
			// is counted as failed, and goes on after a second try, or
			// from the index rebuilt.
			files := gcIndexFiles(store)
			stdout, openLog, code = crashCLI(checkArgs...)
			then := "a second open succeeds"
			if code != 0 && strings.Contains(openLog, "open index") {
				then = "nor does a second"
				cli(t, "index", "rebuild", "--store", store)
				stdout, openLog, code = crashCLI(checkArgs...)
			}
			msg := fmt.Sprintf("%s: GC killed %s, after %.3fs (%s): the store does not open, its index does not (%s):\n%s\nindex files: %s",
				what, k.what, res.elapsed.Seconds(), phase, then, strings.TrimSpace(firstLog), files)
			t.Log(msg)
			indexLost = append(indexLost, msg)
		}
		var rep chunkstore.CheckReport
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%s: killed %s, after %.3fs: check exit %d, no report: %v\nstdout:\n%s\nstderr:\n%s",
				what, k.what, res.elapsed.Seconds(), code, err, stdout, openLog)
		}
		if !res.killed {
			completed++
			phase = "completed"
			var st struct {
				PacksRepacked int `json:"packs_repacked"`
				PacksDeleted  int `json:"packs_deleted"`
			}
			if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
				t.Fatalf("%s: gc --json: %v\n%s", what, err, res.stdout)
			}
			phase = fmt.Sprintf("completed: %d packs repacked, %d deleted", st.PacksRepacked, st.PacksDeleted)
		}
		phases[strings.SplitN(phase, ":", 2)[0]]++
		groups[gcPhaseGroup(phase)]++
		if code != 0 || !rep.OK() || len(rep.DamagedPoints) > 0 || len(rep.DamagedPacks) > 0 || rep.Incomplete ||
			rep.Points != len(want) || rep.DataPacks != rep.DataPacksTotal || rep.DataPacks == 0 {
			t.Fatalf("%s (%s): check --read-data: exit %d, %d points (want %d), data read of %d of %d packs, problems %+v, damaged points %+v, damaged packs %v\n%s",
				what, phase, code, rep.Points, len(want), rep.DataPacks, rep.DataPacksTotal, rep.Problems, rep.DamagedPoints, rep.DamagedPacks, openLog)
		}
		// Errors of the index itself are the concern of indexLost above.
		for _, line := range strings.Split(openLog, "\n") {
			if strings.Contains(line, "level=ERROR") && !strings.Contains(line, "component=index") ||
				strings.Contains(line, "are gone from the store") {
				t.Errorf("%s (%s): opening the store logged:\n%s", what, phase, openLog)
				break
			}
		}
		if n := len(crashStoreFiles(t, tmpDir)); n > 0 {
			t.Errorf("%s: %d temporary files survived opening the store", what, n)
		}
		t.Logf("%s: %s; %d points; gc of %d packs, killed %s: %s after %.3fs; left %d new packs, %d removed, %d temporary files",
			what, removal, len(want), len(packsBefore), k.what, phase, res.elapsed.Seconds(),
			gcCountNew(packsBefore, packsAfterKill), gcCountNew(packsAfterKill, packsBefore), tmp)
		took(&tCheck)
		lcWantPoints(t, store, want...)
		restoreAll(what, fmt.Sprintf("GC killed %s (%s)", k.what, phase), want)
		took(&tRestore)

		// A GC then completes, and leaves nothing to the next one.
		st := lcGC(t, store, "--repack-below", "90")
		again := lcGC(t, store, "--repack-below", "90")
		if again.PacksDeleted != 0 || again.PacksRepacked != 0 || again.DeadBlobs != 0 || again.BytesReclaimed != 0 {
			t.Errorf("%s: a GC after the GC that completed the killed one still found garbage: %+v", what, again)
		}
		packsEnd := crashStoreFiles(t, packsDir)
		var gone, written int
		for _, p := range packsBefore {
			if !slices.Contains(packsEnd, p) {
				gone++
			}
		}
		for _, p := range packsEnd {
			if !slices.Contains(packsBefore, p) {
				written++
			}
		}
		if gone > 0 {
			garbage++
		}
		if written > 0 {
			repacks++
		}
		lcCheckClean(t, store)
		took(&tAfter)
		if t.Failed() {
			t.FailNow()
		}
		prev = k.what + " (" + phase + ")"
		t.Logf("%s: then gc deleted %d packs and repacked %d; of the %d packs before the killed GC, %d are gone, and %d packs are new",
			what, st.PacksDeleted, st.PacksRepacked, len(packsBefore), gone, written)
		if run == len(plan)-1 && len(plan) < gcCrashRuns+extraRuns {
			for _, g := range []string{"mark", "repack", "delete"} {
				if groups[g] == 0 {
					plan = append(plan, more[g])
					break
				}
			}
		}
	}
	t.Logf("%d runs after the calibration: %d GCs killed, %d completed, %d left an index that does not open, %d a readers' index that lacks chunks, in %.1fs",
		len(plan), killed, completed, len(indexLost), len(readerLost), time.Since(start).Seconds())
	t.Logf("time spent: %.1fs backing up and pruning, %.1fs in GCs killed, %.1fs checking, %.1fs restoring, %.1fs in GCs after",
		tGarbage.Seconds(), tGC.Seconds(), tCheck.Seconds(), tRestore.Seconds(), tAfter.Seconds())
	for p, n := range phases {
		t.Logf("  %s: %d", p, n)
	}
	for _, g := range []string{"mark", "repack", "delete"} {
		if groups[g] == 0 {
			t.Errorf("no kill landed while the GC was at its %s stage", g)
		}
	}
	if garbage < len(plan)*3/4 {
		t.Errorf("only %d of %d runs gave the GC packs to delete", garbage, len(plan))
	}
	if killed < gcCrashMinKilled {
		t.Errorf("only %d GCs were killed before their end, want at least %d", killed, gcCrashMinKilled)
	}
	if repacks == 0 {
		t.Error("no run repacked a pack")
	}
	lcCheckClean(t, store, "--read-data")
	restoreAll("at the end", "after the last GC completed", live())
	for _, msg := range append(indexLost, readerLost...) {
		t.Error(msg)
	}
}

// gcIndexFiles lists the files of the writer's index and their sizes.
func gcIndexFiles(store string) string {
	var out []string
	files, _ := os.ReadDir(filepath.Join(store, "index"))
	for _, f := range files {
		if fi, err := f.Info(); err == nil {
			out = append(out, fmt.Sprintf("%s (%d bytes)", f.Name(), fi.Size()))
		}
	}
	return strings.Join(out, ", ")
}

// gcAnyGone reports whether a pack of before is not in now.
func gcAnyGone(before, now map[string]bool) bool {
	for p := range before {
		if !now[p] {
			return true
		}
	}
	return false
}

// gcCountNew returns how many of after are not in before.
func gcCountNew(before, after []string) int {
	n := 0
	for _, p := range after {
		if !slices.Contains(before, p) {
			n++
		}
	}
	return n
}

// TestIndexOpensAfterLogFileCrash leaves in the writer's and the readers'
// index what a process killed while badger creates a log file leaves (an
// empty NNNNNN.vlog or NNNNN.mem: badger creates the file, then sizes it;
// TestCrashGC meets it when a GC is killed while it opens the store), and
// checks that the next command opens the store. The index is a cache of the
// packs and manifests: no state of it may keep the store from opening.
func TestIndexOpensAfterLogFileCrash(t *testing.T) {
	dir := t.TempDir()
	store := lcInitStore(t, dir)
	out := filepath.Join(dir, "restored.img")
	img := filepath.Join(dir, "disk.img")
	lcImage(t, img, 2<<20, 1)
	p := lcBackup(t, store, "vm", img)
	cli(t, "points", "--store", store) // makes the readers' index
	for _, c := range []struct {
		index, file string
		args        []string
	}{
		{"index", "000999.vlog", []string{"gc", "--store", store}},
		{"index", "00999.mem", []string{"gc", "--store", store}},
		{"index-read", "000999.vlog", []string{"points", "--store", store}},
		{"index-read", "00999.mem", []string{"image", "restore", "--store", store, p.id, out}},
	} {
		if err := os.WriteFile(filepath.Join(store, c.index, c.file), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, msg, code := crashCLI(c.args...); code != 0 {
			t.Errorf("with an empty %s/%s, bulwark %s fails: %s", c.index, c.file, c.args[0], strings.TrimSpace(msg))
		}
		// A second try succeeds: the first bootstrapped the file.
		if _, msg, code := crashCLI(c.args...); code != 0 {
			t.Fatalf("with an empty %s/%s, bulwark %s fails twice: %s", c.index, c.file, c.args[0], strings.TrimSpace(msg))
		}
	}
	lcRestoreAll(t, store, out, p)
}

// TestReaderIndexAfterGCKilledRepacking kills a GC after it saved repacked
// packs, before it deleted the packs they replace, so that both hold the
// same chunks; then a reader opens the store, a GC completes, and the
// points must still restore through the readers' index. A reader that
// meets both packs at once indexes each chunk in whichever it reads last,
// and forgets the chunk when the GC deletes that one.
func TestReaderIndexAfterGCKilledRepacking(t *testing.T) {
	dir := t.TempDir()
	store := lcInitStore(t, dir)
	scratch := crashScratchDir(t)
	out := filepath.Join(scratch, "restored.img")
	rng := rand.New(rand.NewPCG(5, 6))
	img := newCrashImage(t, filepath.Join(scratch, "disk.img"), 24<<20, rng)
	img.writeRandom(t, 0, img.size)
	keep := lcBackup(t, store, "vm", img.path)
	cli(t, "points", "--store", store) // the readers' index knows keep's packs

	valid := 0
	for attempt := 0; attempt < 12 && valid < 4; attempt++ {
		// Garbage the readers' index has not seen: a point, half of whose
		// data its successor overwrites, deleted.
		img.writeRandom(t, 0, img.size)
		old := lcBackup(t, store, "vm", img.path)
		for off := int64(0); off < img.size; off += 512 << 10 {
			img.writeRandom(t, off, 256<<10)
		}
		cur := lcBackup(t, store, "vm", img.path)
		cli(t, "point", "delete", "--store", store, old.id)
		before := gcPackNames(store)
		res := gcRunChild(t, gcKill{event: func(int) bool {
			now := gcPackNames(store)
			return gcCountNewNames(before, now) >= 1
		}}, "gc", "--store", store, "--repack-below", "90")
		now := gcPackNames(store)
		if !res.killed || gcCountNewNames(before, now) == 0 || gcCountNewNames(now, before) > 0 {
			// The kill missed: the old packs must be there beside new ones.
			t.Logf("attempt %d: GC killed %v after %.3fs, %d new packs, %d removed: no use", attempt+1,
				res.killed, res.elapsed.Seconds(), gcCountNewNames(before, now), gcCountNewNames(now, before))
			cli(t, "point", "delete", "--store", store, cur.id)
			cli(t, "gc", "--store", store)
			continue
		}
		valid++
		lcRestoreAll(t, store, out, keep, cur) // the reader meets old and new packs
		st := lcGC(t, store, "--repack-below", "90")
		lcRestoreAll(t, store, out, keep, cur)
		if t.Failed() {
			t.Fatalf("attempt %d: GC killed after saving %d repacked packs, the store had %d packs before; then gc deleted %d packs and repacked %d: the readers' index lacks chunks",
				attempt+1, gcCountNewNames(before, now), len(before), st.PacksDeleted, st.PacksRepacked)
		}
		cli(t, "point", "delete", "--store", store, cur.id)
		cli(t, "gc", "--store", store)
	}
	if valid == 0 {
		t.Fatal("no GC was killed between saving repacked packs and deleting the old ones")
	}
	t.Logf("%d GCs killed between saving repacked packs and deleting the old ones", valid)
}

// gcCountNewNames returns how many names of after are not in before.
func gcCountNewNames(before, after map[string]bool) int {
	n := 0
	for p := range after {
		if !before[p] {
			n++
		}
	}
	return n
}
