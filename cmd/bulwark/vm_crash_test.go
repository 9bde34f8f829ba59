package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
)

// vmCrashKills is how many backups of a VM are killed.
const vmCrashKills = 6

// TestCrashVMBackup kills "bulwark backup vm" with SIGKILL while its
// snapshot exists, at random moments of reading and committing. The next
// backup, as a restarted appliance would, removes the snapshot left
// behind; and after every kill "check" passes and every point made before
// restores bit-exact, through "image restore --disk".
func TestCrashVMBackup(t *testing.T) {
	seed := crashSeed(t)
	t.Logf("seed %d (BULWARK_CRASH_SEED=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	ctx := context.Background()
	t.Setenv("BULWARK_PASSWORD", crashPassword)

	l, err := lab.Start(ctx, lab.Options{VMs: 1, Disks: 2, DiskSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("BULWARK_TEST_VCENTER_PASSWORD", l.Password())
	u := l.URL()
	u.User = nil

	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	params := chunkstore.DefaultParams()
	params.PackSize = crashPackSize
	if err := chunkstore.Init(ctx, backend.NewLocal(store), chunkstore.InitOptions{Password: []byte(crashPassword),
		Params: params, KDF: crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}}); err != nil {
		t.Fatal(err)
	}
	args := []string{"backup", "vm", "--store", store, "--vcenter", u.String(), "--username", l.Username(),
		"--password-env", "BULWARK_TEST_VCENTER_PASSWORD", "--thumbprint", l.Thumbprint(), "--vm", "vm01", "--json"}

	type point struct {
		id   string
		sums [2][32]byte
	}
	var points []point
	diskSums := func() [2][32]byte {
		var s [2][32]byte
		for i := range 2 {
			d, err := l.Disk("vm01", i)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, io.NewSectionReader(d, 0, d.Size())); err != nil {
				t.Fatal(err)
			}
			s[i] = [32]byte(h.Sum(nil))
		}
		return s
	}
	guestWrites := func() {
		for i := range 2 {
			for range 4 {
				p := make([]byte, 1+rng.IntN(200<<10))
				for j := range p {
					p[j] = byte(rng.Uint32())
				}
				if err := l.Write("vm01", i, rng.Int64N(64<<20-int64(len(p))), p); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	record := func(res crashChild, sums [2][32]byte) {
		t.Helper()
		var sum vmBackupSummary
		if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil {
			t.Fatalf("backup summary: %v\n%s\n%s", err, res.stdout, res.stderr)
		}
		points = append(points, point{id: sum.Point, sums: sums})
	}
	verify := func(what string) {
		t.Helper()
		if n := l.Snapshots(); n != 0 {
			t.Fatalf("%s: %d snapshots left on the VM", what, n)
		}
		if out, errOut, code := crashCLI("check", "--store", store); code != 0 {
			t.Fatalf("%s: check: exit %d\n%s%s", what, code, out, errOut)
		}
		for _, p := range points {
			for d := range 2 {
				out := filepath.Join(dir, "restored.img")
				cli(t, "image", "restore", "--store", store, "--disk", fmt.Sprint(d), p.id, out)
				if sha(t, out) != p.sums[d] {
					t.Fatalf("%s: point %s disk %d does not restore bit-exact", what, p.id[:12], d)
				}
				os.Remove(out)
			}
		}
	}

	sums := diskSums()
	start := time.Now()
	record(runCrashChild(t, -1, args...), sums)
	full := time.Since(start)
	t.Logf("first backup: %.2fs", full.Seconds())

	killed, cleaned := 0, 0
	// Kills land at most this long after the snapshot appears. An
	// incremental is quicker than the full backup it is first set from,
	// and a busy machine changes both: a backup that outran its kill
	// halves it.
	span := full / 2
	for i := 0; killed < vmCrashKills && i < 3*vmCrashKills; i++ {
		guestWrites()
		sums := diskSums()
		// Kill once the snapshot exists, at a random moment after: while
		// reading, while committing, or as the snapshot is removed.
		extra := time.Duration(rng.Int64N(int64(span) + 1))
		res := gcRunChild(t, gcKill{event: func(int) bool { return l.Snapshots() > 0 }, extra: extra}, args...)
		if !res.killed {
			record(res, sums)
			span = max(span/2, time.Millisecond)
			continue
		}
		killed++
		left := l.Snapshots()
		// The restarted appliance's next backup cleans up and succeeds. (A
		// snapshot whose removal had begun may still go by itself: vCenter
		// finishes a task whose caller died.)
		res = runCrashChild(t, -1, args...)
		if strings.Contains(res.stderr, "removed snapshot") {
			cleaned++
		}
		record(res, sums)
		verify(fmt.Sprintf("kill %d (%v after the snapshot, %d snapshots left)", killed, extra.Round(time.Millisecond), left))
	}
	if killed < vmCrashKills {
		t.Fatalf("only %d of the backups were killed", killed)
	}
	if cleaned == 0 {
		t.Fatal("no kill left a snapshot for the next backup to remove")
	}
	t.Logf("%d kills, %d snapshots left behind and removed by the next backup, %d points", killed, cleaned, len(points))
}
